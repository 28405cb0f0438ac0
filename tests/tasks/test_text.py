import math
import shutil

import pytest
import torch

from recurlab.tasks import IGNORE
from recurlab.tasks.text import (BPETokenizer, ByteTokenizer, default_corpus, language_modelling_task, load_hf_dataset,
                                 load_text, split_text, tokenizer_from_dict)
from recurlab.train.lm import PRESETS, LMSetup, bits_per_byte, unigram_bits_per_byte


def test_load_text_from_file_and_folder(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "b" / "c.txt").write_text("second")
    (tmp_path / "b" / "skip.md").write_text("not text")
    assert load_text(tmp_path / "a.txt") == "first"
    assert load_text(tmp_path) == "first\n\nsecond"
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_text(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.txt files"):
        load_text(tmp_path / "empty")


def test_load_a_local_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the lm extra is part of the test extras")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["one", "two"], "id": [1, 2]})}).save_to_disk(tmp_path / "d")
    assert load_hf_dataset(tmp_path / "d") == "one\n\ntwo"
    with pytest.raises(ValueError, match="split must be one of \\['train'\\]"):
        load_hf_dataset(tmp_path / "d", split="test")
    with pytest.raises(ValueError, match="text_field must be one of the columns"):
        load_hf_dataset(tmp_path / "d", text_field="body")


def test_default_corpus_is_the_kjv_without_verse_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURLAB_CACHE", str(tmp_path))
    text = default_corpus()
    assert text.startswith("Genesis 1\n\nIn the beginning God created the heaven and the earth.")
    assert "The grace of our Lord Jesus Christ be with you all. Amen." in text[-200:]
    assert 4_000_000 < len(text) < 4_500_000
    assert (tmp_path / "kjv.txt").exists() and default_corpus() == text  # cached


def test_default_corpus_without_the_package_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install bible-kjv-text"):
        default_corpus()


def test_byte_tokenizer_round_trips_unicode():
    tok = ByteTokenizer()
    ids = tok.encode("Grüße, ∑!")
    assert ids.dtype == torch.long and int(ids.max()) < 256 and len(ids) == len("Grüße, ∑!".encode())
    assert tok.decode(ids) == "Grüße, ∑!"
    assert isinstance(tokenizer_from_dict(tok.to_dict()), ByteTokenizer)


def test_bpe_tokenizer_trains_and_round_trips():
    text = "the cat sat on the mat. " * 200 + "And God said, Let there be light."
    tok = BPETokenizer.train(text, vocab_size=300)
    ids = tok.encode("the cat sat on the mat.")
    assert len(ids) < len("the cat sat on the mat.")  # merges happened
    assert tok.decode(ids) == "the cat sat on the mat."
    again = tokenizer_from_dict(tok.to_dict())
    assert torch.equal(again.encode("Let there be light"), tok.encode("Let there be light"))


def test_split_is_fixed_and_at_a_line():
    text = "".join(f"line {i}\n" for i in range(100))
    train, val = split_text(text, 0.1)
    assert train + val == text and val.startswith("line 9") and train.endswith("\n")
    assert split_text(text, 0.1) == (train, val)


def test_language_modelling_windows():
    ids = torch.arange(21)
    task = language_modelling_task(ids, 5, 32)
    assert task.inputs.shape == (4, 5)
    assert torch.equal(task.labels, task.inputs + 1) and (task.labels != IGNORE).all()
    with pytest.raises(ValueError, match="fewer than seq_len \\+ 1"):
        language_modelling_task(torch.arange(3), 5, 32)


def test_unigram_baseline_and_bits_per_byte():
    assert unigram_bits_per_byte("ab" * 100, "ab") == pytest.approx(-math.log2(101 / 456), rel=1e-6)
    assert bits_per_byte(math.log(2), 10, 10) == pytest.approx(1.0)


def test_every_preset_builds_and_sizes(tmp_path):
    text = "".join(f"And it came to pass on day {i}, that the people said unto him: go.\n" for i in range(300))
    (tmp_path / "t.txt").write_text(text)
    for name in PRESETS:
        setup = LMSetup.preset(name)
        setup.data = {"path": str(tmp_path / "t.txt")}
        model_config, train_config, tok, train, val, val_bytes, unigram = setup.build()
        assert model_config.vocab_size == 256 and train.seq_len == 256 and len(val) >= 1
        assert 3 < unigram < 6 and val_bytes == val.inputs.numel()
    with pytest.raises(ValueError, match="unknown preset 'lm-lstm'; valid presets: lm-attention"):
        LMSetup.preset("lm-lstm")
