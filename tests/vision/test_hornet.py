"""HorNet's recursive gated convolution (recurlab/vision/hornet.py): the widths, the recursion and its order,
the block, the backbone, the parameter count, the errors. Every model here is tiny; the file runs in seconds."""

import math

import pytest
import torch
import torch.nn.functional as F

from recurlab.vision.hornet import (
    DropPath,
    GlobalLocalFilter,
    GnConv,
    HorNet,
    HorNetBlock,
    LayerNorm2d,
    gnconv_widths,
)

# ---------------------------------------------------------------------------------------------- helpers


def zero_biases(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()


def gnconv_by_the_equations(m: GnConv, x: torch.Tensor, variant: str = "paper") -> torch.Tensor:
    """g^n Conv written out from the paper with functional convs and m's weights, widths recomputed here:

        [p_0, q_0 .. q_{n-1}] = φ_in(x),  f_k = DWConv(q)_k / α,  p_{k+1} = f_k ⊙ g_k(p_k) (g_0 = id),  y = φ_out(p_n)

    ``variant`` swaps in a wrong recursion, to show the order test would catch it."""
    n, C = m.order, x.shape[1]
    widths = [C >> (n - 1 - k) for k in range(n)]
    z = F.conv2d(x, m.proj_in.weight, m.proj_in.bias)
    p, q = z[:, :widths[0]], z[:, widths[0]:]
    conv = m.dwconv
    f_all = F.conv2d(q, conv.weight, conv.bias, padding=conv.kernel_size[0] // 2, groups=q.shape[1]) / 3.0
    starts = [sum(widths[:k]) for k in range(n)]
    f = [f_all[:, s:s + w] for s, w in zip(starts, widths)]
    for k in range(n):
        g = p if k == 0 else F.conv2d(p, m.pws[k - 1].weight, m.pws[k - 1].bias)
        if variant == "paper":
            p = f[k] * g
        elif variant == "gate_once":          # only the first product: the order stays 1
            p = f[k] * g if k == 0 else g
        elif variant == "sigmoid_gate":        # a GLU-style gate instead of the linear f_k
            p = torch.sigmoid(f[k]) * g
        elif variant == "residual_gate":       # p_{k+1} = g_k(p_k) ⊙ (1 + f_k)
            p = g + f[k] * g
        else:
            raise AssertionError(variant)
    return F.conv2d(p, m.proj_out.weight, m.proj_out.bias)


def scaling_degree(fn, x: torch.Tensor) -> tuple[bool, float]:
    """(is fn homogeneous, its degree d): fn(c x) = c^d fn(x) is checked exactly (float64, 1e-10) at c = 2 and
    c = -0.5 (a negative c tells odd from even degrees), d from the norms at c = 2."""
    y = fn(x)
    d = math.log2(fn(2 * x).norm().item() / y.norm().item())
    degree = round(d)
    homogeneous = abs(d - degree) < 1e-9 and all(
        torch.allclose(fn(c * x), c ** degree * y, rtol=1e-10, atol=1e-12 * y.abs().max().item())
        for c in (2.0, -0.5))
    return homogeneous, d


def gnconv_parameters(C: int, n: int, K: int) -> int:
    """The parameter count of GnConv(C, n, K), derived in closed form. With C_k = C / 2^(n-1-k):
    φ_in 2C² + 2C, depthwise (2C - C_0)(K² + 1), g_1..g_{n-1}: Σ (C_{k-1} + 1) C_k = Σ C_k²/2 + C_k
    = 2 (C² - C_0²) / 3 + 2C - 2C_0 (geometric sums), φ_out C² + C."""
    C0 = C // 2 ** (n - 1)
    pws = 2 * (C * C - C0 * C0) // 3 + 2 * C - 2 * C0
    return 3 * C * C + 3 * C + (2 * C - C0) * (K * K + 1) + pws


def block_parameters(C: int, n: int, K: int) -> int:
    """GnConv + two LayerNorms (4C) + the MLP C -> 4C -> C (8C² + 5C) + γ_1, γ_2 (2C)."""
    return gnconv_parameters(C, n, K) + 8 * C * C + 11 * C


def hornet_parameters(in_chans, num_classes, depths, dims, orders, patch, K) -> int:
    """stem conv + LN, three (LN + 2x2 conv), the blocks, the final LN and the head."""
    total = in_chans * dims[0] * patch * patch + dims[0] + 2 * dims[0]
    total += sum(2 * dims[i] + 4 * dims[i] * dims[i + 1] + dims[i + 1] for i in range(3))
    total += sum(d * block_parameters(c, n, K) for d, c, n in zip(depths, dims, orders))
    return total + 2 * dims[-1] + dims[-1] * num_classes + num_classes


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------- widths


def test_split_widths_equal_the_official_ones():
    """The official gnconv(64, order=5).dims is [4, 8, 16, 32, 64]: C_k = C / 2^(n-1-k), summing to 2C - C_0."""
    assert gnconv_widths(64, 5) == [4, 8, 16, 32, 64]
    m = GnConv(64, order=5)
    assert m.dims == [4, 8, 16, 32, 64]
    assert tuple(m.proj_in.weight.shape) == (128, 64, 1, 1)
    assert m.dwconv.in_channels == m.dwconv.out_channels == m.dwconv.groups == 124   # one conv over all of q
    assert tuple(m.dwconv.weight.shape) == (124, 1, 7, 7) and m.dwconv.bias is not None
    assert [tuple(g.weight.shape[:2]) for g in m.pws] == [(8, 4), (16, 8), (32, 16), (64, 32)]
    assert tuple(m.proj_out.weight.shape) == (64, 64, 1, 1)
    assert m.scale == pytest.approx(1 / 3)
    assert gnconv_widths(32, 1) == [32] and len(GnConv(32, order=1).pws) == 0


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (12, 12)])
def test_gnconv_keeps_the_shape(order, hw):
    m = GnConv(32, order=order)
    x = torch.randn(2, 32, *hw)
    assert m(x).shape == x.shape
    assert GnConv(32, order=order, kernel_size=3)(x).shape == x.shape


