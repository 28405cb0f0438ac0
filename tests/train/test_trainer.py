import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recurlab.tasks import IGNORE, SequenceTask
from recurlab.train import TrainConfig, Trainer, evaluate
from recurlab.train import checkpoint
from recurlab.train.schedule import warmup_cosine
from recurlab.train.tasks import SyntheticSetup, recall_model
from recurlab.train.trainer import seed_everything

TINY_RUN = ["--set", "model.mixer=mingru", "model.d_model=16", "data.vocab_size=64", "data.seq_len=16",
            "data.num_kv_pairs=2", "data.train_examples=512", "data.eval_examples=64", "train.batch_size=8",
            "train.lr=3e-3", "train.eval_every=20", "--no-progress"]


def run_cli(args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "recurlab.cli", "train", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kw)


def final_weights(out: Path) -> dict:
    return checkpoint.load(out / "checkpoint.pt")["model"]


def metrics(out: Path) -> list[dict]:
    keep = ("step", "loss", "lr", "eval_loss", "eval_accuracy")
    return [{k: r[k] for k in keep if k in r} for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


def test_schedule_warms_up_then_decays_to_the_floor():
    f = lambda s: warmup_cosine(s, total=100, warmup=10, min_ratio=0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.55)
    assert f(99) == pytest.approx(0.1, abs=1e-3) and f(200) == pytest.approx(0.1)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    checkpoint.save_atomic({"step": 1}, path)
    real_save = torch.save

    def crash(obj, f):
        real_save({"step": 2, "torn": True}, f)
        raise KeyboardInterrupt  # killed half-way through writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"step": 2}, path)
    assert checkpoint.load(path) == {"step": 1}  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # and no temporary file is left


def test_evaluate_averages_accuracy_per_example():
    class Oracle(torch.nn.Module):
        """Predicts the token `answer` everywhere."""

        def __init__(self, answer):
            super().__init__()
            self.answer = answer

        def features(self, inputs):
            return torch.zeros(*inputs.shape, 1), None

        def logits(self, h):
            out = torch.full((*h.shape[:-1], 5), -10.0)
            out[..., self.answer] = 10.0
            return out

    inputs = torch.zeros(2, 4, dtype=torch.long)
    labels = torch.full((2, 4), IGNORE)
    labels[0, 1], labels[0, 2] = 3, 1  # example 0: one of two right with answer 3
    labels[1, 3] = 3  # example 1: right
    result = evaluate(Oracle(3), SequenceTask(inputs, labels, 5))
    assert result["accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # not 2/3: per example, then averaged
    assert result["loss"] == pytest.approx((20 + math.log1p(4 * math.exp(-20))) / 3, rel=1e-3)


def test_training_learns_and_logs(tmp_path):
    train, evaluation = SyntheticSetup(seq_len=16, num_kv_pairs=2, vocab_size=32, train_examples=1024,
                                       eval_examples=128).build()
    seed_everything(0)
    model = recall_model("attention", 32, 32)
    summary = Trainer(model, train, evaluation, TrainConfig(steps=300, batch_size=32, lr=3e-3, eval_every=10,
                                                           early_stop_accuracy=0.4, progress=False),
                      out_dir=tmp_path).fit()
    # chance is 1/16 per query; stopping early at 0.4 means it learned
    assert summary["best_accuracy"] >= 0.4 and summary["stopped_early"] and summary["step"] < 300
    rows = metrics(tmp_path)
    assert rows[-1]["step"] == summary["step"] and rows[0]["eval_accuracy"] < rows[-1]["eval_accuracy"]
    assert json.loads((tmp_path / "train_config.json").read_text())["lr"] == 3e-3


def test_configuration_errors(tmp_path):
    train, evaluation = SyntheticSetup(seq_len=16, num_kv_pairs=2, vocab_size=32, train_examples=16,
                                       eval_examples=8).build()
    with pytest.raises(ValueError, match="fewer than batch_size=32"):
        Trainer(recall_model("mingru", 8, 32), train, evaluation, TrainConfig(batch_size=32))
    with pytest.raises(ValueError, match="precision must be"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="unknown train config key\\(s\\) 'epochs'"):
        TrainConfig.from_dict({"epochs": 3})
    trainer = Trainer(recall_model("mingru", 8, 32), train, evaluation, TrainConfig(batch_size=8, progress=False),
                      out_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="cannot resume: no checkpoint"):
        trainer.fit(resume=True)


def test_killed_run_resumes_bit_for_bit(tmp_path):
    steps = ["--set", "train.steps=400", "train.checkpoint_every=0"]
    whole = tmp_path / "whole"
    done = run_cli([*TINY_RUN, *steps, "--out", str(whole)], check=True)
    assert json.loads(done.stdout)["step"] == 400

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "recurlab.cli", "train", *TINY_RUN, *steps, "--out", str(killed)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill as soon as a checkpoint past step 100 exists, mid-run
        log = killed / "metrics.jsonl"
        if log.exists() and any(json.loads(l)["step"] >= 120 for l in log.read_text().splitlines() if l.strip()):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = checkpoint.load(killed / "checkpoint.pt")["step"]
    assert 100 <= interrupted_at < 400, "the run must be killed mid-way"

    resumed = run_cli([*TINY_RUN, *steps, "--out", str(killed), "--resume"], check=True)
    assert json.loads(resumed.stdout)["step"] == 400
    a, b = final_weights(whole), final_weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    assert metrics(killed) == metrics(whole)


def test_resume_refuses_a_different_configuration(tmp_path):
    run_cli([*TINY_RUN, "--set", "train.steps=20", "--out", str(tmp_path)], check=True)
    out = run_cli([*TINY_RUN, "--set", "train.steps=20", "train.lr=1e-2", "--out", str(tmp_path), "--resume"])
    assert out.returncode != 0 and "cannot resume: the checkpoint was trained with different lr" in out.stderr


def test_two_process_ddp_equals_one_process(tmp_path):
    args = [*TINY_RUN, "--set", "train.steps=60", "train.eval_every=30"]
    single = tmp_path / "single"
    run_cli([*args, "--out", str(single)], check=True)
    ddp = tmp_path / "ddp"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "recurlab.cli", "train", *args, "--out", str(ddp)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = final_weights(single), final_weights(ddp)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=f"{name}: DDP differs")
    single_rows, ddp_rows = metrics(single), metrics(ddp)
    assert [r["step"] for r in ddp_rows] == [30, 60]
    for r1, r2 in zip(single_rows, ddp_rows):
        assert r2["eval_accuracy"] == pytest.approx(r1["eval_accuracy"], abs=0.02)
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-3)


