"""The lm-eval adapter (recurlab/hf/harness.py) and the local tasks (recurlab/hf/local_tasks.py, lm_eval_tasks/)."""

import json
import math

import pytest
import torch

pytest.importorskip("lm_eval", reason="the eval extra is part of the test extras")

from lm_eval.api.instance import Instance  # noqa: E402

from recurlab.convert import convert  # noqa: E402
from recurlab.hf import local_tasks  # noqa: E402
from recurlab.hf.harness import RecurlabLM, evaluate_local  # noqa: E402
from recurlab.tasks.text import ByteTokenizer  # noqa: E402
from tests.convert.common import tiny_attention_model, tiny_text  # noqa: E402


def model():
    return convert(tiny_attention_model(), "liger-gla")  # float64: a converted model, a recurrent one


def requests(kind, *args):
    return [Instance(request_type=kind, doc={}, arguments=a, idx=0) for a in args]


def direct_log_prob(net, context: str, continuation: str) -> float:
    """log p(continuation | context) from the recurlab CausalLM itself, byte by byte (the definition)."""
    ids = ByteTokenizer().encode(context + continuation)
    n = len(continuation.encode())
    with torch.no_grad():
        log_probs = torch.log_softmax(net(ids[None, :-1])[0][0], -1)
    return float(log_probs[-n:].gather(-1, ids[-n:, None]).sum())


def test_loglikelihood_is_the_models_log_probability_in_any_batching():
    net = model()
    pairs = [("And God said", " Let"), ("In the beginning", " God"), ("And God saw", " the"), ("Let", " there be")]
    expected = [direct_log_prob(net, c, x) for c, x in pairs]
    for batch_size in (1, 3):  # equal-length requests share a batch: (11 + 4 bytes) twice
        got = RecurlabLM(net, ByteTokenizer(), batch_size=batch_size).loglikelihood(requests("loglikelihood", *pairs))
        assert [g for g, _ in got] == pytest.approx(expected, abs=1e-10)
    # greedy: the continuation is what argmax decoding gives after the context
    context = ByteTokenizer().encode("And God")
    greedy = net.generate(context[None], 2, temperature=0)[0, -2:].tolist()
    lm = RecurlabLM(net, ByteTokenizer())
    assert lm._loglikelihood_tokens([(None, context.tolist(), greedy)])[0][1]
    assert not lm._loglikelihood_tokens([(None, context.tolist(), [greedy[0], (greedy[1] + 1) % 256])])[0][1]


def test_rolling_loglikelihood_is_the_texts_log_probability():
    net = model()
    text = "And God called the light Day, and the darkness he called Night."
    lm = RecurlabLM(net, ByteTokenizer(), max_length=128)
    expected = direct_log_prob(net, "\n", text)  # the byte tokenizer has no end-of-text token: a newline
    assert lm.loglikelihood_rolling(requests("loglikelihood_rolling", (text,))) == pytest.approx([expected], abs=1e-10)
    short = RecurlabLM(net, ByteTokenizer(), max_length=16).loglikelihood_rolling(requests("loglikelihood_rolling",
                                                                                          (text,)))
    assert short[0] != pytest.approx(expected, abs=1e-6)  # windows of 16 bytes see less context, score differently


def test_generate_until_is_greedy_decoding_cut_at_the_stop_string():
    net = model()
    lm = RecurlabLM(net, ByteTokenizer())
    full = ByteTokenizer().decode(net.generate(ByteTokenizer().encode("And God")[None], 12, temperature=0)[0, 7:].tolist())
    stop = full[5]
    (got,) = lm.generate_until(requests("generate_until", ("And God", {"until": [stop], "max_gen_toks": 12})))
    assert got == full.split(stop)[0]


def test_the_local_tasks_run_through_lm_eval_and_score_what_the_adapter_scores():
    net = model()
    lm = RecurlabLM(net, ByteTokenizer(), batch_size=4)
    results = evaluate_local(lm, limit=6)
    assert set(results) == {"recurlab_verse_cloze", "recurlab_verse_choice"}
    # the multiple-choice accuracy is the fraction of items whose gold choice has the highest log-likelihood
    items = [json.loads(line) for line in (local_tasks.TASKS_DIR / "verse_choice.jsonl").read_text().splitlines()[:6]]
    right = []
    for item in items:
        scores = [s for s, _ in lm.loglikelihood(requests("loglikelihood", *[(item["context"], " " + c)
                                                                             for c in item["choices"]]))]
        right.append(max(range(4), key=scores.__getitem__) == item["gold"])
    assert results["recurlab_verse_choice"]["acc,none"] == pytest.approx(sum(right) / 6)
    # the cloze perplexity is exp(-mean log p(" " + last word | the verse before it)), from the model itself
    items = [json.loads(line) for line in (local_tasks.TASKS_DIR / "verse_cloze.jsonl").read_text().splitlines()[:6]]
    assert all(item["target"].startswith(" ") for item in items)
    mean = sum(direct_log_prob(net, item["context"], item["target"]) for item in items) / 6
    cloze = results["recurlab_verse_cloze"]
    assert cloze["perplexity,none"] == pytest.approx(math.exp(-mean), rel=1e-9) and 0 <= cloze["acc,none"] <= 1
    with pytest.raises(ValueError, match="tasks must be among"):
        evaluate_local(lm, tasks=("hellaswag",))


def test_the_shipped_tasks_are_small_and_built_from_verses(tmp_path):
    sizes = sum(p.stat().st_size for p in local_tasks.TASKS_DIR.iterdir() if p.suffix in (".jsonl", ".yaml", ".py"))
    assert sizes < 200_000
    local_tasks.build(tiny_text(3), tmp_path, n_cloze=4, n_choice=4)
    cloze = [json.loads(line) for line in (tmp_path / "verse_cloze.jsonl").read_text().splitlines()]
    choice = [json.loads(line) for line in (tmp_path / "verse_choice.jsonl").read_text().splitlines()]
    verses = set(local_tasks.verses(tiny_text(3)))
    assert cloze and all(c["context"] + c["target"] in {v.rstrip(".:;,") for v in verses} for c in cloze)
    assert len(choice) == 4 and all(f"{c['context']} {c['choices'][c['gold']]}" in verses for c in choice)
    with pytest.raises(ValueError, match="at least 4 verses"):
        local_tasks.build("too short\n", tmp_path)


def test_a_model_without_tokenizer_is_refused():
    with pytest.raises(ValueError, match="tokenizer is required"):
        RecurlabLM(model())
