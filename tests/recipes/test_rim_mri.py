"""Tests of the RIM-for-MRI recipe: the MRI operators and data-consistency gradient, the three recurrent cells
against their equations, the metrics, the CS-TV baseline, the phantoms and masks, and a tiny run."""

import math
import sys

import numpy as np
import pytest
import torch

from recurlab.recipes import rim_mri as r


def _problem(b=2, coils=3, size=16, seed=0):
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    sens = torch.from_numpy(np.stack([r.coil_maps(coils, size, rng) for _ in range(b)])).to(torch.complex128)
    mask = torch.from_numpy(np.stack([r.cartesian_mask(size, 4, rng) for _ in range(b)]))[:, None, None, :]
    x = torch.randn(b, size, size, dtype=torch.complex128, generator=g)
    y = torch.randn(b, coils, size, size, dtype=torch.complex128, generator=g) * mask
    return x, y, sens, mask


def test_operator_adjointness():
    x, y, sens, mask = _problem()
    lhs = torch.vdot(r.forward_op(x, sens, mask).flatten(), y.flatten())  # <A x, y>
    rhs = torch.vdot(x.flatten(), r.adjoint_op(y, sens, mask).flatten())  # <x, A^H y>
    assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-10)
    # the orthonormal FFT keeps norms; normalised coil maps make a fully sampled A an isometry
    full = torch.ones_like(mask)
    assert torch.allclose(r.forward_op(x, sens, full).abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-10)
    assert torch.allclose(r.adjoint_op(r.forward_op(x, sens, full), sens, full), x, atol=1e-10)
    with pytest.raises(ValueError, match="mask must be"):
        r.forward_op(x, sens, mask[:, 0])


def test_dc_gradient_equals_autograd():
    x, y, sens, mask = _problem(b=2, coils=4, size=12, seed=3)
    eta = x.clone().requires_grad_(True)
    loss = 0.5 * (r.forward_op(eta, sens, mask) - y).abs().pow(2).sum()
    loss.backward()
    assert torch.allclose(r.dc_gradient(x, y, sens, mask), eta.grad, atol=1e-10)
    # and by hand on a 1-coil, fully sampled 1x1 image: g = conj(s) (s eta - y)
    s, e, yy = torch.tensor(0.6 + 0.8j), torch.tensor(2.0 - 1.0j), torch.tensor(0.5 + 0.25j)
    g = r.dc_gradient(e.reshape(1, 1, 1), yy.reshape(1, 1, 1, 1), s.reshape(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert torch.allclose(g.reshape(()), s.conj() * (s * e - yy))


def test_tv_gradient_adjoint():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 9, dtype=torch.complex128, generator=g)
    q = torch.randn(2, 2, 7, 9, dtype=torch.complex128, generator=g)
    assert torch.allclose(torch.vdot(r._grad2(x).flatten(), q.flatten()),
                          torch.vdot(x.flatten(), r._grad2_adjoint(q).flatten()), atol=1e-10)
    # TV of a vertical step of height 2 across 3 rows: 3 jumps of 2
    step = torch.zeros(1, 3, 4, dtype=torch.complex128)
    step[:, :, 2:] = 2
    assert r.total_variation(step).item() == pytest.approx(6.0)


def _set_conv(conv, weights, bias=None):
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights, dtype=torch.float32).reshape(conv.weight.shape))
        if bias is not None:
            conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def _sig(v):
    return 1 / (1 + math.exp(-v))


def test_gru_cell_matches_its_equation():
    cell = r.ConvGRUCell(1, 1)
    _set_conv(cell.ih, [0.5, -1.0, 2.0], [0.1, 0.2, -0.3])  # W_r, W_z, W_n and biases
    _set_conv(cell.hh, [1.5, 0.3, -0.7])                    # U_r, U_z, U_n
    x, h = 0.8, -0.4
    rr, z = _sig(0.5 * x + 0.1 + 1.5 * h), _sig(-1.0 * x + 0.2 + 0.3 * h)
    n = math.tanh(2.0 * x - 0.3 + rr * (-0.7 * h))
    want = (1 - z) * n + z * h
    got = cell(torch.full((1, 1, 2, 3), x), torch.full((1, 1, 2, 3), h))
    assert torch.allclose(got, torch.full((1, 1, 2, 3), want), atol=1e-6)


