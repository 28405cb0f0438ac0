"""Parameter-free spatial layers in a ResNet bottleneck (Han, Yoo, Kim & Heo 2022, "Learning Features
with Parameter-Free Layers", ICLR 2022, arXiv:2202.02777; official code: github.com/naver-ai/PfLayer,
resnet_pf.py).

The paper replaces the trainable spatial operation of a building block (the 3x3 convolution of a
ResNet bottleneck, the depthwise convolution of an efficient block) by a built-in operation with no
weights, chiefly a 3x3 max-pool. In the official ``MaxBottleneck`` the pool simply takes the place of
the 3x3 conv-BN-ReLU: no BatchNorm or ReLU follows it.

    h = ReLU(BN(W_r * x))                    1x1 reduction to ``width`` channels
    s = spatial(h)                           the spatial operation, stride ``stride`` (ResNet v1.5: the
                                             stride sits here, not on the reduction)
    y = ReLU(BN(W_e * s) + shortcut(x))      1x1 expansion to ``out_ch`` (default 4 * width); shortcut =
                                             identity, or BN(1x1 conv, stride) when the shape changes

    spatial = "conv":    ReLU(BN(3x3 conv))              the standard bottleneck (official ``Bottleneck``)
              "dwconv":  ReLU(BN(3x3 depthwise conv))    the official block with groups = width
              "maxpool": MaxPool(3, stride, padding 1)   the official ``MaxBottleneck`` (R50-max)
              "avgpool": AvgPool(3, stride, padding 1)   recurlab's: the same slot with an average

Reported on ImageNet-1k (official README): R50 25.6M parameters, 4.1 GFLOPs, 76.2% top-1; R50-max
14.2M, 2.2 GFLOPs, 74.3%.

:class:`BottleneckResNet` is a small network of these blocks for 32x32 images. The official network
targets 224x224 ImageNet (7x7 stride-2 stem and a max-pool); the CIFAR-style stem here (one 3x3
conv-BN-ReLU, no pool) and the default depth and widths are recurlab's choices (docs/pflayer.md).
Initialisation is PyTorch's default for every layer, as in the official code (its ResNet has no
initialisation pass and does not zero the last BatchNorm of a block).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops import _checks

SPATIAL = ("conv", "dwconv", "maxpool", "avgpool")
EXPANSION = 4  # the bottleneck's out_ch / width, as in ResNet-50


def _positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_spatial(name: str, value) -> str:
    if value not in SPATIAL:
        raise ValueError(f"{name} must be one of {', '.join(SPATIAL)}, got {value!r}")
    return value


def conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding for odd kernels) -> BatchNorm [-> ReLU]."""
    layers = [nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def spatial_op(spatial: str, width: int, stride: int) -> nn.Module:
    """The spatial operation of a bottleneck on ``width`` channels: a trainable 3x3 conv or depthwise conv
    (each followed by BN and ReLU), or a parameter-free 3x3 max- or average-pool (followed by nothing)."""
    _check_spatial("spatial", spatial)
    if spatial == "conv":
        return conv_bn(width, width, 3, stride)
    if spatial == "dwconv":
        return conv_bn(width, width, 3, stride, groups=width)
    if spatial == "maxpool":
        return nn.MaxPool2d(3, stride, padding=1)
    # Border windows average over the pixels inside the image only (DARTS's avg_pool_3x3 convention).
    return nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 reduce -> spatial op -> 1x1 expand, plus shortcut) whose spatial op is
    chosen by ``spatial`` (see the module docstring); ``out_ch`` defaults to 4 * width; stride 1 or 2."""

    expansion = EXPANSION

    def __init__(self, in_ch: int, width: int, out_ch: int | None = None, stride: int = 1,
                 spatial: str = "conv"):
        super().__init__()
        self.in_ch = _positive_int("in_ch", in_ch)
        self.width = _positive_int("width", width)
        self.out_ch = EXPANSION * width if out_ch is None else _positive_int("out_ch", out_ch)
        if not isinstance(stride, int) or isinstance(stride, bool) or stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        self.stride = stride
        self.spatial_kind = _check_spatial("spatial", spatial)
        self.reduce = conv_bn(in_ch, width, 1)
        self.spatial = spatial_op(spatial, width, stride)
        self.expand = conv_bn(width, self.out_ch, 1, relu=False)
        # The official _make_layer projects the shortcut (1x1 conv with the block's stride, then BN)
        # whenever the stride or the channel count changes; otherwise it is the identity.
        if stride != 1 or in_ch != self.out_ch:
            self.shortcut = conv_bn(in_ch, self.out_ch, 1, stride, relu=False)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_ch, H, W) -> (B, out_ch, ceil(H / stride), ceil(W / stride))."""
        _checks.check_tensor("x", x, ranks=(4,), layout="(B, in_ch, H, W)")
        if x.shape[1] != self.in_ch:
            raise ValueError(f"x must have in_ch={self.in_ch} channels (shape (B, in_ch, H, W)), "
                             f"got shape {_checks.fmt_shape(x.shape)}")
        y = self.expand(self.spatial(self.reduce(x)))
        return torch.relu(y + self.shortcut(x))

    def extra_repr(self) -> str:
        return f"in_ch={self.in_ch}, width={self.width}, out_ch={self.out_ch}, stride={self.stride}, " \
               f"spatial={self.spatial_kind!r}"


