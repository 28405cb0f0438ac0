"""Parameter-free bottlenecks (recurlab/vision/pflayer.py; Han et al. 2022, naver-ai/PfLayer resnet_pf.py)."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from recurlab.vision.pflayer import SPATIAL, Bottleneck, BottleneckResNet

TINY = {"stages": (1, 2), "widths": (4, 8)}


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def bn_eval(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def randomise_batchnorms(module):
    """Non-trivial BN statistics and affine terms, so an eval-mode check sees every BN."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()


@pytest.mark.parametrize("spatial", SPATIAL)
@pytest.mark.parametrize("stride", [1, 2])
def test_block_shapes_for_every_spatial_op_and_stride(spatial, stride):
    block = Bottleneck(6, 4, stride=stride, spatial=spatial)
    for hw in (8, 9):
        y = block(torch.randn(2, 6, hw, hw))
        out = -(-hw // stride)
        assert y.shape == (2, 16, out, out)  # out_ch = 4 * width by default
        assert (y >= 0).all()  # the block ends with ReLU(residual sum)
    assert Bottleneck(6, 4, out_ch=10, stride=stride, spatial=spatial)(torch.randn(1, 6, 5, 5)).shape[1] == 10


def test_shortcut_is_identity_only_when_the_shape_is_kept():
    assert isinstance(Bottleneck(16, 4).shortcut, torch.nn.Identity)
    for block in (Bottleneck(16, 4, stride=2), Bottleneck(8, 4), Bottleneck(16, 4, out_ch=12)):
        conv, bn = block.shortcut  # the official downsample: 1x1 conv with the block's stride, then BN
        assert conv.kernel_size == (1, 1) and conv.stride == (block.stride,) * 2 and conv.bias is None
        assert isinstance(bn, torch.nn.BatchNorm2d)


@pytest.mark.parametrize("stride", [1, 2])
def test_maxpool_block_equals_its_equation_in_eval_mode(stride):
    """y = ReLU(BN(W_e * maxpool3x3(ReLU(BN(W_r * x)))) + shortcut(x)), nothing after the pool."""
    block = Bottleneck(8 if stride == 1 else 6, 2, stride=stride, spatial="maxpool").double().eval()
    randomise_batchnorms(block)
    x = torch.randn(2, block.in_ch, 7, 7, dtype=torch.float64)
    h = F.relu(bn_eval(F.conv2d(x, block.reduce[0].weight), block.reduce[1]))
    s = F.max_pool2d(h, 3, stride, padding=1)
    y = bn_eval(F.conv2d(s, block.expand[0].weight), block.expand[1])
    if stride == 1:
        shortcut = x
    else:
        shortcut = bn_eval(F.conv2d(x, block.shortcut[0].weight, stride=stride), block.shortcut[1])
    torch.testing.assert_close(block(x), F.relu(y + shortcut), rtol=1e-12, atol=1e-12)


def test_avgpool_averages_the_pixels_inside_the_image():
    block = Bottleneck(4, 1, spatial="avgpool")
    h = torch.ones(1, 1, 4, 4)
    torch.testing.assert_close(block.spatial(h), h)  # count_include_pad=False: borders are not diluted


def test_parameter_counts_follow_the_formula_and_pools_have_none():
    in_ch, w, out = 12, 6, 24
    reduce, expand, shortcut = in_ch * w + 2 * w, w * out + 2 * out, in_ch * out + 2 * out  # conv + BN(γ, β)
    spatial = {"conv": 9 * w * w + 2 * w, "dwconv": 9 * w + 2 * w, "maxpool": 0, "avgpool": 0}
    for kind, count in spatial.items():
        block = Bottleneck(in_ch, w, out_ch=out, spatial=kind)
        assert n_params(block.spatial) == count, kind
        assert n_params(block) == reduce + count + expand + shortcut, kind
    assert n_params(Bottleneck(in_ch, w, out_ch=out, spatial="maxpool")) < n_params(
        Bottleneck(in_ch, w, out_ch=out, spatial="dwconv")) < n_params(Bottleneck(in_ch, w, out_ch=out))
    net = {kind: n_params(BottleneckResNet(spatial=kind, **TINY)) for kind in SPATIAL}
    # 3 blocks of widths 4, 8, 8: the conv and dwconv nets carry exactly their spatial layers more
    assert net["conv"] - net["maxpool"] == sum(9 * w * w + 2 * w for w in (4, 8, 8))
    assert net["dwconv"] - net["maxpool"] == sum(11 * w for w in (4, 8, 8))
    assert net["avgpool"] == net["maxpool"]


@pytest.mark.parametrize("stride", [1, 2])
def test_flops_are_ordered_conv_dwconv_maxpool(stride):
    """torch's FlopCounterMode counts convolutions and matmuls (2 per multiply-add), not pooling."""
    x, flops = torch.randn(2, 16, 8, 8), {}
    for kind in SPATIAL:
        block = Bottleneck(16, 4, stride=stride, spatial=kind).eval()
        with FlopCounterMode(display=False) as counter:
            block(x)
        flops[kind] = counter.get_total_flops()
    assert flops["conv"] > flops["dwconv"] > flops["maxpool"] > 0
    pixels = 2 * (8 // stride) ** 2  # batch x output positions of the spatial op
    assert flops["conv"] - flops["maxpool"] == 2 * pixels * 9 * 4 * 4
    assert flops["dwconv"] - flops["maxpool"] == 2 * pixels * 9 * 4
    assert flops["avgpool"] == flops["maxpool"]


@pytest.mark.parametrize("spatial", SPATIAL)
def test_network_shapes_and_gradients_reach_every_parameter(spatial):
    net = BottleneckResNet(num_classes=5, in_chans=2, spatial=spatial, **TINY)
    x = torch.randn(3, 2, 8, 8)
    assert net.features(x).shape == (3, 32, 4, 4)  # stage 0 keeps 8x8, stage 1 halves it; 4 * widths[-1]
    logits = net(x)
    assert logits.shape == (3, 5)
    F.cross_entropy(logits, torch.tensor([0, 3, 4])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert [b.stride for stage in net.stages for b in stage] == [1, 2, 1]


def test_per_stage_spatial_ops():
    net = BottleneckResNet(spatial=("maxpool", "conv"), **TINY)
    assert [b.spatial_kind for stage in net.stages for b in stage] == ["maxpool", "conv", "conv"]
    assert net(torch.randn(1, 3, 8, 8)).shape == (1, 10)


def test_construction_and_forward_are_deterministic():
    x = torch.randn(2, 3, 8, 8)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        net = BottleneckResNet(spatial="maxpool", **TINY)
        outs.append((net(x), net.eval()(x), net(x)))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    assert torch.equal(outs[0][1], outs[0][2])


@pytest.mark.parametrize("build, match", [
    (lambda: Bottleneck(8, 2, spatial="shift"), "spatial must be one of conv, dwconv, maxpool, avgpool"),
    (lambda: Bottleneck(8, 2, stride=3), "stride must be 1 or 2, got 3"),
    (lambda: Bottleneck(8, 2, stride=True), "stride must be 1 or 2"),
    (lambda: Bottleneck(0, 2), "in_ch must be a positive int"),
    (lambda: Bottleneck(8, 2, out_ch=-1), "out_ch must be a positive int"),
    (lambda: BottleneckResNet(spatial="max"), "spatial must be one of"),
    (lambda: BottleneckResNet(spatial=("conv",), **TINY), r"spatial must be .* one per stage \(2\)"),
    (lambda: BottleneckResNet(spatial=("conv", "pool"), **TINY), r"spatial\[1\] must be one of"),
    (lambda: BottleneckResNet(stages=(1, 1), widths=(4,)), "widths must be a sequence of one width per stage"),
    (lambda: BottleneckResNet(stages=(1, 0), widths=(4, 4)), r"stages\[1\] must be a positive int"),
    (lambda: BottleneckResNet(stages=()), "stages must be a non-empty sequence"),
    (lambda: BottleneckResNet(num_classes=0), "num_classes must be a positive int"),
])
def test_bad_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_inputs_name_the_input():
    block, net = Bottleneck(8, 2), BottleneckResNet(**TINY)
    with pytest.raises(ValueError, match=r"x must have in_ch=8 channels .* got shape \(1, 6, 4, 4\)"):
        block(torch.randn(1, 6, 4, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, in_ch, H, W\), got a 3-d tensor"):
        block(torch.randn(8, 4, 4))
    with pytest.raises(ValueError, match="x must have in_chans=3 channels"):
        net(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="x must have a floating dtype"):
        net(torch.zeros(1, 3, 8, 8, dtype=torch.long))
