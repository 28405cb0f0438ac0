"""convert_and_finetune and ``recurlab convert`` (recurlab/convert/finetune.py) on a tiny saved model and text."""

import json

import pytest
import torch

from recurlab.cli import main
from recurlab.configs import override
from recurlab.convert import ConvertConfig, convert, convert_and_finetune
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import ByteTokenizer
from tests.convert.common import tiny_attention_model, tiny_text

SMALL = ["finetune.seq_len=32", "finetune.batch_size=4", "finetune.eval_sequences=4", "finetune.eval_every=5"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "verses.txt"
    path.write_text(tiny_text())
    return path


def settings(text_file, *more):
    return override(ConvertConfig(), [*SMALL, f"finetune.data.path={text_file}", *more])


def test_a_few_lora_steps_lower_the_loss_and_train_only_the_adapters(tmp_path, text_file):
    model = tiny_attention_model(dtype=torch.float32)
    config = settings(text_file, "finetune.tokens=2560", "finetune.lr=0.01")  # 20 steps of 4 x 32 tokens
    summary = convert_and_finetune(model, "liger-gla", tmp_path / "out", config, tokenizer=ByteTokenizer(),
                                   progress=False)
    assert summary["finetune_steps"] == 20 and summary["finetune_tokens"] == 2560
    assert summary["val_bits_per_byte_after_finetune"] < summary["val_bits_per_byte_before_finetune"] - 0.01
    assert summary["params_after"] == summary["params_before"] == model.num_parameters()["total"]
    assert summary["lora_params"] == summary["trainable_params"] == 2 * 8 * ((32 + 32) + 2 * (32 + 16))
    assert summary["trainable"] == [f"depth.blocks.*.mixer.{p}.lora_{m}" for p in ("k_proj", "q_proj", "v_proj")
                                    for m in "AB"]
    metrics = [json.loads(line) for line in (tmp_path / "out" / "finetune" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    # only W_q, W_k, W_v changed (by the merged LoRA update); W_o, channel mixers, norms, embedding, head did not
    tuned = CausalLM.from_pretrained(tmp_path / "out" / "model").state_dict()
    start = convert(model, "liger-gla").state_dict()
    changed = sorted(k for k in start if not torch.equal(start[k], tuned[k]))
    assert changed == [f"depth.blocks.{i}.mixer.{p}.weight" for i in range(2) for p in ("k_proj", "q_proj", "v_proj")]


def test_the_gla_baseline_also_trains_its_new_gate(tmp_path, text_file):
    summary = convert_and_finetune(tiny_attention_model(dtype=torch.float32), "gla", tmp_path / "out",
                                   settings(text_file, "finetune.tokens=256", "gate_rank=4"),
                                   tokenizer=ByteTokenizer(), progress=False)
    assert summary["trainable_params"] == summary["lora_params"] + 2 * (32 * 4 + 4 * 16 + 16)
    assert "depth.blocks.*.mixer.gate_up.bias" in summary["trainable"]


def test_zero_tokens_converts_only_and_a_finished_folder_is_kept(tmp_path, text_file):
    model = tiny_attention_model(dtype=torch.float32)
    out = tmp_path / "out"
    summary = convert_and_finetune(model, "liger-attention", out, settings(text_file), tokenizer=ByteTokenizer())
    assert summary["finetune_steps"] == 0 and not (out / "finetune" / "checkpoint.pt").exists()
    assert summary["val_bits_per_byte_after_finetune"] == pytest.approx(summary["val_bits_per_byte_before_finetune"],
                                                                        abs=1e-6)
    assert convert_and_finetune(model, "liger-attention", out, settings(text_file), tokenizer=ByteTokenizer(),
                                resume=True) == summary
    with pytest.raises(ValueError, match="already holds a converted model"):
        convert_and_finetune(model, "liger-attention", out, settings(text_file), tokenizer=ByteTokenizer())


def test_an_interrupted_finetune_resumes_to_the_same_model(tmp_path, text_file, monkeypatch):
    """A run stopped after its first checkpoint (step 5 of 10) and resumed ends with the weights of an
    uninterrupted run: the Trainer restores the LoRA matrices, the optimizer and the data order."""
    from recurlab.train.trainer import Trainer

    model = tiny_attention_model(dtype=torch.float32)
    config = settings(text_file, "finetune.tokens=1280")
    whole = convert_and_finetune(model, "liger-gla", tmp_path / "whole", config, tokenizer=ByteTokenizer(),
                                 progress=False)

    real_step = Trainer.train_step

    def stop_after_five(self):
        if self.step == 5:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", stop_after_five)
    with pytest.raises(KeyboardInterrupt):
        convert_and_finetune(model, "liger-gla", tmp_path / "cut", config, tokenizer=ByteTokenizer(), progress=False)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    resumed = convert_and_finetune(model, "liger-gla", tmp_path / "cut", config, tokenizer=ByteTokenizer(),
                                   resume=True, progress=False)
    assert resumed["finetune_steps"] == whole["finetune_steps"] == 10
    a = CausalLM.from_pretrained(tmp_path / "whole" / "model").state_dict()
    b = CausalLM.from_pretrained(tmp_path / "cut" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    (tmp_path / "cut" / "convert_summary.json").unlink()
    with pytest.raises(ValueError, match="it was started with other to"):
        convert_and_finetune(model, "liger-attention", tmp_path / "cut", config, tokenizer=ByteTokenizer(), resume=True)


def test_the_command_converts_a_saved_model(tmp_path, text_file, capsys):
    src, out = tmp_path / "teacher", tmp_path / "liger"
    tiny_attention_model(dtype=torch.float32).save_pretrained(src, tokenizer=ByteTokenizer())
    argv = ["convert", "--to", "liger-attention", str(src), "--out", str(out), "--no-progress", "--set", *SMALL,
            f"finetune.data.path={text_file}", "finetune.tokens=256", "window=8"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((out / "convert_summary.json").read_text())
    assert printed["params_after"] == summary["params_after"] == summary["params_before"]
    assert summary["to"] == "liger-attention" and summary["finetune_steps"] == 2
    assert {"original_val_bits_per_byte", "val_bits_per_byte_before_finetune", "val_bits_per_byte_after_finetune",
            "lora_params"} <= set(summary)
    loaded = CausalLM.from_pretrained(out / "model")
    assert loaded.config.mixers == ["liger", "liger"] and loaded.config.layer_kwargs[0]["window"] == 8
    assert main(["generate", "--checkpoint", str(out / "model"), "--prompt", "And God",
                 "--set", "max_new_tokens=5", "temperature=0"]) == 0
    assert main(argv) == 2  # a finished conversion is not overwritten
    assert "already holds a converted model" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0  # and resuming it is done at once


def test_the_command_names_what_is_wrong(tmp_path, capsys):
    gla = tmp_path / "gla"
    CausalLM(ModelConfig(vocab_size=256, d_model=16, n_layers=1, mixer="gla")).save_pretrained(
        gla, tokenizer=ByteTokenizer())
    assert main(["convert", "--to", "liger-gla", str(gla), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "layer 0 is a 'gla' layer" in err and len(err.strip().splitlines()) == 1
    assert main(["convert", "--to", "mamba", str(gla), "--out", str(tmp_path / "o")]) == 2
    assert "to must be one of liger-gla, liger-attention, gla, got 'mamba'" in capsys.readouterr().err
    assert main(["convert", "--to", "gla", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
