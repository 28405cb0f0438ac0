"""A small ConvNeXt (Liu, Mao, Wu, Feichtenhofer, Darrell & Xie 2022, "A ConvNet for the 2020s", CVPR 2022;
official code: github.com/facebookresearch/ConvNeXt, models/convnext.py): the convolutional baseline that
HorNet is compared with (docs/vision-bench.md).

    block:  x = x + DropPath(γ ⊙ W_2 GELU(W_1 LN(DWConv_7(x))))   (W_1: C -> 4C, W_2: 4C -> C, per pixel)

one residual branch per block: a 7x7 depthwise conv (with bias), then LayerNorm over the channels, the 4x
MLP with GELU, the per-channel layer scale γ (init 1e-6) and stochastic depth.

:class:`ConvNeXt` is laid out exactly like :class:`recurlab.vision.hornet.HorNet` (both are a
:class:`recurlab.vision.hornet.FourStageNet`, which owns the layout and the initialisation):

    stem        p x p conv, stride p (in_chans -> dims[0]), LN          (H, W) -> (H/p, W/p)
    stage i     depths[i] ConvNeXt blocks of width dims[i]
    downsample  LN, 2x2 conv, stride 2 (dims[i] -> dims[i+1])          before stages 1, 2, 3
    head        mean over H, W -> LN -> Linear(dims[3], num_classes)

with the same initialisation (every Conv2d and Linear weight truncated normal, std 0.02, biases 0; γ at
``layer_scale_init``) and the same ``LayerNorm2d`` and ``DropPath``. HorNet's models take this macro design from ConvNeXt (stem, stage
widths, downsampling, LN, layer scale, the 4x MLP) and change the spatial mixing; what differs is the block: HorNet's block
has two pre-norm residual branches, the g^n Conv one (with its 1x1 projections and the recursive gated
products around the depthwise 7x7 conv) and the MLP one, where ConvNeXt's has a single branch with the
depthwise conv straight in front of the MLP. At equal widths and depths a HorNet block therefore holds
about 3 C² more parameters than a ConvNeXt block (φ_in, φ_out and the g_k), so the benchmark compares
them at matched parameter counts, not matched widths.

The official ConvNeXt uses ``head_init_scale`` 1.0 for training from scratch and a linear stochastic depth
schedule, as here; its downsampling layers and stem are those above.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .hornet import DropPath, FourStageNet, _check_image, _check_layer_scale, _check_positive_int

__all__ = ["ConvNeXt", "ConvNeXtBlock"]


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block (official ``Block``): x + DropPath(γ ⊙ MLP(LN(DWConv_K(x)))).

    Args:
        dim: C channels.
        kernel_size: K, odd, of the depthwise conv (7 officially; "same" padding).
        drop_path: stochastic depth probability of the branch, in [0, 1).
        layer_scale_init: γ's initial value (per channel); 0 creates no γ (as officially for values <= 0).

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, kernel_size: int = 7, drop_path: float = 0.0, layer_scale_init: float = 1e-6):
        super().__init__()
        _check_positive_int("dim", dim)
        if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1 \
                or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd int >= 1 (the conv keeps H x W), got {kernel_size!r}")
        _check_layer_scale(layer_scale_init)
        self.dim = dim
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init))) if layer_scale_init > 0 else None
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        _check_image("x", x, self.dim, "C")
        branch = self.dwconv(x).permute(0, 2, 3, 1)                                     # (B, H, W, C)
        branch = self.pwconv2(self.act(self.pwconv1(self.norm(branch))))
        if self.gamma is not None:
            branch = branch * self.gamma
        return x + self.drop_path(branch.permute(0, 3, 1, 2))


class ConvNeXt(FourStageNet):
    """A four-stage ConvNeXt classifier with HorNet's layout (module docstring), sized for small images.

    Args:
        in_chans, num_classes: image channels and classes.
        depths: blocks per stage (official ConvNeXt-T: (3, 3, 9, 3)).
        dims: widths per stage (official ConvNeXt-T: (96, 192, 384, 768)).
        patch_size: p, the stem's kernel and stride; H and W must be >= 8 p (4 suits 32 x 32).
        kernel_size: of every depthwise conv (7).
        drop_path_rate: stochastic depth, rising linearly from 0 at the first block to this at the last.
        layer_scale_init: γ's initial value (1e-6 officially; 0: no layer scale).
        head_init_scale: multiplies the head's initial weight and bias (1.0 officially from scratch).

    Shapes: images (B, in_chans, H, W) -> logits (B, num_classes); :meth:`forward_features` -> (B, dims[3]).
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 10, depths: Sequence[int] = (2, 2, 6, 2),
                 dims: Sequence[int] = (32, 64, 128, 256), patch_size: int = 4, kernel_size: int = 7,
                 drop_path_rate: float = 0.0, layer_scale_init: float = 1e-6, head_init_scale: float = 1.0):
        depths, dims = self.check_arguments(in_chans, num_classes, patch_size, depths, dims, drop_path_rate,
                                            layer_scale_init)

        def block(i: int, drop_path: float) -> ConvNeXtBlock:
            return ConvNeXtBlock(dims[i], kernel_size, drop_path=drop_path, layer_scale_init=layer_scale_init)

        super().__init__(in_chans, num_classes, depths, dims, patch_size, drop_path_rate, head_init_scale, block)
