"""Lexical Unit Decoding (recurlab/decoding/lud.py): marking on a model whose probabilities are known, the example
layout, the vocabulary extension, decoding (greedy equality, states without placeholders for every mixer of the
stack, repetition control), a small end-to-end fine-tune on memorised text, the quality measures and the argument
checks. (The stdlib code data: tests/tasks/test_code.py.)"""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from recurlab.decoding import (LexicalUnits, continuation_bits_per_byte, extend_vocabulary, lud_examples,
                               lud_generate, lud_passes, lud_quality, lud_training_task, mark_units, token_confidence,
                               train_lud, units_from_confidence)
from recurlab.models import CausalLM, ModelConfig
from recurlab.tasks import IGNORE
from tests.decoding.history_lm import History
from tests.models.test_depth_contract import CASES, tiny_model


class TableLM(nn.Module):
    """A bigram model with a given table of next-token logits (V, V): logits after token a = table[a]. Its state is
    the token history (so the decoders' prefill/verify/re-run contract holds)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.double(), requires_grad=False)
        self.config = SimpleNamespace(vocab_size=table.shape[0])

    def init_state(self, batch_size, device=None, dtype=None):
        return History(torch.zeros(batch_size, 0, dtype=torch.long))

    def forward(self, ids, state=None):
        state = state if state is not None else self.init_state(ids.shape[0])
        return self.table[ids], History(torch.cat([state.ids, ids], 1))


def successor_table(vocab: int, certain: dict[int, float]) -> torch.Tensor:
    """Log-probabilities: after token a in ``certain`` the next is a + 1 with probability certain[a], the rest spread
    evenly; after any other token every token is equally likely."""
    probs = torch.full((vocab, vocab), 1.0 / vocab, dtype=torch.float64)
    for a, p in certain.items():
        probs[a] = (1 - p) / (vocab - 1)
        probs[a, (a + 1) % vocab] = p
    return probs.log()


# ------------------------------------------------------------------------------------------------- marking


def test_units_partition_greedily_and_are_capped():
    confident = torch.tensor([0, 1, 1, 0, 1, 1, 1, 1, 1, 0], dtype=torch.bool)
    units = units_from_confidence(confident, max_unit=4)
    assert units.starts.tolist() == [0, 3, 7, 9] and units.lengths.tolist() == [3, 4, 2, 1]
    assert units.histogram() == {1: 1, 2: 1, 3: 1, 4: 1} and units.fraction_in_units(2) == pytest.approx(0.9)
    assert units_from_confidence(confident, max_unit=1).lengths.tolist() == [1] * 10
    assert units_from_confidence(torch.ones(5, dtype=torch.bool), 2).lengths.tolist() == [2, 2, 1]


def test_marking_uses_the_models_probability_of_the_true_token():
    # after 0 -> 1 with p 0.95, after 1 -> 2 with p 0.95, after 2 -> 3 with p 0.5; all else uniform over 6
    model = TableLM(successor_table(6, {0: 0.95, 1: 0.95, 2: 0.5}))
    ids = torch.tensor([0, 1, 2, 3, 0, 1, 2, 0, 1, 5])
    confidence = token_confidence(model, ids, window=5)
    expected = [0, 0.95, 0.95, 0.5, 1 / 6, 0, 0.95, 0.5 / 5, 0.95, 0.05 / 5]  # positions 0 and 5 start windows
    torch.testing.assert_close(confidence, torch.tensor(expected, dtype=torch.float32))
    units = mark_units(model, ids, alpha=0.9, max_unit=4, window=5)
    assert units.starts.tolist() == [0, 3, 4, 5, 7, 9] and units.lengths.tolist() == [3, 1, 1, 2, 2, 1]
    report = units.report()
    assert report["length_histogram"] == {"1": 3, "2": 2, "3": 1} and report["fraction_in_units_of_2_or_more"] == 0.7


# ------------------------------------------------------------------------------------------------- layout


def test_example_layout_inputs_and_labels_are_exact():
    ids = torch.arange(10, 22)  # 12 tokens: 10 .. 21
    units = LexicalUnits(torch.tensor([0, 2, 4, 6, 9, 10]), torch.tensor([2, 2, 2, 3, 1, 2]), 12)
    task = lud_examples(ids, units, placeholder_id=99, seq_len=5, vary_context=False)
    # the unit at 0 has no context and the one at 2 too little; 4 (m = 2), 6 (m = 3) and 10 (m = 2) are used
    assert task.inputs.tolist() == [[10, 11, 12, 13, 99], [13, 14, 15, 99, 99], [16, 17, 18, 19, 99]]
    assert task.labels.tolist() == [[11, 12, 13, 14, 15], [14, 15, 16, 17, 18], [17, 18, 19, 20, 21]]
    assert task.vocab_size == 100
    masked = lud_examples(ids, units, 99, 5, context_labels=False, vary_context=False)
    assert masked.labels[1].tolist() == [IGNORE, IGNORE, 16, 17, 18]  # x_{s-1} predicts x_s, PAD_j x_{s+j}
    mixture = lud_training_task(ids, units, 99, 5, lud_fraction=0.5, seed=0, vary_context=False)
    assert len(mixture) == 6 and torch.equal(mixture.inputs[:3], task.inputs)
    plain = mixture.inputs[3:]
    assert (plain != 99).all() and torch.equal(mixture.labels[3:], plain + 1)  # real windows of ids
    assert len(lud_training_task(ids, units, 99, 5, lud_fraction=0.75, vary_context=False)) == 4


def test_varied_context_puts_the_unit_after_a_drawn_context_and_fills_the_rest():
    ids = torch.arange(10, 40)
    units = units_from_confidence(torch.tensor([i % 3 != 0 for i in range(30)]), max_unit=3)  # units of 3 at 0, 3, ..
    task = lud_examples(ids, units, placeholder_id=99, seq_len=8, seed=1)
    assert len(task) == 9  # every unit but the first (no token before it)
    contexts = []
    for inputs, labels, s in zip(task.inputs.tolist(), task.labels.tolist(), range(3, 30, 3)):
        c = next(i for i, t in enumerate(inputs) if t == 99)  # the context length
        contexts.append(c)
        assert 1 <= c <= min(s, 6) and inputs[:c] == list(range(10 + s - c, 10 + s))
        assert inputs[c:] == [99] * (8 - c) and labels[:c + 2] == list(range(11 + s - c, 13 + s))
        assert labels[c + 2:] == [IGNORE] * (6 - c)  # filler after the unit is unlabelled
    assert len(set(contexts)) > 2 and task.inputs.tolist() == lud_examples(ids, units, 99, 8, seed=1).inputs.tolist()


def test_vocabulary_extension_keeps_the_old_logits_bit_identical():
    for tie in (True, False):
        torch.manual_seed(0)
        base = CausalLM(ModelConfig(vocab_size=12, d_model=16, n_layers=2, mixer="gla", tie_embeddings=tie)).eval()
        before = {k: v.clone() for k, v in base.state_dict().items()}
        model, placeholder = extend_vocabulary(base)
        assert placeholder == 12 and model.config.vocab_size == 13 and not model.training
        ids = torch.randint(0, 12, (2, 9))
        with torch.no_grad():
            old, _ = base(ids)
            new, _ = model(ids)
        assert new.shape == (2, 9, 13) and torch.equal(new[..., :12], old)
        torch.testing.assert_close(model.embedding.weight[12], base.embedding.weight.mean(0))
        assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the base is untouched


# ------------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("mixer", ["attention", "gla", "mingru", "rwkv"])
def test_beta_above_one_or_one_token_per_pass_is_greedy_decoding(mixer):
    torch.manual_seed(1)
    model, _ = extend_vocabulary(CausalLM(ModelConfig(vocab_size=12, d_model=16, n_layers=2, mixer=mixer)).eval())
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    greedy = model.generate(prompt, 24, temperature=0)
    ids, stats = lud_generate(model, prompt, 24, max_parallel=4, beta=1.5)
    assert torch.equal(ids, greedy) and stats.target_calls == 24 and stats.accepted == [0] * 24
    # every pass but the last drops its placeholders: an attention cache rewinds, gla and mingru read the state
    # after the committed token from the pass's prefix states, other states re-run that one token
    expected = {"attention": (23, 0, 0, 0), "gla": (0, 0, 0, 23), "mingru": (0, 0, 0, 23), "rwkv": (0, 23, 23, 0)}
    assert (stats.target_rewinds, stats.target_reruns, stats.target_rerun_tokens,
            stats.target_prefix_states) == expected[mixer]
    ids, stats = lud_generate(model, prompt, 24, max_parallel=1, beta=0.0)
    assert torch.equal(ids, greedy) and stats.target_calls == 24 and stats.target_rerun_tokens == 0


STACK_CASES = [(d, m) for d, m in CASES if d == "stack"] + [("stack-sambay", "gmu")]  # every mixer of the stack


@pytest.mark.parametrize("depth,mixer", STACK_CASES)
def test_the_state_after_each_pass_has_no_placeholder_in_it(depth, mixer):
    """At a low beta passes commit several tokens; the state each pass leaves equals the state after running the
    text committed before the pass directly (its own tokens are fed by the next pass)."""
    model, placeholder = extend_vocabulary(tiny_model(depth, mixer))
    prompt = torch.tensor([[1, 2, 3]])
    committed, sizes = prompt[0].tolist(), []
    with torch.no_grad():
        for step in lud_passes(model, prompt, 12, max_parallel=3, beta=0.0, repetition_control=False):
            _, direct = model(torch.tensor([committed]))  # the text before this pass's tokens, without placeholders
            for probe in (step.tokens[0], placeholder):
                expected, _ = model.step(torch.tensor([probe]), direct)
                got, _ = model.step(torch.tensor([probe]), step.state)
                torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
            committed += step.tokens
            sizes.append(len(step.tokens))
    assert max(sizes) == 3 and sum(sizes) == 12 and placeholder not in committed


def test_repetition_control_cuts_a_span_before_a_repeated_token():
    # after 2 comes 3 (p 0.99); the placeholder (id 6) predicts 3 again with p 0.99, 3 predicts 4 (p 0.99)
    table = successor_table(7, {2: 0.99, 3: 0.99})
    table[6] = successor_table(7, {2: 0.99})[2]
    model = TableLM(table)
    prompt = torch.tensor([[1, 2]])
    ids, stats = lud_generate(model, prompt, 3, max_parallel=3, beta=0.9, placeholder_id=6)
    assert ids[0, 2:].tolist()[:1] == [3] and stats.accepted[0] == 0  # 3, then 3 again: cut
    ids, stats = lud_generate(model, prompt, 3, max_parallel=3, beta=0.9, placeholder_id=6, repetition_control=False)
    assert ids[0, 2:4].tolist() == [3, 3] and stats.accepted[0] == 2


def test_sampling_is_seeded_and_never_emits_the_placeholder():
    torch.manual_seed(2)
    model, placeholder = extend_vocabulary(CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=1, mixer="gla")))
    with torch.no_grad():
        model.embedding.weight[placeholder] *= 50  # the placeholder's tied logit would win everywhere
    prompt = torch.tensor([[1, 2]])
    runs = [lud_generate(model.eval(), prompt, 30, beta=0.2, temperature=1.0, top_k=5,
                         generator=torch.Generator().manual_seed(7))[0] for _ in range(2)]
    assert torch.equal(runs[0], runs[1]) and placeholder not in runs[0].tolist()[0]
    greedy, _ = lud_generate(model, prompt, 30, beta=0.2)
    assert placeholder not in greedy.tolist()[0]


# ------------------------------------------------------------------------------------------------- end to end


def test_train_lud_on_memorised_text_makes_passes_emit_several_tokens(tmp_path):
    """A tiny attention model memorises a repeated sentence; marking finds units, a short fine-tune teaches the
    placeholders, and decoding the sentence then takes at most half as many passes as tokens (6-8 for 22 tokens
    over seeds 0-3 when this was written), with the base model's greedy text."""
    text = "the quick brown fox jumps over the lazy dog. "
    alphabet = sorted(set(text))
    ids = torch.tensor([alphabet.index(c) for c in text * 40])
    torch.manual_seed(0)
    base = CausalLM(ModelConfig(vocab_size=len(alphabet), d_model=32, n_layers=2, mixer="attention"))
    opt = torch.optim.Adam(base.parameters(), lr=1e-2)
    windows = ids[:len(ids) // 33 * 33].view(-1, 33)
    for _ in range(120):
        logits, _ = base(windows[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(alphabet)), windows[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    base.eval()
    model, report = train_lud(base, ids, tmp_path / "run", steps=200, alpha=0.9, max_unit=4, seq_len=32,
                              batch_size=64, lr=1e-2, progress=False)
    assert report["marking"]["fraction_in_units_of_2_or_more"] > 0.9, report["marking"]
    assert report["unit_examples"] > 400 and report["examples"] == 2 * report["unit_examples"]
    assert (tmp_path / "run" / "lud_report.json").exists() and (tmp_path / "run" / "model" / "config.json").exists()
    prompts = [ids[None, :10], ids[None, 3:10]]  # prompt + 22 new tokens stay within the 32 tokens trained on
    quality = lud_quality(base, model, prompts, 22, max_parallel=4, beta=0.9)
    assert quality["exact_match"] == 1.0 and quality["passes"] <= 2 * 11, quality


def test_train_lud_is_a_resumable_trainer_run_and_leaves_the_base_alone(tmp_path):
    torch.manual_seed(4)
    base = CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=1, mixer="gla", tie_embeddings=False)).eval()
    with torch.no_grad():
        base.head.weight.mul_(20)  # peaked next-token distributions: some tokens pass alpha
    before = {k: v.clone() for k, v in base.state_dict().items()}
    ids = torch.randint(0, 8, (600,), generator=torch.Generator().manual_seed(0))
    kwargs = dict(val_ids=ids[:200], steps=6, alpha=0.3, seq_len=16, batch_size=8, eval_every=3, progress=False)
    model, report = train_lud(base, ids, tmp_path / "run", **kwargs)
    assert report["unit_examples"] > 0 and report["train"]["step"] == 6 and report["train"]["eval_loss"] is not None
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    again, _ = train_lud(base, ids, tmp_path / "run", resume=True, **kwargs)  # finished: restored, not retrained
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    loaded = CausalLM.from_pretrained(tmp_path / "run" / "model")
    assert loaded.config.vocab_size == 9 and torch.equal(loaded.embedding.weight, model.embedding.weight)
    with pytest.raises(ValueError, match="already holds a training run"):  # never silently replaced
        train_lud(base, ids, tmp_path / "run", **kwargs)


def test_quality_measures_match_their_definitions():
    torch.manual_seed(3)
    base = CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=1, mixer="gla")).double().eval()
    model, _ = extend_vocabulary(base)
    prompt, continuation = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 0]])
    with torch.no_grad():
        logp = torch.log_softmax(base(torch.tensor([[1, 2, 3, 4]]))[0][0], -1)
    bits = -(logp[2, 4] + logp[3, 0]) / torch.log(torch.tensor(2.0, dtype=torch.float64))
    assert continuation_bits_per_byte(base, prompt, continuation) == pytest.approx(float(bits) / 2)
    assert continuation_bits_per_byte(base, prompt, continuation, bytes_per_token=2.0) == pytest.approx(float(bits) / 4)
    same = lud_quality(base, model, [prompt, torch.tensor([[5]])], 10, beta=2.0)
    assert same["token_match"] == same["prefix_match"] == same["exact_match"] == 1.0 and same["tokens_per_pass"] == 1.0
    assert same["lud_bits_per_byte"] == pytest.approx(same["greedy_bits_per_byte"])
    loose = lud_quality(base, model, [prompt], 10, beta=0.0)  # accept everything: an untuned model gets it wrong
    assert loose["tokens_per_pass"] > 1 and loose["prefix_match"] <= loose["token_match"] < 1.0


