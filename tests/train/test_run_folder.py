"""A training run's folder: one run at a time, no accidental restart, no debris, no code run on resume."""

import os
import pickle
import subprocess
import sys

import pytest
import torch

from recurlab.tasks import SequenceTask
from recurlab.train import TrainConfig, Trainer, checkpoint
from recurlab.train.run_folder import RunFolder
from recurlab.train.tasks import recall_model


def tiny_trainer(out, steps=4):
    ids = torch.randint(0, 16, (32, 8), generator=torch.Generator().manual_seed(0))
    return Trainer(recall_model("mingru", 8, 16), SequenceTask(ids, ids, 16), None,
                   TrainConfig(steps=steps, batch_size=8, eval_every=2, progress=False), out_dir=out)


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    with RunFolder(tmp_path):
        with pytest.raises(ValueError, match=f"another run is writing into {tmp_path} \\(pid {os.getpid()}\\)"):
            tiny_trainer(tmp_path).fit()
        # and from another process too
        code = ("import sys; from recurlab.train.run_folder import RunFolder\n"
                f"try:\n    RunFolder({str(tmp_path)!r}).__enter__()\nexcept ValueError as e:\n"
                "    print(e); sys.exit(3)\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.returncode == 3 and "another run is writing" in proc.stdout
    tiny_trainer(tmp_path).fit()  # the lock goes with the run that held it


def test_a_fresh_start_over_a_checkpoint_needs_overwrite(tmp_path):
    tiny_trainer(tmp_path, steps=4).fit()
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    with pytest.raises(ValueError, match="already holds a training run .* --resume .* --overwrite"):
        tiny_trainer(tmp_path, steps=2).fit()
    assert checkpoint.load(tmp_path / "checkpoint.pt")["step"] == 4  # untouched
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == rows
    tiny_trainer(tmp_path, steps=2).fit(overwrite=True)
    assert checkpoint.load(tmp_path / "checkpoint.pt")["step"] == 2
    assert [int(r.split('"step": ')[1].split(",")[0]) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2]
    with pytest.raises(ValueError, match="exclude each other"):
        tiny_trainer(tmp_path).fit(resume=True, overwrite=True)


def test_debris_of_killed_writes_is_removed_and_stale_metrics_do_not_leak_into_a_fresh_run(tmp_path):
    (tmp_path / "checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "metrics.jsonl").write_text('{"step": 900, "loss": 1.0}\n')  # a run killed before any checkpoint
    tiny_trainer(tmp_path).fit()
    assert not list(tmp_path.glob("*.tmp"))
    assert '"step": 900' not in (tmp_path / "metrics.jsonl").read_text()


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_checkpoint_that_asks_to_run_code_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 1, "payload": _RunsCode()}, path)
    with pytest.raises(ValueError, match="not a plain-data recurlab checkpoint.*refusing to load it"):
        checkpoint.load(path)
    with open(tmp_path / "evil.pkl", "wb") as f:  # a bare pickle too, not only torch's zip format
        pickle.dump(_RunsCode(), f)
    with pytest.raises(ValueError, match="refusing to load it"):
        checkpoint.load(tmp_path / "evil.pkl")


def test_a_real_checkpoint_is_plain_data_and_resumes(tmp_path):
    tiny_trainer(tmp_path, steps=2).fit()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # no allow-listing needed
    assert state["step"] == 2 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)
    trainer = tiny_trainer(tmp_path, steps=2)
    trainer.load_state_dict(checkpoint.load(tmp_path / "checkpoint.pt"))
    assert trainer.step == 2 and torch.equal(trainer.model.state_dict()["embedding.weight"], state["model"]["embedding.weight"])
    assert tiny_trainer(tmp_path, steps=2).fit(resume=True)["step"] == 2
