"""The small ConvNeXt baseline (recurlab/vision/convnext.py): the block against its equation, HorNet's layout,
parameter counts, gradients, determinism and errors. Tiny models; the file runs in seconds."""

import pytest
import torch
import torch.nn.functional as F

from recurlab.vision.convnext import ConvNeXt, ConvNeXtBlock
from recurlab.vision.hornet import HorNet


def test_block_is_dwconv_ln_mlp_layer_scale_residual():
    torch.manual_seed(0)
    block = ConvNeXtBlock(8, layer_scale_init=0.5).double().eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    h = F.conv2d(x, block.dwconv.weight, block.dwconv.bias, padding=3, groups=8).permute(0, 2, 3, 1)
    h = F.layer_norm(h, (8,), block.norm.weight, block.norm.bias, 1e-6)
    h = F.linear(F.gelu(F.linear(h, block.pwconv1.weight, block.pwconv1.bias)), block.pwconv2.weight,
                 block.pwconv2.bias)
    expected = x + (h * block.gamma).permute(0, 3, 1, 2)
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


def test_block_parameter_count_and_no_layer_scale():
    C = 12
    block = ConvNeXtBlock(C)
    assert sum(p.numel() for p in block.parameters()) == 8 * C * C + 58 * C  # dw 49C+C, LN 2C, MLP 8C²+5C, γ C
    assert ConvNeXtBlock(C, layer_scale_init=0).gamma is None


def test_layout_matches_hornet_outside_the_blocks():
    """Stem, downsampling, final norm and head: the same modules, names and shapes as HorNet's."""
    kw = dict(in_chans=1, num_classes=4, depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), patch_size=2)
    a, b = ConvNeXt(**kw), HorNet(**kw)
    outside = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items() if not k.startswith("stages")}  # noqa: E731
    assert outside(a) == outside(b)
    assert [len(s) for s in a.stages] == [1, 1, 2, 1]


def test_shapes_gradients_and_determinism():
    torch.manual_seed(0)
    model = ConvNeXt(in_chans=1, num_classes=10, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), patch_size=2,
                     drop_path_rate=0.1, layer_scale_init=0.1)
    x = torch.randn(3, 1, 16, 16)
    logits = model(x)
    assert logits.shape == (3, 10) and model.forward_features(x).shape == (3, 64)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    torch.manual_seed(0)
    again = ConvNeXt(in_chans=1, num_classes=10, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), patch_size=2,
                     drop_path_rate=0.1, layer_scale_init=0.1)
    model.eval(), again.eval()
    torch.testing.assert_close(model(x), again(x), rtol=0, atol=0)


def test_init_is_truncated_normal_with_zero_biases():
    torch.manual_seed(0)
    model = ConvNeXt(in_chans=1, num_classes=10, depths=(1, 1, 1, 1), dims=(16, 32, 64, 128))
    w = model.stages[3][0].pwconv1.weight
    assert w.abs().max() <= 2.0 and 0.015 < w.std() < 0.025
    assert (model.stages[3][0].pwconv1.bias == 0).all() and (model.head.bias == 0).all()
    assert torch.allclose(model.stages[0][0].gamma, torch.full((16,), 1e-6))


@pytest.mark.parametrize("kwargs, match", [
    (dict(dims=(8, 16, 32)), "dims"),
    (dict(depths=(1, 0, 1, 1)), "depths"),
    (dict(drop_path_rate=1.0), "drop_path_rate"),
    (dict(layer_scale_init=-1.0), "layer_scale_init"),
    (dict(patch_size=0), "patch_size"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvNeXt(**kwargs)


def test_bad_inputs_are_named():
    model = ConvNeXt(in_chans=1, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), patch_size=4)
    with pytest.raises(ValueError, match="8 x patch_size = 32"):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="in_chans=1"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="kernel_size"):
        ConvNeXtBlock(8, kernel_size=4)
