"""SReT for images (recurlab/vision/sret.py; Shen, Liu & Xing 2022, szq0214/SReT): sliced group attention against
plain attention per slice, the recursive stage written out by hand, weight sharing and its parameter count, shapes,
gradients, determinism, the official configurations' sizes and the errors. Tiny shapes; runs in seconds."""

import math

import pytest
import torch
import torch.nn.functional as F

from recurlab.vision.sret import (
    ConvStem,
    LoopProjection,
    SReT,
    SReTBlock,
    SReTStage,
    SlicedGroupAttention,
    sret_official,
)
from recurlab.vision.vit import SelfAttention

# 8x8 images, stem stride 2: a 4x4 map (16 tokens, width 4) then 2x2 (4 tokens, width 8)
TINY = {"image_size": 8, "num_classes": 3, "stem_stride": 2, "head_dim": 2, "heads": (2, 4), "depths": (1, 2),
        "n_loops": 2, "groups": ((4, 2), (2, 1)), "mlp_ratio": 2.0, "proj_mlp_ratio": 1.5, "drop_path": 0.0}


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def perturb(module, seed: int = 0):
    """LayerNorm affines and residual scalars away from (1, 0) and 1, so a misplaced one would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
            if isinstance(m, (SReTBlock, LoopProjection)):
                m.scales.copy_(torch.rand(m.scales.shape, generator=g) + 0.5)


# ---------------------------------------------------------------------------------------------- by hand


def attention_by_hand(attn: SlicedGroupAttention, x, groups, perm=None):
    """Softmax attention inside each slice of ``groups`` contiguous runs of the (permuted) tokens, head by head."""
    B, N, D = x.shape
    H, Dh, n = attn.n_heads, attn.head_dim, N // groups
    xp = x if perm is None else x[:, perm]
    qkv = xp @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    out = torch.zeros_like(xp)
    for g in range(groups):
        rows = slice(g * n, (g + 1) * n)
        for h in range(H):
            cols = slice(h * Dh, (h + 1) * Dh)
            w = torch.softmax(q[:, rows, cols] @ k[:, rows, cols].transpose(1, 2) / math.sqrt(Dh), -1)
            out[:, rows, cols] = w @ v[:, rows, cols]
    if perm is not None:
        out = out[:, torch.argsort(perm)]
    return out @ attn.proj.weight.T + attn.proj.bias


def mlp_by_hand(seq, x):
    return F.gelu(x @ seq[0].weight.T + seq[0].bias) @ seq[3].weight.T + seq[3].bias


def ln(norm, x):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def block_by_hand(block: SReTBlock, x, groups, perm=None):
    """x <- c1 x + c2 SGA(LN1 x);  x <- c3 x + c4 MLP(LN2 x)   (eval: no drop path)."""
    c1, c2, c3, c4 = block.scales
    x = c1 * x + c2 * attention_by_hand(block.attn, ln(block.norm1, x), groups, perm)
    return c3 * x + c4 * mlp_by_hand(block.mlp, ln(block.norm2, x))


def projection_by_hand(proj: LoopProjection, x):
    """x <- d1 x + d2 MLP(LN x): the non-shared NLL after one application."""
    d1, d2 = proj.scales
    return d1 * x + d2 * mlp_by_hand(proj.mlp, ln(proj.norm, x))


# ---------------------------------------------------------------------------------------------- sliced group attention


def test_one_group_is_plain_full_attention_with_or_without_a_permutation():
    torch.manual_seed(0)
    sga = SlicedGroupAttention(8, 2).double().eval()
    plain = SelfAttention(8, 2).double().eval()
    plain.load_state_dict(sga.state_dict())  # same qkv / proj layout
    x = torch.randn(3, 10, 8, dtype=torch.float64)
    torch.testing.assert_close(sga(x), plain(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sga(x, 1, torch.randperm(10)), plain(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sga(x), attention_by_hand(sga, x, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups", [2, 3, 6])
def test_g_groups_equal_full_attention_run_separately_on_each_group(groups):
    torch.manual_seed(1)
    sga = SlicedGroupAttention(8, 2).double().eval()
    plain = SelfAttention(8, 2).double().eval()
    plain.load_state_dict(sga.state_dict())
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    n = 12 // groups
    expected = torch.cat([plain(x[:, g * n:(g + 1) * n]) for g in range(groups)], 1)
    torch.testing.assert_close(sga(x, groups), expected, rtol=1e-12, atol=1e-12)
    # with a permutation: the groups are contiguous runs of x[:, perm], the output comes back in x's order
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    xp = x[:, perm]
    expected = torch.cat([plain(xp[:, g * n:(g + 1) * n]) for g in range(groups)], 1)[:, torch.argsort(perm)]
    torch.testing.assert_close(sga(x, groups, perm), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sga(x, groups, perm), attention_by_hand(sga, x, groups, perm), rtol=1e-12, atol=1e-12)


def test_groups_really_cut_the_attention():
    """Changing a token of slice 0 leaves slice 1's outputs alone, and changes them under full attention."""
    torch.manual_seed(2)
    sga = SlicedGroupAttention(4, 1).double()
    x = torch.randn(1, 8, 4, dtype=torch.float64)
    y = x.clone()
    y[0, 0] += 1.0
    torch.testing.assert_close(sga(x, 2)[:, 4:], sga(y, 2)[:, 4:], rtol=0, atol=0)
    assert not torch.allclose(sga(x, 1)[:, 4:], sga(y, 1)[:, 4:])


