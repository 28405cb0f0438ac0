"""The pieces the decoders are built from: sampling distributions, sampling without replacement, the draft trees,
the statistics, determinism and argument checks."""

import pytest
import torch

from recurlab.decoding import DecodeStats, rsd_c_generate, rsd_s_generate, sampling_probs, speculative_generate
from recurlab.decoding.common import prefill, residual
from recurlab.decoding.rsd import conditioned_gumbel, draft_beam, draft_constant, gumbel_top_k, tree_paths
from tests.decoding.history_lm import tiny_lm

PROMPT = torch.tensor([[1, 5, 2]])


def test_sampling_probs_greedy_temperature_and_top_k():
    logits = torch.tensor([[1.0, 3.0, 3.0, -2.0, 0.5]])
    assert torch.equal(sampling_probs(logits, 0), torch.tensor([[0.0, 1, 0, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(sampling_probs(logits, 2.0), torch.softmax(logits.double() / 2, -1))
    top2 = sampling_probs(logits, 1.0, top_k=2)
    assert top2[0, [0, 3, 4]].sum() == 0 and torch.allclose(top2.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_residual_is_the_normalised_positive_part():
    p, q = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), torch.tensor([0.2, 0.6, 0.2], dtype=torch.float64)
    torch.testing.assert_close(residual(p, q), torch.tensor([1.0, 0, 0], dtype=torch.float64))
    assert torch.equal(residual(p, p), p)  # nothing is ever rejected when p == q


def test_gumbel_top_k_draws_distinct_tokens_from_the_support_and_its_first_is_a_plain_draw():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    assert sorted(gumbel_top_k(probs, 5, g)) == [0, 2, 3]
    first = torch.zeros(5)
    for _ in range(2000):
        tokens = gumbel_top_k(probs, 2, g)
        assert len(set(tokens)) == 2 and all(probs[t] > 0 for t in tokens)
        first[tokens[0]] += 1
    assert (first / 2000 - probs.float()).abs().max() < 0.045  # 4 sigma at n = 2000


def test_conditioned_gumbel_keeps_the_order_and_puts_the_maximum_at_the_parent():
    perturbed = torch.tensor([-1.0, 0.5, -3.0, 0.2], dtype=torch.float64)
    shifted = conditioned_gumbel(-0.7, perturbed)
    assert float(shifted.max()) == pytest.approx(-0.7) and torch.equal(shifted.argsort(), perturbed.argsort())


def test_draft_trees_have_their_shapes_and_paths():
    draft = tiny_lm("mingru", 21)
    state = prefill(draft, PROMPT)
    g, stats = torch.Generator().manual_seed(0), DecodeStats()
    levels = draft_constant(draft, state, 2, (3, 2), 1.0, None, g, stats)
    assert [len(level.tokens) for level in levels] == [1, 3, 6] and stats.draft_calls == 2
    assert len(set(levels[1].tokens)) == 3 and levels[2].parents == [0, 0, 1, 1, 2, 2]
    paths, row, children = tree_paths(levels)
    assert paths.shape == (6, 3) and (paths[:, 0] == 2).all() and children[(0, 0)] == [0, 1, 2]
    beam = draft_beam(draft, state, 2, 3, 3, 1.0, None, g, DecodeStats())
    assert [len(level.tokens) for level in beam] == [1, 3, 3, 3]
    paths, row, children = tree_paths(beam)
    assert paths.shape[1] == 4 and 3 <= paths.shape[0] <= 7  # the 3 last-level leaves and up to 4 cut early
    assert all(len({beam[d + 1].tokens[j] for j in kids}) == len(kids) for (d, i), kids in children.items())


@pytest.mark.parametrize("method", ["chain", "rsd-c", "rsd-s"])
def test_a_seeded_run_repeats_and_its_stats_add_up(method):
    target, draft = tiny_lm("gla", 12), tiny_lm("mingru", 21)
    run = {"chain": lambda g: speculative_generate(target, draft, PROMPT, 10, 3, generator=g),
           "rsd-c": lambda g: rsd_c_generate(target, draft, PROMPT, 10, (2, 2), generator=g),
           "rsd-s": lambda g: rsd_s_generate(target, draft, PROMPT, 10, 3, 2, generator=g)}[method]
    ids, stats = run(torch.Generator().manual_seed(7))
    again, _ = run(torch.Generator().manual_seed(7))
    assert torch.equal(ids, again) and ids.shape == (1, 13) and torch.equal(ids[:, :3], PROMPT)
    assert stats.target_calls == len(stats.accepted) and sum(a + 1 for a in stats.accepted) >= 10
    assert sum(a + 1 for a in stats.accepted[:-1]) < 10  # the last round was needed
    assert stats.mean_accepted == sum(stats.accepted) / len(stats.accepted)


def test_bad_arguments_are_refused():
    target = tiny_lm("gla", 12)
    with pytest.raises(ValueError, match=r"\(1, T\)"):
        speculative_generate(target, target, torch.tensor([[1], [2]]), 4)
    with pytest.raises(ValueError, match="draft_len"):
        speculative_generate(target, target, PROMPT, 4, draft_len=0)
    with pytest.raises(ValueError, match="branching"):
        rsd_c_generate(target, target, PROMPT, 4, branching=())
    with pytest.raises(ValueError, match="beam_width"):
        rsd_s_generate(target, target, PROMPT, 4, beam_width=0)
    with pytest.raises(ValueError, match="temperature"):
        rsd_s_generate(target, target, PROMPT, 4, temperature=-1)


def test_zero_new_tokens_and_a_one_token_prompt():
    target, draft = tiny_lm("attention", 11), tiny_lm("mingru", 21)
    ids, stats = speculative_generate(target, draft, PROMPT, 0)
    assert torch.equal(ids, PROMPT) and stats.target_calls == 0
    ids, _ = rsd_c_generate(target, draft, torch.tensor([[4]]), 5, temperature=0)
    assert torch.equal(ids, target.generate(torch.tensor([[4]]), 5, temperature=0))
