"""Tests of the PC compression recipe: the rANS coder, the PC's marginals and conditional CDFs against brute
force, EM's monotone likelihood, Chow-Liu structure, the baselines' writers, and a tiny run."""

import dataclasses
import io
import itertools

import numpy as np
import pytest

from recurlab.recipes import pc_compress as pcc


def _random_pc(parent, k, v, seed, mixture=False):
    rng = np.random.default_rng(seed)
    pc = pcc.LatentTreePC(parent, k, v, mixture=mixture)
    pc.prior = rng.dirichlet(np.ones(k))
    if not mixture:
        pc.trans = rng.dirichlet(np.ones(k), size=(len(parent), k))
    pc.emit = rng.dirichlet(np.ones(v), size=(len(parent), k))
    return pc


def _brute_joint(pc):
    """P(x) for every x in V^D by summing over every latent assignment z in K^D (no message passing)."""
    d, k, v = pc.D, pc.K, pc.V
    joint = np.zeros((v,) * d)
    for z in itertools.product(range(k), repeat=d):
        if pc.mixture and len(set(z)) > 1:
            continue
        w = pc.prior[z[pc.root]]
        if not pc.mixture:
            for c in range(d):
                if c != pc.root:
                    w *= pc.trans[c][z[pc.parent[c]], z[c]]
        table = np.ones((v,) * d) * w
        for i in range(d):
            shape = [1] * d
            shape[i] = v
            table = table * pc.emit[i][z[i]].reshape(shape)
        joint += table
    return joint


def _decode_all(words, freqs, precision):
    dec = pcc.RansDecoder(words, precision)
    cum = np.concatenate([np.zeros((len(freqs), 1), np.int64), np.cumsum(freqs, 1)], 1).tolist()
    out = [dec.decode(c) for c in cum]
    return np.array(out), dec


@pytest.mark.parametrize("seed", range(4))
def test_rans_round_trip_random_streams_with_extreme_probabilities(seed):
    rng = np.random.default_rng(seed)
    t, v = 3000, int(rng.integers(2, 20))
    precision = [12, 16, 24, 31][seed]
    probs = rng.dirichlet(np.full(v, 0.2), size=t)
    probs[:300] = 1e-12  # near-deterministic rows ...
    probs[:300, 0] = 1.0
    probs[300:400] = np.eye(v)[rng.integers(0, v, 100)]  # ... and exact zeros (still >= 1 count)
    symbols = np.array([rng.choice(v, p=p / p.sum()) for p in probs])
    symbols[:20] = v - 1  # the improbable symbol of the extreme rows must still round-trip
    freqs = pcc.quantize(probs, precision)
    assert freqs.min() >= 1 and np.all(freqs.sum(1) == 1 << precision)
    words = pcc.rans_encode(symbols, freqs, precision)
    assert words.dtype == np.uint32
    back, dec = _decode_all(words, freqs, precision)
    assert np.array_equal(back, symbols) and dec.finished()
    with pytest.raises(ValueError, match="exhausted"):
        for _ in range(200):
            dec.decode([0, 1 << (precision - 1), 1 << precision])


def test_rans_single_symbol_and_bad_input():
    freqs = pcc.quantize(np.array([[0.5, 0.5]]), 16)
    assert freqs.tolist() == [[32768, 32768]]
    words = pcc.rans_encode(np.array([1]), freqs, 16)
    assert _decode_all(words, freqs, 16)[0].tolist() == [1]
    with pytest.raises(ValueError, match="sum to 2"):
        pcc.rans_encode(np.array([0]), np.array([[3, 4]]), 16)
    with pytest.raises(ValueError, match="symbols must lie"):
        pcc.rans_encode(np.array([2]), freqs, 16)
    with pytest.raises(ValueError, match="precision"):
        pcc.quantize(np.array([[0.5, 0.5]]), 40)
    with pytest.raises(ValueError, match="too small"):
        pcc.quantize(np.ones((1, 17)), 4)
    with pytest.raises(ValueError, match="positive sum"):
        pcc.quantize(np.zeros((1, 3)), 16)


