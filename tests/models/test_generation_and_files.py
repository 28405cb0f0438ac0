import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from recurlab.models import CausalLM, ModelConfig
from recurlab.models.generation import sample_next
from recurlab.models.pretrained import file_digest, load_tokenizer
from recurlab.tasks.text import ByteTokenizer
from recurlab.train.lm import PRESETS, LMSetup
from tests.models.test_causal_lm import build


@pytest.mark.parametrize("kind", ["attention", "gla", "mingru", "rwkv", "liger", "sambay", "hybrid", "hyena"])
def test_greedy_generation_with_states_equals_repeated_full_forwards(kind):
    model = build(kind).double()
    prompt = torch.randint(0, 16, (2, 5))
    out = model.generate(prompt, max_new_tokens=12, temperature=0)
    assert out.shape == (2, 17) and torch.equal(out[:, :5], prompt)
    ids = prompt
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(ids)  # the whole sequence again, no state
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ids)


def test_sampling_is_seeded_and_respects_top_k_and_top_p():
    model = build("mingru")
    prompt = torch.randint(0, 16, (3, 4))
    a = model.generate(prompt, 20, temperature=1.0, seed=7)
    b = model.generate(prompt, 20, temperature=1.0, seed=7)
    c = model.generate(prompt, 20, temperature=1.0, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    gen = torch.Generator().manual_seed(0)
    assert {int(sample_next(logits, 1.0, top_k=1, generator=gen)) for _ in range(20)} == {3}
    picks = {int(sample_next(logits, 1.0, top_k=2, generator=gen)) for _ in range(200)}
    assert picks == {2, 3}
    # top_p = 0.5: the most likely token alone holds 64% of the mass
    assert {int(sample_next(logits, 1.0, top_p=0.5, generator=gen)) for _ in range(50)} == {3}
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.generate(prompt, 3, temperature=-1)
    with pytest.raises(ValueError, match="top_p must be in \\(0, 1\\]"):
        model.generate(prompt, 3, top_p=1.5)
    assert torch.equal(model.generate(prompt, 0), prompt)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_save_and_load(name, tmp_path):
    config = ModelConfig.from_dict(LMSetup.preset(name).model)
    torch.manual_seed(0)
    model = CausalLM(config)
    model.save_pretrained(tmp_path, tokenizer=ByteTokenizer())
    loaded = CausalLM.from_pretrained(tmp_path)
    assert loaded.config == config
    ids = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0], rtol=0, atol=0)
    assert isinstance(load_tokenizer(tmp_path), ByteTokenizer)
    assert json.loads((tmp_path / "config.json").read_text())["format_version"] == 2


def test_a_loaded_model_is_in_eval_mode_and_keeps_the_dtype_it_was_saved_in(tmp_path):
    model = CausalLM(ModelConfig(vocab_size=16, d_model=16, n_layers=2, mixer="gla", embed_dropout=0.5)).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    loaded = CausalLM.from_pretrained(tmp_path)
    assert not loaded.training  # dropout off: two calls agree
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    ids = torch.randint(0, 16, (1, 6))
    with torch.no_grad():
        assert torch.equal(loaded(ids)[0], loaded(ids)[0])
    wide = CausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    assert {p.dtype for p in wide.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="dtype must be a floating torch.dtype"):
        CausalLM.from_pretrained(tmp_path, dtype=torch.int8)


def test_a_version_1_file_written_before_the_depth_module_loads(tmp_path):
    """Format 1 had the stack's blocks at ``blocks.i`` and no depth keys in the config."""
    model = build("hybrid")
    model.save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    save_file({k.removeprefix("depth."): v for k, v in weights.items()}, str(tmp_path / "model.safetensors"))
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["format_version"] = 1
    del meta["files"]  # version 1 recorded no checksums
    for key in ("depth", "depth_kwargs"):
        del meta["model"][key]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded = CausalLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 16, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0], rtol=0, atol=0)