# ------------------------------------------------------------------------------------------------- errors


def test_bad_arguments_name_what_is_expected():
    model, _ = extend_vocabulary(CausalLM(ModelConfig(vocab_size=8, d_model=16, n_layers=1, mixer="gla")))
    prompt = torch.tensor([[1, 2]])
    cases = [
        (lambda: lud_generate(model, prompt, 4, max_parallel=0), r"max_parallel must be an int >= 1"),
        (lambda: lud_generate(model, prompt, 4, beta=-0.5), r"beta must be a number >= 0"),
        (lambda: lud_generate(model, prompt, 4, placeholder_id=9), r"placeholder_id must be an int in \[0, vocab_size=9\)"),
        (lambda: lud_generate(model, torch.tensor([1, 2]), 4), r"input_ids must be a \(1, T\) tensor"),
        (lambda: lud_generate(model, prompt, -1), r"max_new_tokens must be >= 0"),
        (lambda: mark_units(model, torch.tensor([1, 2, 3]), alpha=1.5), r"alpha must lie in \(0, 1\)"),
        (lambda: mark_units(model, torch.tensor([[1, 2, 3]])), r"ids must be a non-empty \(N,\) int64 tensor"),
        (lambda: units_from_confidence(torch.tensor([0.5, 0.9])), r"confident must be a \(N,\) bool tensor"),
        (lambda: units_from_confidence(torch.tensor([True]), max_unit=0), r"max_unit must be an int >= 1"),
        (lambda: lud_training_task(torch.arange(8), units_from_confidence(torch.ones(8, dtype=torch.bool)), 9, 4,
                                   lud_fraction=0), r"lud_fraction must lie in \(0, 1\]"),
        (lambda: lud_training_task(torch.arange(8), units_from_confidence(torch.zeros(8, dtype=torch.bool)), 9, 4),
         r"no lexical unit of length >= 2"),
        (lambda: lud_examples(torch.arange(8), units_from_confidence(torch.zeros(5, dtype=torch.bool)), 9, 4),
         r"units were marked on 5 tokens but ids has 8"),
        (lambda: extend_vocabulary(nn.Linear(2, 2)), r"model must be a CausalLM"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