def test_written_bits_close_to_minus_log2_p_on_a_long_stream():
    rng = np.random.default_rng(7)
    t, v = 40_000, 8
    probs = rng.dirichlet(np.full(v, 0.5), size=t)
    symbols = np.array([rng.choice(v, p=p) for p in probs])
    ideal = -np.log2(probs[np.arange(t), symbols]).sum()
    words = pcc.rans_encode(symbols, pcc.quantize(probs, 24), 24)
    written = 32 * len(words)
    # a few 32-bit words of flush and granularity, plus a tiny quantisation loss
    assert ideal - 64 <= written <= ideal * 1.0005 + 96, (written, ideal)


@pytest.mark.parametrize("mixture", [False, True])
def test_marginals_sum_to_one_and_match_brute_force(mixture):
    parent = [1, -1, 1, 0] if not mixture else [-1, 0, 0, 0]
    pc = _random_pc(parent, 2, 3, seed=1, mixture=mixture)
    joint = _brute_joint(pc)
    assert joint.sum() == pytest.approx(1.0, abs=1e-12)
    xs = np.array(list(itertools.product(range(3), repeat=4)))
    p = np.exp(pc.log_marginal(xs))
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(p, joint[tuple(xs.T)], rtol=1e-10)
    # P(x_0, x_2) with x_1, x_3 summed out: leaves set to 1
    observed = np.zeros_like(xs, dtype=bool)
    observed[:, [0, 2]] = True
    marg = np.exp(pc.log_marginal(xs, observed))
    assert np.allclose(marg, joint.sum((1, 3))[xs[:, 0], xs[:, 2]], rtol=1e-10)
    assert np.allclose(pc.log_marginal(xs, np.zeros_like(observed)), 0.0, atol=1e-12)


@pytest.mark.parametrize("mixture", [False, True])
def test_conditional_cdf_matches_enumeration(mixture):
    parent = [2, 2, -1, 1] if not mixture else [-1, 0, 0, 0]
    pc = _random_pc(parent, 3, 3, seed=2, mixture=mixture)
    joint = _brute_joint(pc)
    xs = np.array(list(itertools.product(range(3), repeat=4)))
    for order in ([0, 1, 2, 3], [3, 0, 2, 1]):
        state = pcc.MarginalCoderState(pc, len(xs))
        for step, i in enumerate(order):
            dist = state.distribution(i)
            assert np.allclose(dist.sum(1), 1.0)
            seen = order[:step]
            # brute force: P(X_i < v | x_seen) = sum_{u < v} P(x_seen, X_i = u) / P(x_seen)
            marg = joint.sum(tuple(j for j in range(4) if j not in seen + [i]))  # axes: sorted(seen + [i])
            axes = sorted(seen + [i])
            for row, x in enumerate(xs[::7]):
                idx = [slice(None) if a == i else x[a] for a in axes]
                p_i = marg[tuple(idx)]
                cdf_brute = np.concatenate([[0.0], np.cumsum(p_i)]) / p_i.sum()
                cdf_ours = np.concatenate([[0.0], np.cumsum(dist[row * 7])])
                assert np.allclose(cdf_ours, cdf_brute, atol=1e-12)
            state.observe(i, xs[:, i])
        with pytest.raises(ValueError, match="already observed"):
            state.distribution(order[0])


def _sample(pc, n, rng):
    joint = _brute_joint(pc).reshape(-1)
    flat = rng.choice(len(joint), size=n, p=joint / joint.sum())
    return np.stack(np.unravel_index(flat, (pc.V,) * pc.D), 1)


@pytest.mark.parametrize("mixture", [False, True])
def test_em_increases_log_likelihood_monotonically(mixture):
    rng = np.random.default_rng(3)
    parent = [1, -1, 1, 2] if not mixture else [-1, 0, 0, 0]
    x = _sample(_random_pc(parent, 3, 3, seed=5, mixture=mixture), 400, rng)
    pc = pcc.LatentTreePC(parent, 3, 3, mixture=mixture)
    pc.init_params(x, np.random.default_rng(0))
    lls = [pc.em_step(x, pseudocount=0.0) for _ in range(25)] + [float(pc.log_marginal(x).mean())]
    assert np.all(np.diff(lls) >= -1e-10), lls
    assert lls[-1] > lls[0] + 0.01
    # with a pseudocount, EM is MAP-EM: the penalised objective rises monotonically
    alpha = 0.5

    def objective(model):
        pen = np.log(model.prior).sum() + np.log(model.emit).sum()
        if not model.mixture:
            pen += sum(np.log(model.trans[c]).sum() for c in range(model.D) if c != model.root)
        return float(model.log_marginal(x).sum()) + alpha * pen

    pc.init_params(x, np.random.default_rng(1))
    objs = []
    for _ in range(15):
        objs.append(objective(pc))
        pc.em_step(x, pseudocount=alpha)
    assert np.all(np.diff(objs) >= -1e-8), objs


