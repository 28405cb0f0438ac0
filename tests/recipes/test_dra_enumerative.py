"""Tests of the DRA / psi-class recipe: exact intersection numbers (known values, closed forms and the recursion's
self-consistency), the DRA and Snake activations, split-conformal coverage, and a tiny run."""

import math
import random
from fractions import Fraction as Fr

import numpy as np
import pytest
import torch

from recurlab.recipes import dra_enumerative as m


@pytest.mark.parametrize("g, ds, value", [
    (1, (1,), Fr(1, 24)),
    (2, (4,), Fr(1, 1152)),
    (0, (0, 0, 0), Fr(1)),
    (0, (0, 0, 0, 1), Fr(1)),
    (2, (2, 3), Fr(29, 5760)),
    (3, (7,), Fr(1, 82944)),
    (2, (1, 4), Fr(1, 384)),
    (2, (2, 2, 2), Fr(7, 240)),
    (1, (0, 2), Fr(1, 24)),  # string: <tau_0 tau_2>_1 = <tau_1>_1
    (3, (4, 4), Fr(607, 1451520)),
    (3, (3, 5), Fr(503, 1451520)),
    (3, (2, 6), Fr(77, 414720)),
])
def test_known_intersection_numbers(g, ds, value):
    # Witten 1991 / Faber's tables; order of the d_i does not matter
    assert m.intersection_number(g, ds) == value
    assert m.intersection_number(g, tuple(reversed(ds))) == value


def test_closed_forms_dilaton_genus_zero_and_one_point():
    for n in range(1, 8):  # <tau_1^n>_1 = (n-1)!/24 by the dilaton equation
        assert m.intersection_number(1, (1,) * n) == Fr(math.factorial(n - 1), 24)
    for g in range(1, 6):  # <tau_{3g-2}>_g = 1 / (24^g g!)
        assert m.intersection_number(g, (3 * g - 2,)) == Fr(1, 24 ** g * math.factorial(g))
    rng = random.Random(0)
    for _ in range(30):  # genus 0: (n-3)! / prod d_i!
        n = rng.randint(3, 9)
        ds = _random_bracket(rng, 0, n)
        assert m.intersection_number(0, ds) == Fr(math.factorial(n - 3), math.prod(math.factorial(d) for d in ds))


def test_dimension_constraint_and_unstable_brackets_vanish():
    assert m.intersection_number(1, (2,)) == 0  # sum d = 2 != 3g - 3 + n = 1
    assert m.intersection_number(2, (3, 3)) == 0
    assert m.intersection_number(0, (0, 0)) == 0  # 2g - 2 + n = 0: unstable
    assert m.intersection_number(0, (0,)) == 0
    with pytest.raises(ValueError, match="g must be an int >= 0"):
        m.intersection_number(-1, (1,))
    with pytest.raises(ValueError, match="ds must be a non-empty"):
        m.intersection_number(1, (1, -2))
    with pytest.raises(ValueError, match="ds must be a non-empty"):
        m.intersection_number(1, ())


def _random_bracket(rng: random.Random, g: int, n: int) -> tuple[int, ...]:
    """A random tuple of n exponents summing to 3g - 3 + n."""
    ds = [0] * n
    for _ in range(3 * g - 3 + n):
        ds[rng.randrange(n)] += 1
    return tuple(ds)


def test_string_dilaton_and_dvv_agree_on_random_brackets():
    """The memoised recursion uses string/dilaton whenever a tau_0/tau_1 is present and DVV on the largest d
    otherwise; DVV applied to *any* other point with d >= 2 (or d = 1) must give the same number."""
    rng = random.Random(1)
    checked = 0
    for _ in range(60):
        g, n = rng.randint(0, 4), rng.randint(1, 6)
        if 2 * g - 2 + n <= 0 or 3 * g - 3 + n < 0:
            continue
        ds = _random_bracket(rng, g, n)
        value = m.intersection_number(g, ds)
        assert value > 0
        for i, d in enumerate(ds):
            if d >= 2 or (d == 1 and (g, n) != (1, 1)):
                assert m.dvv_rhs(g, ds, i) == value, (g, ds, i)
                checked += 1
        # the string equation as an identity: <tau_0 X>_g = sum_j <X with d_j - 1>_g
        string = sum((m.intersection_number(g, ds[:j] + (ds[j] - 1,) + ds[j + 1:])
                      for j in range(n) if ds[j] > 0), Fr(0))
        assert m.intersection_number(g, (0,) + ds) == string
        # dilaton: <tau_1 X>_g = (2g - 2 + n) <X>_g
        assert m.intersection_number(g, (1,) + ds) == (2 * g - 2 + n) * value
    assert checked > 40
    with pytest.raises(ValueError, match="d_i >= 1"):
        m.dvv_rhs(1, (0, 2), 0)