def test_mgu_cell_matches_its_equation():
    cell = r.ConvMGUCell(1, 1)
    _set_conv(cell.ih, [0.7, -1.2], [0.05, 0.4])  # W_f, W_c
    _set_conv(cell.hh, [-0.9, 1.1])               # U_f, U_c
    x, h = -0.6, 0.9
    f = _sig(0.7 * x + 0.05 - 0.9 * h)
    c = math.tanh(-1.2 * x + 0.4 + f * 1.1 * h)
    want = c + f * (h - c)
    got = cell(torch.full((1, 1, 1, 1), x), torch.full((1, 1, 1, 1), h))
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_indrnn_cell_matches_its_equation():
    cell = r.ConvIndRNNCell(2, 2)
    _set_conv(cell.ih, [[1.0, -2.0], [0.5, 0.5]], [0.1, -0.2])
    with torch.no_grad():
        cell.u.copy_(torch.tensor([0.9, -3.0]).reshape(1, 2, 1, 1))
    x = torch.tensor([1.0, 0.25]).reshape(1, 2, 1, 1)
    h = torch.tensor([2.0, 1.0]).reshape(1, 2, 1, 1)
    # channel 0: relu(1 - 0.5 + 0.1 + 0.9 * 2) = 2.4; channel 1: relu(0.5 + 0.125 - 0.2 - 3) = 0
    assert torch.allclose(cell(x, h).flatten(), torch.tensor([2.4, 0.0]), atol=1e-6)
    # u is elementwise: channel 0's state does not reach channel 1
    h2 = h.clone()
    h2[0, 0] = 10.0
    assert cell(x, h2)[0, 1].item() == cell(x, h)[0, 1].item()


def test_rim_shapes_and_loss_weights():
    x, y, sens, mask = _problem(b=2, coils=2, size=16)
    model = r.RIM("mgu", channels=4, time_steps=3)
    out = model(y.to(torch.complex64), sens.to(torch.complex64), mask.float())
    assert out.shape == (3, 2, 16, 16) and out.is_complex()
    w = r.step_weights(3)
    assert torch.allclose(w, torch.tensor([0.1, 0.1 ** 0.5, 1.0]))
    target = torch.zeros(2, 4, 4, dtype=torch.complex64)
    est = torch.ones(3, 2, 4, 4, dtype=torch.complex64) * torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1, 1)
    assert r.rim_loss(est, target).item() == pytest.approx((0.1 * 1 + 0.1 ** 0.5 * 2 + 3) / 3, rel=1e-6)
    with pytest.raises(ValueError, match="cell must be one of"):
        r.RIM("lstm")


def test_metrics_on_hand_cases():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 16, 16, generator=g, dtype=torch.float64)
    assert torch.allclose(r.ssim(t, t), torch.ones(2, dtype=torch.float64))
    noisy = t + 0.2 * torch.randn(2, 16, 16, generator=g, dtype=torch.float64)
    assert (r.ssim(noisy, t) < 0.95).all()
    # PSNR: a constant offset c gives MSE c^2 -> 10 log10(max^2 / c^2)
    target = torch.zeros(1, 4, 4, dtype=torch.float64)
    target[0, 0, 0] = 2.0
    assert r.psnr(target + 0.1, target).item() == pytest.approx(10 * math.log10(4 / 0.01))
    # NMSE: ||e||^2 / ||t||^2 = (16 * 0.01) / 4; inside a region holding the one bright pixel: 0.01 / 4
    assert r.nmse(target + 0.1, target).item() == pytest.approx(0.04)
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, 0, :2] = True
    assert r.nmse(target + 0.1, target, region).item() == pytest.approx(0.02 / 4)
    skimage_metrics = pytest.importorskip("skimage.metrics")
    a, b = noisy[0].numpy(), t[0].numpy()
    want = skimage_metrics.structural_similarity(a, b, data_range=float(b.max()))
    assert r.ssim(noisy[0], t[0]).item() == pytest.approx(want, rel=1e-9)