@pytest.mark.parametrize("depth, kwargs", [("recursive", {"n_loops": 2, "loop_scales": True}),
                                           ("relaxed", {"n_loops": 2, "rank": 2}),
                                           ("mor", {"n_recursions": 2, "first": 1, "last": 1}),
                                           ("recurrent_depth", {"mean_iterations": 2, "init_seed": 0})])
def test_recursion_models_save_and_load_like_any_other(depth, kwargs, tmp_path):
    config = ModelConfig(vocab_size=16, d_model=16, n_layers=3, mixer="attention",
                         mixer_kwargs={"attention": {"n_heads": 2}}, depth=depth, depth_kwargs=kwargs)
    torch.manual_seed(0)
    model = CausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # LoRA B and scalars start at 0 / 1: make every parameter matter
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    loaded = CausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config == config
    ids = torch.randint(0, 16, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0], rtol=0, atol=0)


def test_a_changed_byte_in_the_weights_is_caught_at_load(tmp_path):
    model = build("gla")
    model.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors does not match config.json .* damaged or was changed"):
        CausalLM.from_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["files"]["model.safetensors"]["bytes"] == len(data)


def test_loading_a_mismatched_checkpoint_names_the_tensors(tmp_path):
    model = build("gla")
    model.save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    weights["extra.weight"] = torch.zeros(2)
    del weights["final_norm.weight"]
    save_file(weights, str(tmp_path / "model.safetensors"))
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["files"]["model.safetensors"] = file_digest(tmp_path / "model.safetensors")  # a consistent but wrong file
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="missing tensors: final_norm.weight; unexpected tensors: extra.weight"):
        CausalLM.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 99"):
        CausalLM.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["model"]["d_model"] = 32
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="wrong shape: embedding.weight \\(16, 16\\) \\(model: \\(16, 32\\)\\)"):
        CausalLM.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        CausalLM.from_pretrained(tmp_path / "nowhere")


def test_train_preset_then_generate_from_the_command_line(tmp_path):
    text = "".join(f"And God said unto Moses, Speak unto the children of Israel, day {i}.\n" for i in range(400))
    (tmp_path / "t.txt").write_text(text)
    run = subprocess.run([sys.executable, "-m", "recurlab.cli", "train", "--preset", "lm-mingru", "--set",
                          f"data.path={tmp_path / 't.txt'}", "train.steps=3", "--out", str(tmp_path / "run"),
                          "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "lm_summary.json").read_text())
    assert summary["steps"] == 3 and summary["params"] > 3_000_000 and summary["val_bits_per_byte"] > 0
    gen = subprocess.run([sys.executable, "-m", "recurlab.cli", "generate", "--checkpoint", str(tmp_path / "run"),
                          "--prompt", "And God said", "--set", "max_new_tokens=20", "temperature=0"],
                         capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert gen.stdout.startswith("And God said") and len(gen.stdout.encode()) >= len("And God said") + 15


def test_per_layer_mixer_arguments_save_load_and_old_files_without_them_load(tmp_path):
    config = ModelConfig(vocab_size=16, d_model=16, n_layers=2, mixer="baseconv", channel_mixer=None,
                         mixer_kwargs={"baseconv": {"l_max": 12}},
                         layer_kwargs=[{"kernel_size": 3}, {"kernel_size": -1, "implicit_long_conv": True}])
    model = CausalLM(config).eval()
    assert [(b.mixer.kernel_len, b.mixer.implicit) for b in model.depth.blocks] == [(3, False), (12, True)]
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["layer_kwargs"][1]["kernel_size"] == -1
    loaded = CausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config == config
    ids = torch.randint(0, 16, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0], rtol=0, atol=0)
    # a config.json written before layer_kwargs existed has no such key: it loads as None (per-name arguments only)
    plain = CausalLM(ModelConfig(vocab_size=16, d_model=16, n_layers=2, mixer="gla", channel_mixer=None))
    plain.save_pretrained(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["model"]["layer_kwargs"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    assert CausalLM.from_pretrained(tmp_path / "old").config.layer_kwargs is None
