"""recurlab export-hf / import-hf: recurlab's model folder <-> a Hugging Face folder, and Llama checkpoints in."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("transformers", reason="the hf extra is part of the test extras")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from recurlab.cli import main  # noqa: E402
from recurlab.hf import RecurlabForCausalLM, load_llama  # noqa: E402
from recurlab.models import CausalLM  # noqa: E402
from recurlab.models.pretrained import load_tokenizer  # noqa: E402
from recurlab.tasks.text import BPETokenizer, ByteTokenizer  # noqa: E402
from tests.hf.common import prompt, tiny_model  # noqa: E402
from tests.hf.test_llama import build, in_float64  # noqa: E402

TEXT = "And God said, Let there be light: and there was light."


@pytest.mark.parametrize("kind, tokenizer", [("sambay", "bytes"), ("recurrent_depth", "bpe")])
def test_export_then_import_gives_the_same_model_and_tokenizer(kind, tokenizer, tmp_path, capsys):
    """recurlab folder -> export-hf -> a folder transformers loads (model and tokenizer) -> import-hf -> recurlab
    folder: every weight equal, logits identical, the tokenizer of the same kind with the same ids."""
    tok = ByteTokenizer() if tokenizer == "bytes" else BPETokenizer.train(TEXT * 20, vocab_size=280)
    model = tiny_model(kind, dtype=torch.float32, vocab_size=tok.vocab_size)
    model.save_pretrained(tmp_path / "src", tokenizer=tok)

    assert main(["export-hf", str(tmp_path / "src"), str(tmp_path / "hf")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "hf")  # stdout: what the command wrote
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert isinstance(hf, RecurlabForCausalLM) and hf.dtype == torch.float32
    assert AutoTokenizer.from_pretrained(tmp_path / "hf")(TEXT)["input_ids"] == tok.encode(TEXT).tolist()

    assert main(["import-hf", str(tmp_path / "hf"), str(tmp_path / "back")]) == 0
    back = CausalLM.from_pretrained(tmp_path / "back").eval()
    original = CausalLM.from_pretrained(tmp_path / "src").eval()
    for name, tensor in original.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    ids = prompt()
    with torch.no_grad():
        assert torch.equal(back(ids)[0], original(ids)[0])
    back_tok = load_tokenizer(tmp_path / "back")
    assert type(back_tok) is type(tok) and back_tok.encode(TEXT).tolist() == tok.encode(TEXT).tolist()


def test_import_hf_reads_a_llama_checkpoint(tmp_path):
    """import-hf writes load_llama's model (whose logits equal transformers', tests/hf/test_llama.py) to the file bit
    for bit, in the checkpoint's dtype; CausalLM.from_pretrained reads it back (into float32, as it loads every file)."""
    reference = build("llama_gqa_untied")
    reference.save_pretrained(tmp_path / "llama")
    assert main(["import-hf", str(tmp_path / "llama"), str(tmp_path / "ours")]) == 0
    expected = load_llama(tmp_path / "llama")
    written = load_file(str(tmp_path / "ours" / "model.safetensors"))
    assert sorted(written) == sorted(expected.state_dict())
    for name, tensor in expected.state_dict().items():
        assert written[name].dtype == torch.float64 and torch.equal(written[name], tensor), name
    model = CausalLM.from_pretrained(tmp_path / "ours")
    assert model.config == expected.config
    x = prompt()
    with torch.no_grad():
        assert (model(x)[0].double() - in_float64(reference)(x).logits).abs().max() < 1e-5


def test_conversion_errors_are_one_line_and_exit_2(tmp_path, capsys):
    tiny_model("gla").save_pretrained(tmp_path / "src")
    assert main(["import-hf", str(tmp_path / "src"), str(tmp_path / "x")]) == 2
    assert "is a recurlab model folder already" in capsys.readouterr().err
    assert main(["export-hf", str(tmp_path / "src"), str(tmp_path / "hf")]) == 0
    assert main(["export-hf", str(tmp_path / "src"), str(tmp_path / "hf")]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["export-hf", str(tmp_path / "src"), str(tmp_path / "hf"), "--overwrite"]) == 0
    assert main(["export-hf", str(tmp_path / "missing"), str(tmp_path / "y")]) == 2
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    assert main(["import-hf", str(tmp_path / "hf"), str(tmp_path / "z")]) == 2
    assert "model_type 'bert'" in capsys.readouterr().err


def test_recurlab_works_without_transformers_and_says_what_to_install():
    """transformers is an optional extra: recurlab imports and runs without it; recurlab.hf and the commands that need
    it say to install recurlab[hf]."""
    code = """
import sys
sys.modules["transformers"] = None  # as if it were not installed
import recurlab, recurlab.models, recurlab.cli
from recurlab.models import CausalLM, ModelConfig
CausalLM(ModelConfig(vocab_size=8, d_model=8, n_layers=1))
try:
    import recurlab.hf
except ImportError as error:
    print("hf:", error)
sys.exit(recurlab.cli.main(["export-hf", "a", "b"]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "hf: recurlab.hf needs the 'transformers' package: pip install recurlab[hf]" in result.stdout
    assert result.stderr.strip().splitlines() == [
        "recurlab export-hf: error: recurlab.hf needs the 'transformers' package: pip install recurlab[hf]"]