# ---------------------------------------------------------------------------------------------- recursion


def test_stage_equals_each_block_applied_n_loops_times_with_its_own_projections_by_hand():
    """SReTStage with 2 unique blocks looped twice = B0(G0), P0, B0(G1, π), P1, B1(G0), P2, B1(G1, π'), P3,
    the permutations drawn in that order from the generator, loop 0 unpermuted."""
    torch.manual_seed(3)
    stage = SReTStage(4, 2, n_unique=2, n_loops=2, groups=(4, 2), mlp_ratio=2.0, proj_mlp_ratio=1.5).double().eval()
    perturb(stage)
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)  # (B, dim, h, w): 16 tokens
    out = stage(x, generator=torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)
    t = x.flatten(2).transpose(1, 2)  # raster order
    b0, b1 = stage.blocks
    p = stage.projections
    t = projection_by_hand(p[0], block_by_hand(b0, t, 4))
    t = projection_by_hand(p[1], block_by_hand(b0, t, 2, torch.randperm(16, generator=g)))
    t = projection_by_hand(p[2], block_by_hand(b1, t, 4))
    t = projection_by_hand(p[3], block_by_hand(b1, t, 2, torch.randperm(16, generator=g)))
    torch.testing.assert_close(out, t.transpose(1, 2).reshape(2, 4, 4, 4), rtol=1e-12, atol=1e-12)


def test_n_loops_adds_only_the_documented_projections_and_shares_the_block_weights():
    one, two = SReT(**{**TINY, "n_loops": 1, "groups": ((4,), (2,))}), SReT(**TINY)
    dims, depths = (4, 8), (1, 2)

    def nll(d, ratio=1.5):  # LayerNorm 2d, Linear d->h and h->d with biases, scalars d1, d2
        h = int(d * ratio)
        return 2 * d + (d * h + h) + (h * d + d) + 2

    extra = sum(k * (2 - 1) * nll(d) for d, k in zip(dims, depths))
    assert n_params(two) - n_params(one) == extra
    assert [n_params(s.blocks) for s in one.stages] == [n_params(s.blocks) for s in two.stages]
    # every parameter outside the projections has the same name and shape in both: load n_loops=1 into n_loops=2
    shared = {k: v for k, v in one.state_dict().items() if ".projections." not in k}
    assert shared.keys() == {k for k in two.state_dict() if ".projections." not in k}
    two.load_state_dict(shared, strict=False)
    # the block modules run twice per forward: count calls
    calls = []
    hooks = [b.register_forward_hook(lambda m, i, o: calls.append(m)) for s in two.stages for b in s.blocks]
    two.eval()(torch.randn(1, 3, 8, 8))
    for h in hooks:
        h.remove()
    blocks = [b for s in two.stages for b in s.blocks]
    assert [sum(c is b for c in calls) for b in blocks] == [2, 2, 2] and two.n_applications == 6
    assert SReT(**{**TINY, "projection": False}).stages[0].projections is None