@pytest.mark.parametrize("order", [1, 3, 5])
def test_block_keeps_the_shape(order):
    x = torch.randn(2, 16, 6, 5)
    assert HorNetBlock(16, order)(x).shape == x.shape


# ---------------------------------------------------------------------------------------------- equations


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_gnconv_equals_the_paper_equations(order):
    """Against a direct evaluation of the recursion with functional convs (float64, biases and scale kept)."""
    m = GnConv(32, order=order).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 32, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), gnconv_by_the_equations(m, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_gnconv_is_a_homogeneous_polynomial_of_degree_order_plus_one(order):
    """With the biases at zero, p_0 and every f_k are linear in x, so y(c x) = c^(order+1) y(x): the order-n
    spatial interaction. The degree is measured, so an order-3 module that were degree 3 (or 5) fails."""
    torch.manual_seed(order)
    m = GnConv(16, order=order).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    zero_biases(m)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    homogeneous, degree = scaling_degree(m, x)
    assert homogeneous and degree == pytest.approx(order + 1, abs=1e-9), (order, degree)
    y = m(x)
    for wrong in (order, order + 2):                     # not one degree less, not one more
        assert not torch.allclose(m(2 * x), 2.0 ** wrong * y, rtol=1e-3)
    if order == 3:
        assert not torch.allclose(m(2 * x), 8.0 * y, rtol=1e-3)   # order 3 is degree 4, not 3
        assert torch.allclose(m(2 * x), 16.0 * y, rtol=1e-10)


def test_with_biases_the_output_is_not_homogeneous():
    """The biases add lower-degree terms: the degree test above depends on zeroing them (a sanity check of it)."""
    m = GnConv(16, order=3).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    homogeneous, _ = scaling_degree(m, torch.randn(2, 16, 5, 6, dtype=torch.float64))
    assert not homogeneous


@pytest.mark.parametrize("variant", ["gate_once", "sigmoid_gate", "residual_gate"])
def test_the_degree_check_rejects_a_wrong_recursion(variant):
    """The order test would fail on a wrong recursion: each variant here has the right shapes and weights,
    but is not a homogeneous polynomial of degree 4 at order 3 (the correct one is)."""
    torch.manual_seed(0)
    m = GnConv(16, order=3).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    zero_biases(m)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    assert scaling_degree(lambda z: gnconv_by_the_equations(m, z), x) == (True, pytest.approx(4, abs=1e-9))
    homogeneous, degree = scaling_degree(lambda z: gnconv_by_the_equations(m, z, variant), x)
    assert not (homogeneous and abs(degree - 4) < 1e-6), (variant, homogeneous, degree)


def test_block_equals_its_equations_and_drop_path_is_per_sample():
    torch.manual_seed(0)
    blk = HorNetBlock(16, order=3, layer_scale_init=0.5).double().eval()
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64)

    def ln(z):
        return F.layer_norm(z.permute(0, 2, 3, 1), (16,), eps=1e-6).permute(0, 3, 1, 2)

    h = x + 0.5 * blk.gnconv(ln(x))
    mlp = blk.pwconv2(F.gelu(blk.pwconv1(ln(h).permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)
    torch.testing.assert_close(blk(x), h + 0.5 * mlp, rtol=1e-12, atol=1e-12)
    assert HorNetBlock(16, 3, layer_scale_init=0).gamma1 is None      # 0: no layer scale, as officially

    drop = DropPath(0.5).train()
    out = drop(torch.ones(64, 3, 2, 2))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}             # kept samples are divided by 1 - p
    assert (per_sample.min(1).values == per_sample.max(1).values).all()  # one draw per sample
    assert torch.equal(drop.eval()(out), out)


def test_layer_norm_2d_is_the_official_channels_first_norm():
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    norm = LayerNorm2d(8).double()
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    expected = norm.weight[:, None, None] * (x - u) / torch.sqrt(s + 1e-6) + norm.bias[:, None, None]
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------- gradients, determinism


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = HorNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), patch_size=1, drop_path_rate=0.1).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    model(x).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    blk = HorNetBlock(16, order=4).double()
    blk(torch.randn(2, 16, 5, 5, dtype=torch.float64)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in blk.parameters())


