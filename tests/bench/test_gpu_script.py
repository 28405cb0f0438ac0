import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_fig2_script_runs_the_zoology_protocol_and_writes_json(tmp_path):
    """scripts/gpu_zoology_fig2.sh at tiny sizes on the CPU: one worker per (mixer, L), every finished run in fig2.json."""
    env = {**os.environ, "OUT": str(tmp_path), "EPOCHS": "2", "LIMIT_S": "300", "MIXERS": "baseconv mingru",
           "SEQ_LENS": "16", "D_MODELS": "16", "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           "EXTRA": "vocab_size=32 train_examples=64 eval_examples=16 test_examples=16 batch_size=16 lrs=1e-2"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_zoology_fig2.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads((tmp_path / "fig2.json").read_text())
    assert result["protocol"] == "zoology" and result["epochs"] == 2
    assert {(r["mixer"], r["seq_len"], r["d_model"]) for r in result["rows"]} == {("baseconv", 16, 16), ("mingru", 16, 16)}
    assert all(r["steps"] <= 8 and 0 <= r["test_accuracy"] <= 1 for r in result["runs"])  # 2 epochs of 4 steps
    settings = json.loads((tmp_path / "baseconv-L16" / "runs.jsonl").read_text().splitlines()[0])["job"]["settings"]
    assert settings["protocol"] == "zoology" and settings["epochs"] == 2
