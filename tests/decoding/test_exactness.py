"""The heart of the decoding tests: every method samples exactly the target's distribution.

Tiny float64 models over a vocabulary of 8 (an attention target and a recurrent gla target, a mingru draft, random
weights): the target's exact distribution over the next 2 tokens (64 outcomes) is enumerated, and N runs of each
method (chain k = 2, RSD-C branching (2, 2), RSD-S width 3 depth 2; max_new_tokens = 2, so a run covers a first
round's acceptances, its resampled token, and for chain and RSD also the round that follows a rejection) are
compared with it by Pearson's chi-square test: outcomes expected fewer than 5 times are pooled into one bin, and a
method fails when the p-value is below ALPHA = 1e-4 (the false-alarm rate of each test: a correct sampler fails it
with probability 1e-4 over the seeds; the 12 tests together with at most 1.2e-3). An outcome the target cannot
produce (outside top-k) fails at once. The seeds are fixed, so the suite is deterministic.

N is 1000 here, to keep the suite fast (1-5 ms per run); RECURLAB_EXACTNESS_N=20000 runs the full check (a few
minutes). At temperature 0 every method reproduces greedy decoding exactly, with the real models' states.
"""

import os

import pytest
import scipy.stats
import torch

from recurlab.decoding import rsd_c_generate, rsd_s_generate, sampling_probs, speculative_generate
from tests.decoding.history_lm import VOCAB, HistoryLM, perturbed_copy, tiny_lm

N = int(os.environ.get("RECURLAB_EXACTNESS_N", "1000"))
ALPHA = 1e-4
PROMPT = torch.tensor([[1, 5, 2]])
METHODS = {
    "chain": lambda t, d, ids, n, **kw: speculative_generate(t, d, ids, n, draft_len=2, **kw),
    "rsd-c": lambda t, d, ids, n, **kw: rsd_c_generate(t, d, ids, n, branching=(2, 2), **kw),
    "rsd-s": lambda t, d, ids, n, **kw: rsd_s_generate(t, d, ids, n, beam_width=3, depth=2, **kw),
}
TARGETS = {"attention": 11, "gla": 12}  # mixer -> seed of its random weights
DRAFT = ("mingru", 21)


def exact_two_tokens(model, prompt, temperature, top_k) -> torch.Tensor:
    """P(x_1 = a, x_2 = b) (V, V) under the target's own sampling distribution."""
    with torch.no_grad():
        first = sampling_probs(model(prompt)[0][0, -1], temperature, top_k)
        probs = torch.zeros(VOCAB, VOCAB, dtype=torch.float64)
        for a in range(VOCAB):
            ids = torch.cat([prompt, torch.tensor([[a]])], 1)
            probs[a] = first[a] * sampling_probs(model(ids)[0][0, -1], temperature, top_k)
    return probs


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square p-value of counts against probs (same shape); cells expected < 5 times are pooled."""
    counts, expected = counts.flatten().double(), probs.flatten() * counts.sum()
    assert counts[probs.flatten() == 0].sum() == 0, "the method produced an outcome the target cannot produce"
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum().reshape(1)])
    exp = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = float(((obs - exp) ** 2 / exp).sum())
    return float(scipy.stats.chi2.sf(stat, len(obs) - 1))


def sample_counts(method, target, draft, n, temperature, top_k, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(VOCAB, VOCAB, dtype=torch.long)
    for _ in range(n):
        ids, _ = method(target, draft, PROMPT, 2, temperature=temperature, top_k=top_k, generator=g)
        counts[ids[0, -2], ids[0, -1]] += 1
    return counts


@pytest.fixture(scope="module")
def models():
    """Memoised target per mixer and the draft (see history_lm.HistoryLM)."""
    return {name: HistoryLM(tiny_lm(name, seed)) for name, seed in TARGETS.items()}, HistoryLM(tiny_lm(*DRAFT))


@pytest.mark.parametrize("top_k", [None, 3], ids=["temperature1", "top3"])
@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_samples_follow_the_target_distribution(models, method, target_name, top_k):
    targets, draft = models
    target = targets[target_name]
    probs = exact_two_tokens(target.model, PROMPT, 1.0, top_k)
    counts = sample_counts(METHODS[method], target, draft, N, 1.0, top_k)
    p_value = chi_square_p_value(counts, probs)
    tv = 0.5 * float((counts.double() / N - probs).abs().sum())
    assert p_value > ALPHA, f"{method} on {target_name}: chi-square p = {p_value:.2g}, total variation {tv:.3f}"


def test_the_draft_differs_from_the_targets(models):
    """The test has power only if the draft's distribution is far from the target's."""
    targets, draft = models
    q = exact_two_tokens(draft.model, PROMPT, 1.0, None)
    for target in targets.values():
        assert 0.5 * float((exact_two_tokens(target.model, PROMPT, 1.0, None) - q).abs().sum()) > 0.2


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_temperature_zero_is_greedy_decoding(method, target_name):
    """Real models and their states over several rounds (16 tokens): the output is the target's greedy decoding.
    The draft is the target with noisy weights, so that rounds accept all, some and none of their drafts."""
    target = tiny_lm(target_name, TARGETS[target_name])
    draft = perturbed_copy(target, 0.1, seed=2)
    greedy = target.generate(PROMPT, 16, temperature=0)
    ids, stats = METHODS[method](target, draft, PROMPT, 16, temperature=0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, greedy)
    assert stats.target_calls == len(stats.accepted) < 16
    assert 0 in stats.accepted and 2 in stats.accepted, stats.accepted