def test_same_seed_same_model_and_output():
    def run():
        torch.manual_seed(123)
        model = HorNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), drop_path_rate=0.2)
        x = torch.randn(2, 3, 32, 32)
        return model, model(x), model.eval()(x)              # a training forward (drop path) and an eval one

    (m1, train1, eval1), (m2, train2, eval2) = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(train1, train2) and torch.equal(eval1, eval2)


# ---------------------------------------------------------------------------------------------- backbone


def test_the_classifier_runs_on_a_cifar_sized_batch_and_backprops():
    torch.manual_seed(0)
    model = HorNet()                                         # defaults: 10 classes, patch 4, orders 2..5
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    loss = F.cross_entropy(logits, torch.tensor([1, 7]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.forward_features(x).shape == (2, 256)
    assert [blk.gnconv.order for stage in model.stages for blk in stage] == [2, 2, 3, 3] + [4] * 6 + [5, 5]


@pytest.mark.parametrize("patch, size", [(4, 32), (4, 36), (2, 16), (1, 8), (2, (16, 24))])
def test_the_patch_size_fits_small_images(patch, size):
    h, w = (size, size) if isinstance(size, int) else size
    model = HorNet(num_classes=5, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), patch_size=patch)
    assert model(torch.randn(1, 3, h, w)).shape == (1, 5)


def test_initialisation_is_the_official_one():
    torch.manual_seed(0)
    model = HorNet(dims=(32, 64, 128, 256), head_init_scale=0.5)
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.02) and weights.abs().max() < 2
    assert all(m.bias is None or not m.bias.any() for m in convs)
    assert model.head.weight.std().item() == pytest.approx(0.01, rel=0.1)      # head_init_scale x 0.02
    gammas = [p for name, p in model.named_parameters() if "gamma" in name]
    assert len(gammas) == 2 * 12 and all(torch.equal(p, torch.full_like(p, 1e-6)) for p in gammas)
    norms = [m for m in model.modules() if isinstance(m, (LayerNorm2d, torch.nn.LayerNorm))]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any() for m in norms)


# ---------------------------------------------------------------------------------------------- global filter


def test_global_filter_variant():
    """HorNet-GF: half the channels through a 3x3 depthwise conv, half through a Fourier-domain filter,
    interleaved and normalised; the filter is interpolated for other grids."""
    torch.manual_seed(0)
    m = GnConv(32, order=3, global_filter=True, filter_size=(4, 3))
    assert isinstance(m.dwconv, GlobalLocalFilter) and tuple(m.dwconv.complex_weight.shape) == (28, 4, 3, 2)
    for hw in [(4, 4), (6, 9), (1, 1)]:                       # (4, 4) is the stored grid, the others interpolate
        x = torch.randn(2, 32, *hw)
        assert m(x).shape == x.shape
    m(torch.randn(2, 32, 4, 4)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    assert HorNet.filter_sizes_for(224) == ((56, 29), (28, 15), (14, 8), (7, 4))   # the official (14, 8), (7, 4)
    assert HorNet.filter_sizes_for(32) == ((8, 5), (4, 3), (2, 2), (1, 1))
    model = HorNet(depths=(1, 1, 1, 1), global_filter=(False, False, True, True),
                   filter_sizes=HorNet.filter_sizes_for(32))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_global_filter_mixes_the_whole_map_and_the_3x3_branch_does_not():
    """A change at one pixel reaches every pixel through the Fourier half, only its 3x3 neighbours through the other."""
    torch.manual_seed(0)
    f = GlobalLocalFilter(4, size=(8, 5)).double()
    f.post_norm = torch.nn.Identity()                        # the last LN mixes the two halves at each pixel
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[0, :, 0, 0] += torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)   # not a constant: LN would remove it
    with torch.no_grad():
        changed = (f(x2) - f(x)).abs() > 1e-12
    local, glob = changed[0, 0::2], changed[0, 1::2]         # interleaved: local, global, local, global
    assert local[:, :2, :2].all() and local.sum() == 2 * 4   # the 3x3 neighbours of (0, 0) inside the map
    assert glob.all()                                         # every pixel of both global channels