def test_cs_tv_reduces_its_objective_and_denoises():
    img, _ = r.brain_phantom(32, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    y, sens, mask = r.simulate(img[None], [4], [4], rng, 4, 0.01)
    lam = 0.01
    zf = r.adjoint_op(y, sens, mask)
    objectives = [r.cs_objective(r.cs_tv(y, sens, mask, lam, it), y, sens, mask, lam).item() for it in (0, 20, 100)]
    assert objectives[0] == pytest.approx(r.cs_objective(zf, y, sens, mask, lam).item())
    assert objectives[2] < objectives[1] < objectives[0]
    target = torch.from_numpy(img.astype(np.complex64))[None]
    assert r.nmse(r.cs_tv(y, sens, mask, lam, 100).abs(), target.abs()) < r.nmse(zf.abs(), target.abs())
    with pytest.raises(ValueError, match="lam must be"):
        r.cs_tv(y, sens, mask, -1.0, 5)


def test_masks_coils_and_phantoms():
    rng = np.random.default_rng(0)
    m = r.cartesian_mask(64, 8, rng)
    assert m.sum() == 8 and m[0] == 1  # 64 / 8 lines, DC sampled
    centred = np.fft.fftshift(r.cartesian_mask(64, 4, rng))
    assert centred.sum() == 16 and centred[30:35].all()  # 5 centre lines (8%) around index 32
    s = r.coil_maps(4, 32, rng)
    assert np.allclose((np.abs(s) ** 2).sum(0), 1.0)
    img1, les1 = r.brain_phantom(48, np.random.default_rng(5), n_lesions=2)
    img2, les2 = r.brain_phantom(48, np.random.default_rng(5), n_lesions=2)
    assert np.array_equal(img1, img2) and np.array_equal(les1, les2)
    assert np.abs(img1).max() == pytest.approx(1.0) and les1.sum() > 0
    assert np.abs(img1)[les1].mean() > np.abs(img1)[~les1 & (np.abs(img1) > 0.3)].mean() + 0.2  # lesions bright
    _, none = r.brain_phantom(48, np.random.default_rng(5))
    assert not none.any()
    with pytest.raises(ValueError, match="acceleration"):
        r.cartesian_mask(32, 0, rng)


def test_shepp_logan_and_missing_scikit_image(monkeypatch):
    pytest.importorskip("skimage")
    sl = r.shepp_logan(32)
    assert sl.shape == (32, 32) and sl.max() == pytest.approx(1.0)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(ModuleNotFoundError, match=r"recurlab\[recipes\]"):
        r.shepp_logan(32)


def test_config_errors():
    with pytest.raises(ValueError, match="cells"):
        r.Config(cells=("lstm",)).check()
    with pytest.raises(ValueError, match="size"):
        r.Config(size=8).check()


def test_tiny_run_learns_and_is_deterministic(tmp_path):
    pytest.importorskip("skimage")
    cfg = r.Config(size=32, n_coils=2, channels=8, time_steps=4, n_train=24, train_steps=60, batch_size=4,
                   lr=1e-2, eval_every=30, n_val=4, n_test=3, cs_iters=20, cs_lambdas=(0.004,), n_tune=2,
                   n_timing=1, cells=("mgu",))
    r1 = r.run(out_dir=tmp_path, seed=0, progress=False, config=cfg)
    r2 = r.run(out_dir=None, seed=0, progress=False, config=cfg)
    assert r1.details["per_setting"] == r2.details["per_setting"]  # timings aside, bit for bit
    mean = r1.details["mean_over_settings"]
    assert mean["RIM-MGU"]["ssim"] > mean["zero-filled"]["ssim"] + 0.05
    assert mean["RIM-MGU"]["nmse"] < mean["zero-filled"]["nmse"]
    assert set(r1.details["per_setting"]) == {"single-coil 4x", "single-coil 8x", "2-coil 4x", "2-coil 8x"}
    assert [f.rsplit("/", 1)[-1] for f in r1.files] == ["rim_mri_reconstructions.png", "rim_mri_curves.png"]
    assert all((tmp_path / f.rsplit("/", 1)[-1]).stat().st_size > 0 for f in r1.files)
    assert "inference time reduction" not in " ".join(row.metric for row in r1.rows)  # no IndRNN here