def test_enumeration_counts_and_range():
    rows = m.enumerate_brackets(2, 4)
    assert all(v > 0 and sum(ds) == 3 * g - 3 + len(ds) and list(ds) == sorted(ds) for g, ds, v in rows)
    assert len({(g, ds) for g, ds, _ in rows}) == len(rows)
    # genus 0, n <= 4: <tau_0^3>, <tau_0^3 tau_1>; genus 1, n <= 4: partitions of n into n parts: 1+2+3+5 = 11
    assert sum(1 for g, _, _ in rows if g == 0) == 2
    assert sum(1 for g, _, _ in rows if g == 1) == 1 + 2 + 3 + 5
    assert m.log10_fraction(Fr(1, 1000)) == pytest.approx(-3)
    with pytest.raises(ValueError, match="max_n"):
        m.enumerate_brackets(2, 0)


def test_dra_formula_hand_case_and_finite_at_zero_parameters():
    act = m.DRA(2)
    with torch.no_grad():
        act.a.copy_(torch.tensor([2.0, 1.0]))
        act.b.copy_(torch.tensor([0.5, -2.0]))
        act.c.copy_(torch.tensor([0.3, 0.0]))
        act.d.copy_(torch.tensor([-0.4, 1.0]))
    x = torch.tensor([[1.0, 0.5]])
    expected = [1 + 2 * math.sin(2.0) ** 2 + 0.3 * math.cos(0.5) - 0.4 * math.tanh(0.5),
                0.5 + math.sin(-0.25) ** 2 + math.tanh(-1.0)]
    assert torch.allclose(act(x), torch.tensor([expected]), atol=1e-6)
    # b (the divisor of the main-text formula) and a at exactly 0: finite values and gradients
    with torch.no_grad():
        act.a.zero_()
        act.b.zero_()
    x = torch.linspace(-3, 3, 13).view(-1, 1).repeat(1, 2).requires_grad_(True)
    y = act(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in act.parameters())
    with torch.no_grad():
        act.a.fill_(1.0)
        act.b.fill_(1e-9)  # used as 1e-3: |a sin^2(x/b)| <= |a|
    assert act(x).abs().max() <= x.abs().max() + 1 + 1e-5
    with pytest.raises(ValueError, match="last dim"):
        act(torch.zeros(3, 4))


def test_snake_formula_and_zero_frequency():
    act = m.Snake(1)
    x = torch.tensor([[0.7]])
    assert act(x).item() == pytest.approx(0.7 + math.sin(0.7) ** 2, abs=1e-6)
    with torch.no_grad():
        act.a.zero_()
    assert act(x).item() == pytest.approx(0.7)  # sin^2(0)/eps = 0
    with pytest.raises(ValueError, match="activation must be one of"):
        m.make_activation("swish", 4)


def test_regressor_is_permutation_invariant():
    torch.manual_seed(0)
    model = m.IntersectionRegressor("dra", d_model=16, n_layers=1, n_heads=2, hidden=16).eval()
    ds, g = torch.tensor([[0.0, 2.0, 5.0]]), torch.tensor([2.0])
    assert torch.allclose(model(ds, g), model(ds[:, [2, 0, 1]], g), atol=1e-6)


def test_conformal_quantile_hand_case_and_coverage_on_known_noise():
    scores = np.arange(1.0, 10.0)  # m = 9
    assert m.conformal_quantile(scores, 0.1) == 9.0  # rank ceil(10 * 0.9) = 9
    assert m.conformal_quantile(scores, 0.2) == 8.0
    assert m.conformal_quantile(scores[:5], 0.1) == math.inf  # rank 6 > 5
    with pytest.raises(ValueError, match="alpha"):
        m.conformal_quantile(scores, 1.5)
    rng = np.random.default_rng(0)
    coverages, qs = [], []
    for _ in range(200):  # y = f(x) + N(0, 1), predictor f: the interval covers ~90%
        cal, test = rng.normal(size=200), rng.normal(size=1000)
        q = m.conformal_quantile(np.abs(cal), 0.1)
        coverages.append(m.interval_coverage(test, np.zeros_like(test), q))
        qs.append(q)
    assert 0.89 <= np.mean(coverages) <= 0.915  # expected 181/201 = 0.9005
    assert np.median(qs) == pytest.approx(1.645, abs=0.1)


def test_tiny_run_learns_and_is_deterministic(tmp_path):
    cfg = m.Config(max_genus=3, max_n=6, n_train_max=4, activations=("relu", "dra"), seeds=1, d_model=16,
                   n_heads=2, n_layers=1, hidden=32, steps=120, eval_every=60, batch_size=32, lr=5e-3)
    r1 = m.run(out_dir=tmp_path, seed=0, progress=False, config=cfg)
    s, base = r1.details["summary"], r1.details["baseline_mae"]
    for act in ("relu", "dra"):
        assert s[act]["test"]["mae"] < 0.5 * base["test"], act
        assert s[act]["heldout"]["mae"] < 0.7 * base["heldout"], act
        assert 0 <= s[act]["heldout"]["coverage"] <= 1
    assert (tmp_path / "dra_enumerative.png").stat().st_size > 0
    assert r1.files == [str(tmp_path / "dra_enumerative.png")]
    r2 = m.run(out_dir=None, seed=0, progress=False, config=m.Config(**{**cfg.__dict__, "activations": ("dra",)}))
    assert r2.details["summary"]["dra"] == s["dra"]
    with pytest.raises(ValueError, match="n_train_max"):
        m.run(progress=False, config=m.Config(max_n=5, n_train_max=5))
