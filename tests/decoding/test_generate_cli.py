"""``recurlab generate --draft D --method M``: speculative sampling from the command line."""

import pytest
import torch

from recurlab.cli import main
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks.text import BPETokenizer, ByteTokenizer


def saved(path, mixer, tokenizer=None, seed=0):
    torch.manual_seed(seed)
    tokenizer = tokenizer or ByteTokenizer()
    model = CausalLM(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layers=1, mixer=mixer))
    model.save_pretrained(path, tokenizer)
    return model


def run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out, captured.err


@pytest.mark.parametrize("method", ["chain", "rsd-c", "rsd-s"])
def test_greedy_speculative_text_equals_plain_greedy_text(tmp_path, capsys, method):
    saved(tmp_path / "t", "gla")
    saved(tmp_path / "d", "mingru", seed=1)
    common = ["generate", "--checkpoint", str(tmp_path / "t"), "--prompt", "In the", "--set", "max_new_tokens=12",
              "temperature=0"]
    plain, _ = run(capsys, common)
    branching = [] if method == "chain" else ["--branching", "2"]
    fast, err = run(capsys, common + ["--draft", str(tmp_path / "d"), "--method", method, "--draft-len", "3", *branching])
    assert fast == plain
    spec = {"chain": "chain:3", "rsd-c": "rsd-c:2x2x2", "rsd-s": "rsd-s:2x3"}[method]
    assert err.startswith(f"{spec}: ") and "target calls" in err


def user_error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err.strip()


def test_draft_and_method_errors(tmp_path, capsys):
    saved(tmp_path / "t", "gla")
    base = ["generate", "--checkpoint", str(tmp_path / "t"), "--prompt", "x"]
    assert "--draft needs --method" in user_error(capsys, base + ["--draft", str(tmp_path / "t")])
    assert "--draft and --method go together" in user_error(capsys, base + ["--method", "chain"])
    assert "top_p is not supported with --method" in user_error(
        capsys, base + ["--draft", str(tmp_path / "t"), "--method", "chain", "--set", "top_p=0.9"])
    assert "--draft-len and --branching must be >= 1" in user_error(
        capsys, base + ["--draft", str(tmp_path / "t"), "--method", "chain", "--draft-len", "0"])
    bpe = BPETokenizer.train("and the lord said unto moses " * 50, vocab_size=300)
    saved(tmp_path / "other", "mingru", tokenizer=bpe)
    assert "another tokenizer than the target" in user_error(
        capsys, base + ["--draft", str(tmp_path / "other"), "--method", "chain"])


def test_lud_method_streams_what_lud_generate_decodes(tmp_path, capsys):
    from recurlab.decoding import extend_vocabulary, lud_generate

    base = saved(tmp_path / "base", "gla")
    lud, _ = extend_vocabulary(base)
    lud.save_pretrained(tmp_path / "lud", ByteTokenizer())
    prompt = ByteTokenizer().encode("In the").unsqueeze(0)
    for beta in ("2.0", "0.0"):
        out, err = run(capsys, ["generate", "--checkpoint", str(tmp_path / "lud"), "--prompt", "In the", "--method", "lud",
                                "--beta", beta, "--draft-len", "3", "--set", "max_new_tokens=10", "temperature=0"])
        ids, stats = lud_generate(lud.eval(), prompt, 10, max_parallel=3, beta=float(beta))
        assert out == "In the" + bytes(ids[0, prompt.shape[1]:].tolist()).decode("utf-8", errors="replace") + "\n"
        assert err.startswith(f"lud: {stats.target_calls} passes for 10 tokens")
        assert (stats.target_calls == 10) if beta == "2.0" else (stats.target_calls < 10)


def test_lud_method_errors(tmp_path, capsys):
    saved(tmp_path / "t", "gla")
    base = ["generate", "--checkpoint", str(tmp_path / "t"), "--prompt", "x", "--method", "lud"]
    assert "is not an LUD-tuned model" in user_error(capsys, base)
    assert "takes no --draft" in user_error(capsys, base + ["--draft", str(tmp_path / "t")])
    assert "--branching has no effect with --method lud" in user_error(capsys, base + ["--branching", "3"])


def test_a_flag_the_method_does_not_use_is_refused(tmp_path, capsys):
    saved(tmp_path / "t", "gla")
    base = ["generate", "--checkpoint", str(tmp_path / "t"), "--prompt", "x"]
    assert "--beta has no effect without --method" in user_error(capsys, base + ["--beta", "0.5"])
    assert "--draft-len has no effect without --method" in user_error(capsys, base + ["--draft-len", "3"])
    draft = ["--draft", str(tmp_path / "t")]
    assert "--branching has no effect with --method chain" in user_error(
        capsys, base + draft + ["--method", "chain", "--branching", "3"])
    assert "--beta has no effect with --method rsd-s" in user_error(
        capsys, base + draft + ["--method", "rsd-s", "--beta", "0.5"])
