"""Activator (recurlab/vision/activator.py; Abdullah & Aydin 2024, Abdullah-88/Activator) and the ViT baseline
(recurlab/vision/vit.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from recurlab.vision.activator import Activator, ActivatorBlock, ActivatorUnit
from recurlab.vision.vit import ViT, ViTBlock

TINY = {"image_size": 8, "patch_size": 2, "num_classes": 5, "dim": 8, "depth": 2}  # 16 patches of 2x2


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def perturb_norms(module):
    """LayerNorm affine terms away from (1, 0), so the equations see which norm is applied where."""
    for m in module.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()


def shuffle_patches(images: torch.Tensor, patch: int, perm: torch.Tensor) -> torch.Tensor:
    """Move patch perm[j] (row-major patch order) of each image to position j."""
    B, C, H, W = images.shape
    gh, gw = H // patch, W // patch
    p = images.reshape(B, C, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C, patch, patch)
    p = p[:, perm].reshape(B, gh, gw, C, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return p.reshape(B, C, H, W)


def test_unit_equals_its_equation_with_one_layernorm_for_u_and_v():
    unit = ActivatorUnit(6).double()
    assert unit.hidden == 12 and sum(isinstance(m, torch.nn.LayerNorm) for m in unit.modules()) == 1
    perturb_norms(unit)
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    ln = unit.norm
    u = F.layer_norm(F.gelu(x @ unit.u_proj.weight.T + unit.u_proj.bias), (12,), ln.weight, ln.bias, ln.eps)
    v = F.layer_norm(x @ unit.v_proj.weight.T + unit.v_proj.bias, (12,), ln.weight, ln.bias, ln.eps)
    torch.testing.assert_close(unit(x), (u * v) @ unit.out_proj.weight.T + unit.out_proj.bias, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("light", [False, True])
def test_block_equals_its_equation_with_one_layernorm_before_both_branches(light):
    block = ActivatorBlock(6, light=light, hidden=10).double().eval()
    perturb_norms(block)
    x = torch.randn(2, 4, 6, dtype=torch.float64)

    def ln(t):
        return F.layer_norm(t, (6,), block.norm.weight, block.norm.bias, block.norm.eps)

    y = x + block.unit(ln(x))
    if light:
        assert block.ffn is None
    else:
        up, down = block.ffn[0], block.ffn[3]
        y = y + F.gelu(ln(y) @ up.weight.T + up.bias) @ down.weight.T + down.bias
    torch.testing.assert_close(block(x), y, rtol=1e-12, atol=1e-12)


def test_parameter_counts_follow_the_formulas():
    d, c, p, k, n = 8, 3, 2, 5, 16
    outside = c * p * p * d + d + d * k + k  # patch conv (with bias) and head
    assert n_params(ActivatorBlock(d)) == 10 * d * d + 14 * d
    assert n_params(ActivatorBlock(d, light=True)) == 6 * d * d + 11 * d
    assert n_params(ViTBlock(d, 2)) == 12 * d * d + 13 * d
    assert n_params(Activator(**TINY)) == outside + 2 * (10 * d * d + 14 * d)
    assert n_params(Activator(**TINY, light=True)) == outside + 2 * (6 * d * d + 11 * d)
    assert n_params(ViT(**TINY, n_heads=2)) == outside + n * d + 2 * d + 2 * (12 * d * d + 13 * d)
    # the official training script's model: 2,650,890 parameters (1,599,242 light)
    assert n_params(Activator()) == 2_650_890 and n_params(Activator(light=True)) == 1_599_242


def test_no_position_embedding_no_class_token_mean_pool():
    model = Activator(**TINY).double().eval()
    images = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    tokens = model.patch_tokens(images)
    # tokens are the patch conv's outputs, row-major, and nothing else
    torch.testing.assert_close(tokens, model.embed.proj(images).flatten(2).transpose(1, 2), rtol=0, atol=0)
    assert tokens.shape == (2, 16, 8)
    assert not any("pos" in name or "cls" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(model(images), model.head(model.encode(tokens).mean(1)), rtol=0, atol=0)


@pytest.mark.parametrize("light", [False, True])
def test_permuting_tokens_permutes_every_block_output(light):
    """No token mixing: every block (and the whole stack) is equivariant to any permutation of the tokens."""
    model = Activator(**TINY, light=light).double().eval()
    perturb_norms(model)
    tokens = torch.randn(3, 16, 8, dtype=torch.float64)
    perm = torch.randperm(16)
    for block in model.blocks:
        torch.testing.assert_close(block(tokens[:, perm]), block(tokens)[:, perm], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.encode(tokens[:, perm]), model.encode(tokens)[:, perm], rtol=1e-12, atol=1e-12)


def test_activator_logits_are_invariant_to_rearranging_the_image_patches():
    """True of the official model: no position embedding, per-patch embedding, mean pooling."""
    model = Activator(**TINY).double().eval()
    images = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    perm = torch.randperm(16)
    shuffled = shuffle_patches(images, 2, perm)
    assert not torch.equal(shuffled, images)
    torch.testing.assert_close(model.patch_tokens(shuffled), model.patch_tokens(images)[:, perm],
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model(shuffled), model(images), rtol=1e-12, atol=1e-12)
    # ...but pixels are not interchangeable inside a patch: the patch conv sees their layout
    flipped = images.reshape(2, 3, 4, 2, 4, 2).flip(3).reshape(2, 3, 8, 8)
    assert (model(flipped) - model(images)).abs().max() > 1e-6


def test_vit_logits_depend_on_where_the_patches_are():
    model = ViT(**TINY, n_heads=2).double().eval()
    images = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    shuffled = shuffle_patches(images, 2, torch.randperm(16))
    assert (model(shuffled) - model(images)).abs().max() > 1e-6  # the learned position embedding


def test_changing_one_patch_changes_only_its_token_in_the_activator_and_every_token_in_the_vit():
    images = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    changed = images.clone()
    changed[..., 2:4, 4:6] += 1.0  # patch (1, 2): token 6 in row-major order
    others = [i for i in range(16) if i != 6]
    for model in (Activator(**TINY).double().eval(), ViT(**TINY, n_heads=2).double().eval()):
        before = model.encode(model.patch_tokens(images))[0]
        after = model.encode(model.patch_tokens(changed))[0]
        diff = (after - before).abs().amax(-1)
        assert diff[6] > 1e-6
        if isinstance(model, Activator):
            assert torch.equal(after[others], before[others])
        else:
            assert (diff[others] > 1e-9).all()  # attention mixes the change into every token


def test_vit_attention_equals_softmax_attention_written_out():
    block = ViTBlock(8, 2).double().eval()
    perturb_norms(block)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    h = block.norm1(x)
    q, k, v = (h @ block.attn.qkv.weight.T + block.attn.qkv.bias).split(8, -1)

    def heads(t):
        return t.view(2, 5, 2, 4).transpose(1, 2)

    a = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(4), -1)
    o = (a @ heads(v)).transpose(1, 2).reshape(2, 5, 8) @ block.attn.proj.weight.T + block.attn.proj.bias
    y = x + o
    torch.testing.assert_close(block(x), y + block.mlp(block.norm2(y)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("build", [lambda: Activator(**TINY), lambda: Activator(**TINY, light=True),
                                   lambda: ViT(**TINY, n_heads=2)], ids=["activator", "light", "vit"])
def test_gradients_reach_every_parameter(build):
    model = build()
    F.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 4])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", [Activator, ViT])
def test_construction_and_eval_forward_are_deterministic(cls):
    images = torch.randn(2, 3, 8, 8)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = cls(**TINY).eval()
        outs.append((model(images), model(images)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][0], outs[0][1])
    model.train()
    if cls is Activator:  # the official dropout 0.5 acts in training mode only
        assert not torch.equal(model(images), outs[0][0])


def test_defaults_are_the_official_training_scripts_model():
    model = Activator()
    assert model.embed.image_size == (32, 32) and model.embed.patch_size == 4 and model.embed.num_patches == 64
    assert model.dim == 256 and model.depth == 4 and model.num_classes == 10
    block = model.blocks[0]
    assert block.unit.hidden == 512 and block.ffn[2].p == 0.5 and block.ffn[4].p == 0.5
    assert ViT().n_heads == 4 and ViT(dim=32).n_heads == 1


@pytest.mark.parametrize("build, match", [
    (lambda: Activator(image_size=30, patch_size=4), r"patch_size=4 must divide image_size=30"),
    (lambda: Activator(image_size=(32, 0)), r"image_size\[1\] must be a positive int"),
    (lambda: Activator(image_size="32"), "image_size must be a positive int or a"),
    (lambda: Activator(dim=0), "dim must be a positive int"),
    (lambda: Activator(depth=1.5), "depth must be a positive int"),
    (lambda: Activator(light="yes"), "light must be True or False"),
    (lambda: Activator(dropout=1.0), r"dropout must be a probability in \[0, 1\)"),
    (lambda: Activator(light=True, dropout=-0.1), "dropout must be a probability"),
    (lambda: ActivatorUnit(4, hidden=0), "hidden must be a positive int"),
    (lambda: ViT(dim=48, n_heads=5), "n_heads=5 must divide dim=48"),
    (lambda: ViT(mlp_ratio=0), "mlp_ratio must be a positive number"),
    (lambda: ViT(patch_size=0), "patch_size must be a positive int"),
])
def test_bad_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("cls", [Activator, ViT])
def test_bad_inputs_name_the_input(cls):
    model = cls(**TINY)
    with pytest.raises(ValueError, match=r"images must have shape \(B, in_chans, H, W\) = \(2, 3, 8, 8\), "
                                         r"got \(2, 3, 8, 10\)"):
        model(torch.randn(2, 3, 8, 10))
    with pytest.raises(ValueError, match=r"images must have shape \(B, in_chans, H, W\), got a 3-d tensor"):
        model(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, dim\) with dim=8"):
        model.blocks[0](torch.randn(2, 4, 6))
    assert cls(**{**TINY, "image_size": (8, 4)})(torch.randn(1, 3, 8, 4)).shape == (1, 5)
