"""recurlab's byte and BPE tokenizers as transformers fast tokenizers: same ids, same text, saved and loaded back."""

import pytest

pytest.importorskip("transformers", reason="the hf extra is part of the test extras")

from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402

from recurlab.hf import hf_tokenizer, recurlab_tokenizer  # noqa: E402
from recurlab.hf.tokenizer import byte_symbols  # noqa: E402
from recurlab.tasks.text import BPETokenizer, ByteTokenizer  # noqa: E402

TEXT = "In the beginning God créated\tthe heaven — and the earth 😀.\n\nAnd the earth was without form"


def bpe() -> BPETokenizer:
    return BPETokenizer.train(TEXT * 5 + " and the light was good" * 20, vocab_size=300)


def test_byte_symbols_are_256_distinct_printable_stand_ins():
    symbols = byte_symbols()
    assert len(set(symbols)) == 256
    assert symbols[ord("A")] == "A" and symbols[ord(" ")] == "Ġ" and symbols[ord("\n")] == "Ċ"  # GPT-2's table
    assert not any(s.isspace() for s in symbols)


@pytest.mark.parametrize("make", [ByteTokenizer, bpe], ids=["bytes", "bpe"])
def test_fast_tokenizer_gives_recurlabs_ids_and_text(make, tmp_path):
    tok = make()
    fast = hf_tokenizer(tok)
    assert isinstance(fast, PreTrainedTokenizerFast) and len(fast) == tok.vocab_size
    ids = fast(TEXT)["input_ids"]
    assert ids == tok.encode(TEXT).tolist()
    assert fast.decode(ids) == tok.decode(ids) == TEXT
    fast.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(TEXT)["input_ids"] == ids
    back = recurlab_tokenizer(loaded)
    assert type(back) is type(tok) and back.encode(TEXT).tolist() == ids


def test_byte_ids_are_the_utf8_bytes_and_bad_utf8_decodes_as_recurlab_does():
    fast = hf_tokenizer(ByteTokenizer())
    assert fast("é€")["input_ids"] == list("é€".encode("utf-8"))
    for ids in ([0xFF, 65], [0xE2, 0x82], [0xC3]):  # invalid, truncated sequences
        assert fast.decode(ids) == ByteTokenizer().decode(ids)


def test_only_recurlab_tokenizers_convert():
    with pytest.raises(ValueError, match="ByteTokenizer or BPETokenizer"):
        hf_tokenizer("bytes")
    with pytest.raises(ValueError, match="fast tokenizer"):
        recurlab_tokenizer(ByteTokenizer())