def test_no_recursion_model_applies_each_block_once():
    m = SReT(**{**TINY, "n_loops": 1, "groups": 1}).double().eval()
    perturb(m)
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    stage = m.stages[0]
    t = projection_by_hand(stage.projections[0], block_by_hand(stage.blocks[0], x.flatten(2).transpose(1, 2), 1))
    torch.testing.assert_close(stage(x), t.transpose(1, 2).reshape(2, 4, 4, 4), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------- the model


def test_shapes_and_defaults():
    m = SReT(**TINY)
    assert m(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    assert m.features(torch.randn(2, 3, 8, 8)).shape == (2, 8)
    assert m.grids == ((4, 4), (2, 2)) and m.dims == (4, 8)
    assert ConvStem(3, 6, 4)(torch.randn(1, 3, 8, 8)).shape == (1, 6, 2, 2)
    d = SReT()  # SReT-T for 32x32: stride-4 stem, 8x8 / 4x4 / 2x2 maps, official slice schedule
    assert d.grids == ((8, 8), (4, 4), (2, 2)) and d.dims == (64, 128, 256)
    assert d.groups == ((8, 2), (4, 1), (1, 1)) and d.n_applications == 20
    assert SReT(n_loops=3).groups == ((8, 2, 2), (4, 1, 1), (1, 1, 1))


def test_official_configurations_have_the_official_parameter_counts():
    """Counted against the official SReT.py modules (README: 4.8M, 5.0M, 20.9M)."""
    assert n_params(sret_official("T")) == 4_755_979
    assert n_params(sret_official("LT")) == 4_988_024
    assert n_params(sret_official("S")) == 20_899_692


def test_drop_path_rates_follow_the_official_indexing():
    """Linear over the 20 applications; unique block i of a stage takes the rate of its stage's application i."""
    m = sret_official("T", drop_path=0.2)
    rates = [b.drop_path.p for s in m.stages for b in s.blocks]
    assert rates == pytest.approx([0.0, 0.01, 0.04, 0.05, 0.06, 0.07, 0.08, 0.14, 0.15, 0.16])


def test_gradients_reach_every_parameter():
    torch.manual_seed(4)
    m = SReT(**{**TINY, "drop_path": 0.1}).train()
    F.cross_entropy(m(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 0])).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_determinism_and_the_random_permutation():
    torch.manual_seed(5)
    m = SReT(**TINY).eval()
    x = torch.randn(2, 3, 8, 8)
    a = m(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(m(x, generator=torch.Generator().manual_seed(0)), a, rtol=0, atol=0)
    torch.manual_seed(9)
    b = m(x)
    torch.manual_seed(9)
    torch.testing.assert_close(m(x), b, rtol=0, atol=0)
    # the permutation of loop 1 is live (official behaviour, also in eval) ...
    assert not torch.allclose(m(x, generator=torch.Generator().manual_seed(1)), a)
    # ... and gone with shuffle=False: then eval is a fixed function
    fixed = SReT(**{**TINY, "shuffle": False}).eval()
    torch.testing.assert_close(fixed(x), fixed(x), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, match", [
    ({"stem_stride": 3}, "stem_stride"),
    ({"stem_stride": 16}, "stem_stride"),
    ({"n_loops": 0}, "n_loops"),
    ({"heads": (2, 3)}, r"heads\[1\]"),
    ({"depths": (1,)}, "depths"),
    ({"groups": ((4, 2),)}, "groups"),
    ({"groups": ((4, 2, 1), (2, 1))}, r"groups\[0\]"),
    ({"groups": ((3, 2), (2, 1))}, r"groups\[0\]\[0\]"),
    ({"groups": ((4, 0), (2, 1))}, r"groups\[0\]\[1\]"),
    ({"mlp_ratio": 0}, "mlp_ratio"),
    ({"proj_mlp_ratio": -1}, "proj_mlp_ratio"),
    ({"drop_path": 1.0}, "drop_path"),
    ({"dropout": -0.1}, "dropout"),
    ({"shuffle": "yes"}, "shuffle"),
    ({"projection": None}, "projection"),
    ({"num_classes": 0}, "num_classes"),
    ({"image_size": (8, 0)}, "image_size"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SReT(**{**TINY, **kwargs})


def test_bad_inputs_are_named():
    m = SReT(**TINY)
    with pytest.raises(ValueError, match="images"):
        m(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="images"):
        m(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="generator"):
        m(torch.randn(1, 3, 8, 8), generator=0)
    with pytest.raises(ValueError, match="name"):
        sret_official("XL")
    sga = SlicedGroupAttention(4, 2)
    with pytest.raises(ValueError, match="groups"):
        sga(torch.randn(1, 6, 4), 4)
    with pytest.raises(ValueError, match="perm"):
        sga(torch.randn(1, 6, 4), 2, torch.tensor([0, 0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="x"):
        sga(torch.randn(1, 6, 5))
    with pytest.raises(ValueError, match="n_heads"):
        SlicedGroupAttention(6, 4)
    with pytest.raises(ValueError, match="groups"):
        SReTStage(4, 1, 1, 2, groups=(2,))
    with pytest.raises(ValueError, match="groups"):
        SReTStage(4, 1, 1, 1, groups=(3,))(torch.randn(1, 4, 2, 2))