def test_decay_all_puts_every_parameter_in_the_decayed_group_and_epoch_cosine_steps_per_epoch():
    """Zoology's optimizer and schedule: AdamW(model.parameters(), weight_decay) and a per-epoch cosine."""
    from recurlab.tasks import MQARConfig, multi_query_associative_recall

    train = multi_query_associative_recall(64, MQARConfig(seq_len=16, num_kv_pairs=2, vocab_size=32), seed=1)
    model = recall_model("baseconv", 8, 32)
    matrices = Trainer(model, train, None, TrainConfig(batch_size=16, progress=False))
    decayed, exempt = matrices.optimizer.param_groups
    assert exempt["params"] and all(p.dim() < 2 for p in exempt["params"]) and decayed["weight_decay"] == 0.1
    zoo = Trainer(model, train, None, TrainConfig(steps=8, batch_size=16, lr=1e-2, decay="all", schedule="epoch_cosine",
                                                  warmup_steps=0, grad_clip=0.0, progress=False))
    decayed, exempt = zoo.optimizer.param_groups
    assert len(decayed["params"]) == len(list(model.parameters())) and not exempt["params"]
    lrs = []
    for _ in range(8):  # 4 steps per epoch (64 examples / 16), 2 epochs
        lrs.append(zoo.optimizer.param_groups[0]["lr"])
        zoo.train_step()
    assert lrs == pytest.approx([1e-2] * 4 + [0.5e-2] * 4)


def test_a_checkpoint_written_before_decay_and_schedule_existed_resumes():
    from recurlab.tasks import MQARConfig, multi_query_associative_recall

    train = multi_query_associative_recall(32, MQARConfig(seq_len=16, num_kv_pairs=2, vocab_size=32), seed=1)
    trainer = Trainer(recall_model("mingru", 8, 32), train, None, TrainConfig(batch_size=16, progress=False))
    state = trainer.state_dict()
    for key in ("decay", "schedule"):
        del state["train_config"][key]
    trainer.load_state_dict(state)  # missing keys had their defaults
    state["train_config"]["schedule"] = "epoch_cosine"
    with pytest.raises(ValueError, match="cannot resume: the checkpoint was trained with different schedule"):
        trainer.load_state_dict(state)