def test_chow_liu_recovers_a_chain_and_roots_it_at_the_centre():
    rng = np.random.default_rng(0)
    n = 3000
    x = np.zeros((n, 5), np.int64)
    x[:, 0] = rng.integers(0, 3, n)
    for i in range(1, 5):  # a noisy copy chain 0 - 1 - 2 - 3 - 4
        noise = rng.random(n) < 0.15
        x[:, i] = np.where(noise, rng.integers(0, 3, n), x[:, i - 1])
    parent = pcc.chow_liu_parents(x, 3)
    edges = {frozenset((i, int(p))) for i, p in enumerate(parent) if p >= 0}
    assert edges == {frozenset((i, i + 1)) for i in range(4)}
    assert parent[2] == -1
    with pytest.raises(ValueError, match="tree"):
        pcc.LatentTreePC([1, 0, -1], 2, 2)


def test_encode_decode_round_trip_and_chain_rule_equals_direct_likelihood():
    rng = np.random.default_rng(4)
    pc = _random_pc([1, -1, 1, 0], 2, 4, seed=3)
    x = rng.integers(0, 4, size=(50, 4))
    words, model_bits = pcc.pc_encode(pc, x, precision=20)
    assert model_bits == pytest.approx(-pc.log_marginal(x).sum() / np.log(2), rel=1e-10)
    assert np.array_equal(pcc.pc_decode(pc, words, 50, precision=20), x)
    with pytest.raises(ValueError, match=r"integers in \[0, 4\)"):
        pcc.pc_encode(pc, np.full((2, 4), 4), precision=20)
    with pytest.raises(ValueError, match=r"x must be \(N, 4\)"):
        pcc.pc_encode(pc, np.zeros((2, 5), np.int64), precision=20)


def test_png_and_bit_packing_writers():
    assert pcc.pack_bits(np.array([1, 0, 1, 1, 0, 0, 0, 0, 1]), 1) == bytes([0b10110000, 0b10000000])
    assert pcc.pack_bits(np.array([16, 1]), 5) == bytes([0b10000000, 0b01000000])
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for depth, values in ((1, 2), (8, 17)):
        img = rng.integers(0, values, size=(24, 8))
        back = np.array(Image.open(io.BytesIO(pcc.minimal_png(img, depth))))
        assert np.array_equal(back.astype(np.int64), img)


def test_tiny_run_codes_losslessly_and_beats_trivial_baselines(tmp_path):
    cfg = pcc.Config(n_test=40, n_val=30, n_train=300, mixture_ks=(1,), hclt_ks=(4,), em_iters=5)
    r1 = pcc.run(out_dir=tmp_path, seed=0, progress=False, config=cfg)
    r2 = pcc.run(out_dir=None, seed=0, progress=False, config=dataclasses.replace(cfg, datasets=("binary",)))
    assert [row.ours for row in r1.rows if "speed" not in row.metric and row.metric.startswith("binarised")] == \
        [row.ours for row in r2.rows if "speed" not in row.metric]
    for name, d in r1.details["datasets"].items():
        hclt = d["sweep"]["hclt"]["4"]
        factorised = d["sweep"]["mixture"]["1"]
        assert all(v["exact_fraction"] == 1.0 for s in d["sweep"].values() for v in s.values())
        assert hclt["written_bpd"] < factorised["written_bpd"] - 0.05, name  # it learned pixel dependencies
        assert hclt["written_bpd"] < d["raw_bpd"] * 0.8 and hclt["written_bpd"] < d["classical"]["gzip"]["bpd"]
        assert 0 <= hclt["written_bpd"] - hclt["model_bpd"] < 0.05  # 64-96 bits of flush over 2560 pixels
    assert (tmp_path / "pc_compress_rates.png").stat().st_size > 0
    with pytest.raises(ValueError, match="hclt_ks"):
        pcc.run(progress=False, config=pcc.Config(hclt_ks=()))
    with pytest.raises(ValueError, match="datasets"):
        pcc.run(progress=False, config=pcc.Config(datasets=("mnist",)))