class BottleneckResNet(nn.Module):
    """A ResNet of :class:`Bottleneck` blocks for small (e.g. 32x32) images.

    stem: 3x3 conv (in_chans -> widths[0]) -> BN -> ReLU, stride 1, no max-pool (recurlab's CIFAR-style
    stem; the official network uses a 7x7 stride-2 conv and a 3x3 stride-2 max-pool for 224x224 inputs).
    Stage i has ``stages[i]`` blocks of width ``widths[i]`` and 4 * widths[i] output channels; its first
    block has stride 1 for stage 0 and 2 after (as in the official ``ResNet``), the others stride 1.
    head: global average pool -> Linear(4 * widths[-1], num_classes).

    ``spatial`` is one of "conv", "dwconv", "maxpool", "avgpool" for every block, or a sequence of one
    per stage (e.g. parameter-free early stages, convolutions late).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, stages: Sequence[int] = (2, 2, 2),
                 widths: Sequence[int] = (32, 64, 128), spatial: str | Sequence[str] = "conv"):
        super().__init__()
        self.num_classes = _positive_int("num_classes", num_classes)
        self.in_chans = _positive_int("in_chans", in_chans)
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or not stages:
            raise ValueError(f"stages must be a non-empty sequence of block counts, got {stages!r}")
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) != len(stages):
            raise ValueError(f"widths must be a sequence of one width per stage ({len(stages)}), got {widths!r}")
        for i, (n, w) in enumerate(zip(stages, widths)):
            _positive_int(f"stages[{i}]", n)
            _positive_int(f"widths[{i}]", w)
        if isinstance(spatial, str):
            per_stage = [_check_spatial("spatial", spatial)] * len(stages)
        elif isinstance(spatial, Sequence) and len(spatial) == len(stages):
            per_stage = [_check_spatial(f"spatial[{i}]", s) for i, s in enumerate(spatial)]
        else:
            raise ValueError(f"spatial must be one of {', '.join(SPATIAL)} or a sequence of one per stage "
                             f"({len(stages)}), got {spatial!r}")
        self.stages_spec, self.widths, self.spatial_kinds = tuple(stages), tuple(widths), tuple(per_stage)

        self.stem = conv_bn(in_chans, widths[0], 3)
        blocks, ch = [], widths[0]
        for i, (n, w, kind) in enumerate(zip(stages, widths, per_stage)):
            stage = []
            for j in range(n):
                stage.append(Bottleneck(ch, w, stride=2 if i > 0 and j == 0 else 1, spatial=kind))
                ch = EXPANSION * w
            blocks.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*blocks)
        self.num_features = ch
        self.fc = nn.Linear(ch, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """images (B, in_chans, H, W) -> the last stage's feature map (B, 4 * widths[-1], H', W')."""
        _checks.check_tensor("x", x, ranks=(4,), layout="(B, in_chans, H, W)")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"x must have in_chans={self.in_chans} channels (shape (B, in_chans, H, W)), "
                             f"got shape {_checks.fmt_shape(x.shape)}")
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """images (B, in_chans, H, W) -> logits (B, num_classes)."""
        return self.fc(self.features(x).mean((2, 3)))