# ---------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("C, n, K", [(32, 1, 7), (32, 2, 7), (64, 3, 3), (64, 5, 7), (48, 4, 5)])
def test_parameter_count_matches_the_formula(C, n, K):
    assert count(GnConv(C, order=n, kernel_size=K)) == gnconv_parameters(C, n, K)
    assert count(HorNetBlock(C, n, kernel_size=K)) == block_parameters(C, n, K)


def test_gnconv_parameter_count_worked_example():
    """dim 64, order 5, 7x7: 12,480 (φ_in, φ_out) + 6,200 (depthwise, 124 channels) + 2,840 (g_1..g_4) = 21,520."""
    assert gnconv_parameters(64, 5, 7) == 21_520 == count(GnConv(64, 5))


def test_backbone_parameter_count_matches_the_formula():
    assert count(HorNet()) == hornet_parameters(3, 10, (2, 2, 6, 2), (32, 64, 128, 256), (2, 3, 4, 5), 4, 7)
    cfg = {"in_chans": 1, "num_classes": 7, "depths": (1, 2, 1, 1), "dims": (8, 16, 32, 48), "orders": (1, 2, 3, 4)}
    assert count(HorNet(**cfg, patch_size=2, kernel_size=3)) == hornet_parameters(
        1, 7, (1, 2, 1, 1), (8, 16, 32, 48), (1, 2, 3, 4), 2, 3)


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("build, match", [
    (lambda: GnConv(30, order=3), r"dim must be divisible by 2\^\(order-1\) = 4 for order=3.*dim=30"),
    (lambda: GnConv(32, order=0), r"order must be an int >= 1, got 0"),
    (lambda: GnConv(32, order=2.0), r"order must be an int >= 1, got 2.0"),
    (lambda: GnConv(0, order=1), r"dim must be an int >= 1"),
    (lambda: GnConv(32, order=2, kernel_size=4), r"kernel_size must be an odd int >= 1.*got 4"),
    (lambda: GnConv(32, order=2, scale=float("nan")), r"scale must be a finite number"),
    (lambda: GnConv(16, order=5, global_filter=True), r"global_filter=True needs an even q width.*got 31"),
    (lambda: HorNetBlock(16, 3, drop_path=1.0), r"drop_path must be a probability in \[0, 1\)"),
    (lambda: HorNetBlock(16, 3, layer_scale_init=-1), r"layer_scale_init must be a finite number >= 0"),
    (lambda: HorNet(dims=(32, 64, 128, 250)), r"dims\[3\]=250 must be divisible by 2\^\(orders\[3\]-1\) = 16"),
    (lambda: HorNet(depths=(2, 2, 6)), r"depths must have one entry per stage \(4\)"),
    (lambda: HorNet(orders=(2, 3, 0, 5)), r"orders entries must be an int >= 1, got 0"),
    (lambda: HorNet(patch_size=0), r"patch_size must be an int >= 1, got 0"),
    (lambda: HorNet(drop_path_rate=1.5), r"drop_path_rate must be in \[0, 1\)"),
])
def test_bad_arguments_are_refused_by_name(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_inputs_are_refused_with_the_expected_shape():
    m = GnConv(16, order=2)
    with pytest.raises(ValueError, match=r"x must be a 4-D tensor \(B, C=16, H, W\), got \(16, 4, 4\)"):
        m(torch.randn(16, 4, 4))
    with pytest.raises(ValueError, match=r"x must have C=16 channels.*got shape \(2, 8, 4, 4\)"):
        m(torch.randn(2, 8, 4, 4))
    model = HorNet(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    with pytest.raises(ValueError, match=r"in_chans=3 channels.*\(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"H and W must be >= 8 x patch_size = 32.*\(2, 3, 16, 16\)"):
        model(torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize("build", [lambda: HorNet(), lambda: GnConv(8, order=2)])
def test_integer_images_and_empty_batches(build):
    model = build().eval()
    channels = 3 if isinstance(model, HorNet) else 8
    with pytest.raises(ValueError, match="floating dtype"):
        model(torch.zeros(2, channels, 32, 32, dtype=torch.int64))
    out = model(torch.zeros(0, channels, 32, 32))
    assert out.shape[0] == 0
