"""``recurlab train --task vision``: training, exact resume from the last epoch, refusals, the saved classifier, and
the model zoo's specs. Tiny runs: 8x8 scikit-learn digits brought to 16 x 16, 64 training images."""

import json

import pytest
import torch
from safetensors.torch import load_file

from recurlab import cli
from recurlab.train import checkpoint
from recurlab.vision import train as vision_train
from recurlab.vision.saved import load_classifier
from recurlab.vision.train import VisionTraining, load_data, train_vision
from recurlab.vision.zoo import MODELS, build, build_from_spec, count_parameters, describe_widths, model_spec

TINY = dict(dataset="digits", image_size=16, max_train=64, max_test=32, batch_size=32, params_target=20_000)


def tiny(**changes) -> VisionTraining:
    return VisionTraining(**{**TINY, "model": "resnet-maxpool", "epochs": 2, **changes})


def test_trains_writes_the_run_and_a_loadable_classifier(tmp_path):
    out = tmp_path / "run"
    summary = train_vision(tiny(), out, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [2, 4]
    assert summary["top1"] == rows[-1]["top1"] and summary["epochs"] == 2 and summary["params"] > 0
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "curves.png").stat().st_size > 0
    assert json.loads((out / "train_config.json").read_text())["model"] == "resnet-maxpool"
    clf = load_classifier(out / "model")
    assert not clf.model.training and clf.classes == [str(d) for d in range(10)]
    data = load_data("digits", 16, 64, 32)
    images, labels = data["test"]
    assert abs(float((clf.predict(images) == labels).float().mean()) - summary["top1"]) < 1e-9
    with pytest.raises(ValueError, match="images must have shape"):
        clf.predict(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="floating dtype"):
        clf.predict(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))


def test_resume_after_an_interruption_is_bit_exact(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_vision(tiny(model="sret", epochs=3), straight, progress=False)  # SReT draws permutations: RNG restored

    original = checkpoint.save_atomic

    def save_then_die(obj, path):
        original(obj, path)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint was written

    monkeypatch.setattr(checkpoint, "save_atomic", save_then_die)
    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train_vision(tiny(model="sret", epochs=3), interrupted, progress=False)
    monkeypatch.undo()
    assert not (interrupted / "model").exists()
    with pytest.raises(ValueError, match="already holds a training run"):
        train_vision(tiny(model="sret", epochs=3), interrupted, progress=False)
    with pytest.raises(ValueError, match="different epochs"):
        train_vision(tiny(model="sret", epochs=4), interrupted, resume=True, progress=False)
    summary = train_vision(tiny(model="sret", epochs=3), interrupted, resume=True, progress=False)
    assert summary["epochs"] == 3
    a, b = load_file(straight / "model" / "model.safetensors"), load_file(interrupted / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [(folder / "metrics.jsonl").read_text().count("\n") for folder in (straight, interrupted)]
    assert lines == [3, 3]


def test_refusals_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train_vision(tiny(), tmp_path / "empty", resume=True, progress=False)
    with pytest.raises(ValueError, match="resume needs out"):
        train_vision(tiny(), None, resume=True, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train_vision(tiny(batch_size=128), tmp_path / "small", progress=False)
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny(image_size=20)
    with pytest.raises(ValueError, match="relations"):
        tiny(dataset="relations", image_size=8)
    with pytest.raises(ValueError, match="model"):
        tiny(model="resnet")


def test_a_tampered_classifier_is_refused(tmp_path):
    out = tmp_path / "run"
    train_vision(tiny(epochs=1), out, progress=False)
    weights = out / "model" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="does not match config.json"):
        load_classifier(out / "model")
    from recurlab.models import CausalLM, ModelConfig

    language_model = tmp_path / "lm"
    CausalLM(ModelConfig(vocab_size=16, d_model=8, n_layers=1, mixer="mingru")).save_pretrained(language_model)
    with pytest.raises(ValueError, match="recurlab-vision-classifier"):
        load_classifier(language_model)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_classifier(tmp_path / "nowhere")


def test_the_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    sets = [f"{k}={v}" for k, v in {**TINY, "model": "hornet", "epochs": 1}.items()]
    assert cli.main(["train", "--task", "vision", "--no-progress", "--out", str(out), "--set", *sets]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["model"] == "hornet" and (out / "model" / "config.json").exists()
    assert cli.main(["train", "--task", "vision", "--preset", "lm-gla"]) == 2
    assert "--task vision takes --set model=NAME" in capsys.readouterr().err
    assert cli.main(["train", "--task", "vision", "--no-progress", "--out", str(out), "--set", *sets]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("model", MODELS)
def test_every_model_rebuilds_from_its_json_spec(model):
    spec = model_spec(model, classes=4, size=16, target=20_000)
    again = json.loads(json.dumps(spec))
    a, b = build_from_spec(spec), build_from_spec(again)
    assert count_parameters(a) == count_parameters(b) > 0
    assert [tuple(p.shape) for p in a.parameters()] == [tuple(p.shape) for p in b.parameters()]
    assert a(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    assert describe_widths(spec)


def test_zoo_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="unknown model"):
        model_spec("resnet", classes=4, size=16, target=20_000)
    with pytest.raises(ValueError, match="multiple of 8"):
        model_spec("vit", classes=4, size=12, target=20_000)
    with pytest.raises(ValueError, match="power of two"):
        build("sret", 4, classes=4, size=24)  # stem stride 3
    with pytest.raises(ValueError, match="spec is missing"):
        build_from_spec({"model": "vit"})


def test_sret_without_recursion_shares_the_blocks():
    rec = build("sret", 4, classes=10, size=16)
    flat = build("sret-n1", 4, classes=10, size=16)
    assert rec.n_applications == 2 * flat.n_applications
    shared = {k for k in flat.state_dict()}
    assert shared <= set(rec.state_dict())  # the same blocks; recursion only adds the second loop's projections
    assert vision_train.MODELS is MODELS


def test_the_width_search_leaves_the_callers_random_numbers_alone():
    from recurlab.vision.zoo import build_model, pick_widths

    pick_widths.cache_clear()
    torch.manual_seed(0)
    first = build_model("vit", classes=4, size=16, target=30_000)  # searches (builds many models)
    torch.manual_seed(0)
    again = build_model("vit", classes=4, size=16, target=30_000)  # cached
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
