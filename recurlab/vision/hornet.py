"""Recursive gated convolution, g^n Conv, and the HorNet backbone (Rao et al. 2022, "HorNet: Efficient
High-Order Spatial Interactions with Recursive Gated Convolutions", NeurIPS 2022, sec. 3.1; as configured in
the official code, github.com/raoyongming/HorNet, hornet.py).

For an input x of C channels on an H x W grid, an order-n g^n Conv splits the channels into widths

    C_k = C / 2^(n-1-k),   k = 0 .. n-1           (C_0 = C / 2^(n-1), ..., C_{n-1} = C)

and computes

    [p_0, q] = φ_in(x)                            (1x1 conv C -> 2C; p_0: C_0 channels, q: the other 2C - C_0)
    [f_0, ..., f_{n-1}] = s · DWConv_K(q)         (ONE depthwise K x K conv over all of q, then split: f_k has C_k)
    p_1     = p_0 ⊙ f_0
    p_{k+1} = g_k(p_k) ⊙ f_k,   k = 1 .. n-1      (g_k: 1x1 conv C_{k-1} -> C_k)
    y = φ_out(p_n)                                (1x1 conv C -> C)

The paper writes the recursion as p_{k+1} = f_k(q_k) ⊙ g_k(p_k) / α with g_0 the identity; the official
code multiplies the depthwise output by s = 1/α = 1/3 once, before the split, which is the same product.
There is no sigmoid: the "gate" f_k is linear in x, so each step raises the degree of the interaction by
one. With every bias at zero, p_0 and each f_k are linear in x and y is a homogeneous polynomial of degree
n + 1 in x: y(c x) = c^(n+1) y(x), the "n-th order spatial interaction" of the paper (tested in
tests/vision/test_hornet.py). The widths double along the recursion, so the high orders cost little: the
first products are narrow.

A HorNet block is a pre-norm residual pair, ConvNeXt-style, with layer scale γ (init 1e-6) and stochastic
depth (drop path):

    x = x + DropPath(γ_1 ⊙ g^nConv(LN(x)))
    x = x + DropPath(γ_2 ⊙ W_2 GELU(W_1 LN(x)))   (W_1: C -> 4C, W_2: 4C -> C, per pixel)

and :class:`HorNet` stacks four stages of blocks (orders 2, 3, 4, 5 in the paper's models) between a
patchify stem (p x p conv, stride p, then LN) and three downsampling layers (LN, then 2x2 conv, stride 2),
then global average pooling, LN and a linear head. The optional global filter (the paper's HorNet-GF
models, after GFNet, Rao et al. 2021) replaces the depthwise conv by :class:`GlobalLocalFilter`: half the channels through a 3x3
depthwise conv, half through a learned filter in the 2-D Fourier domain.

Parameter names follow the official code (``proj_in``, ``dwconv``, ``pws``, ``proj_out``,
``norm1``, ``gamma1``, ``downsample_layers``, ``stages``, ...), so an official state dict of the same
configuration loads with ``strict=True``. See docs/hornet.md for the mapping and the deviations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DropPath", "GlobalLocalFilter", "GnConv", "HorNet", "HorNetBlock", "LayerNorm2d", "gnconv_widths"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_image(name: str, x, channels: int, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 4-D tensor (B, {what}={channels}, H, W), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype (float16, bfloat16, float32 or float64), got {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have {what}={channels} channels in dim 1 (B, C, H, W), "
                         f"got shape {tuple(x.shape)}")


def gnconv_widths(dim: int, order: int) -> list[int]:
    """The channel widths [C_0, ..., C_{n-1}] of an order-n g^n Conv on ``dim`` channels: C_k = dim / 2^(n-1-k).

    ``gnconv_widths(64, 5) == [4, 8, 16, 32, 64]``, the official ``gnconv.dims``. Their sum is 2 dim - C_0,
    the width of q (and of the depthwise conv). Raises ValueError unless order >= 1 and 2^(order-1) divides dim.
    """
    _check_positive_int("order", order)
    _check_positive_int("dim", dim)
    if dim % (2 ** (order - 1)):
        raise ValueError(f"dim must be divisible by 2^(order-1) = {2 ** (order - 1)} for order={order} "
                         f"(the narrowest width is dim / 2^(order-1)), got dim={dim}")
    return [dim // 2 ** (order - 1 - k) for k in range(order)]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a channels-first (B, C, H, W) tensor, at every pixel.

    The official ``LayerNorm(data_format="channels_first")``: (x - mean_C) / sqrt(var_C + eps) · weight + bias,
    biased variance, eps 1e-6, weight 1 and bias 0 at init. Computed as ``F.layer_norm`` on the channels-last
    view (the same function, one fused kernel).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        _check_positive_int("channels", channels)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016) on a residual branch: in training, each sample's branch output is
    zeroed with probability p and the kept ones are divided by 1 - p (timm's ``DropPath``, which the official
    code uses). The identity in eval mode or when p = 0."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"drop_path must be a probability in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ...) -> (B, ...); one Bernoulli(1 - p) draw per sample, shared by all its other dims."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GlobalLocalFilter(nn.Module):
    """The global-local filter of HorNet-GF (official ``GlobalLocalFilter``), a drop-in for the depthwise conv.

    On x (B, C, H, W), C even:

        z = LN(x);  [z_l, z_g] = split(z) into two halves of C/2 channels
        a = DWConv_3(z_l)                                   (3x3 depthwise, no bias)
        b = IRFFT2(RFFT2(z_g) ⊙ W)                          (orthonormal 2-D FFT over H, W; W: C/2 x h x w complex)
        out = LN(interleave(a, b))                          (channels a_0, b_0, a_1, b_1, ...)

    ``size`` = (h, w) is the stored frequency grid: (H, W // 2 + 1) of the feature map it was made for
    (the official models use (14, 8) for a 14 x 14 map and (7, 4) for 7 x 7). For another grid the filter is
    resized bilinearly (align_corners=True), as officially. The FFT runs in float32 for float16/bfloat16
    inputs (as officially) and in the input's dtype otherwise; the result is cast back to the input's dtype.
    """

    def __init__(self, channels: int, size: tuple[int, int] = (14, 8)):
        super().__init__()
        _check_positive_int("channels", channels, minimum=2)
        if channels % 2:
            raise ValueError(f"the global filter splits its channels in halves: channels must be even, got {channels}")
        if (not isinstance(size, Sequence) or len(size) != 2 or not all(_is_int(v) and v >= 1 for v in size)):
            raise ValueError(f"filter size must be two ints >= 1 (h, w // 2 + 1 of the feature map), got {size!r}")
        half = channels // 2
        self.size = (int(size[0]), int(size[1]))
        self.dw = nn.Conv2d(half, half, kernel_size=3, padding=1, groups=half, bias=False)
        self.complex_weight = nn.Parameter(torch.empty(half, *self.size, 2))   # (real, imaginary) last
        nn.init.trunc_normal_(self.complex_weight, std=0.02)
        self.pre_norm = LayerNorm2d(channels)
        self.post_norm = LayerNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        x = self.pre_norm(x)
        local, glob = x.chunk(2, dim=1)
        local = self.dw(local)
        B, half, H, W = glob.shape
        work = torch.float32 if glob.dtype in (torch.float16, torch.bfloat16) else glob.dtype
        spectrum = torch.fft.rfft2(glob.to(work), dim=(2, 3), norm="ortho")          # (B, C/2, H, W//2+1)
        weight = self.complex_weight.to(work)
        if tuple(weight.shape[1:3]) != tuple(spectrum.shape[2:4]):
            weight = F.interpolate(weight.permute(3, 0, 1, 2), size=spectrum.shape[2:4], mode="bilinear",
                                   align_corners=True).permute(1, 2, 3, 0)
        spectrum = spectrum * torch.view_as_complex(weight.contiguous())
        glob = torch.fft.irfft2(spectrum, s=(H, W), dim=(2, 3), norm="ortho").to(x.dtype)
        x = torch.stack([local, glob], dim=2).reshape(B, 2 * half, H, W)
        return self.post_norm(x)


class GnConv(nn.Module):
    """g^n Conv, the recursive gated convolution of order n (HorNet, sec. 3.1; official ``gnconv``).

    Args:
        dim: C, the input and output channels; 2^(order-1) must divide it.
        order: n >= 1, the interaction order; the output is a degree n + 1 polynomial of the input
            (order 1 is the paper's g^1 Conv, one gated product).
        kernel_size: K, the odd size of the depthwise conv ("same" padding). 7 as officially. Unused with
            the global filter (its local half is a fixed 3x3, as officially).
        scale: s = 1/α, multiplies the depthwise output before the split. 1/3 as in every official model
            (the official class's own default is 1.0, but each registered model passes 1/3).
        global_filter: use :class:`GlobalLocalFilter` instead of the depthwise conv (HorNet-GF); needs an
            even 2 dim - C_0 (so C_0 even).
        filter_size: (h, w) frequency grid of the global filter, (H, W // 2 + 1) of the feature map.

    Shapes: x (B, C, H, W) -> (B, C, H, W). Widths: ``self.dims`` = [C_0, ..., C_{n-1}], C_k = C / 2^(n-1-k).
    """

    def __init__(self, dim: int, order: int = 5, kernel_size: int = 7, scale: float = 1 / 3,
                 global_filter: bool = False, filter_size: tuple[int, int] = (14, 8)):
        super().__init__()
        self.dims = gnconv_widths(dim, order)
        if not _is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd int >= 1 (the conv keeps H x W), got {kernel_size!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"scale must be a finite number (s = 1/alpha, 1/3 officially), got {scale!r}")
        if global_filter not in (True, False):
            raise ValueError(f"global_filter must be True or False, got {global_filter!r}")
        self.dim, self.order, self.scale = dim, order, float(scale)
        width = sum(self.dims)                                   # 2 dim - C_0: all of q
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        if global_filter:
            if width % 2:
                raise ValueError(f"global_filter=True needs an even q width 2*dim - dim/2^(order-1), got {width} "
                                 f"for dim={dim}, order={order}: use a dim divisible by 2^order")
            self.dwconv = GlobalLocalFilter(width, size=filter_size)
        else:
            self.dwconv = nn.Conv2d(width, width, kernel_size, padding=kernel_size // 2, groups=width)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[k], self.dims[k + 1], 1) for k in range(order - 1))
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> y (B, C, H, W)."""
        _check_image("x", x, self.dim, "C")
        p, q = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)    # p_0: C_0, q: 2C - C_0
        f = torch.split(self.dwconv(q) * self.scale, self.dims, dim=1)              # f_k: C_k channels
        p = p * f[0]                                                                 # p_1 = p_0 ⊙ f_0
        for k in range(1, self.order):
            p = self.pws[k - 1](p) * f[k]                                            # p_{k+1} = g_k(p_k) ⊙ f_k
        return self.proj_out(p)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, order={self.order}, dims={self.dims}, scale={self.scale:.4f}"


def _check_layer_scale(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"layer_scale_init must be a finite number >= 0 (0 turns layer scale off), got {value!r}")


class HorNetBlock(nn.Module):
    """One HorNet block (official ``Block``): a g^n Conv branch and a 4x MLP branch, each pre-norm and residual.

        x = x + DropPath(γ_1 ⊙ GnConv(LN(x)))
        x = x + DropPath(γ_2 ⊙ W_2 GELU(W_1 LN(x)))

    Args:
        dim: C channels.
        order: the g^n Conv order.
        drop_path: stochastic depth probability of both branches, in [0, 1).
        layer_scale_init: initial value of γ_1 and γ_2 (per channel); 0 leaves the branches unscaled and
            creates no γ (officially: no γ when the value is <= 0).
        **gnconv_kwargs: kernel_size, scale, global_filter, filter_size of :class:`GnConv`.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, order: int = 5, drop_path: float = 0.0, layer_scale_init: float = 1e-6,
                 **gnconv_kwargs):
        super().__init__()
        _check_layer_scale(layer_scale_init)
        self.norm1 = LayerNorm2d(dim)
        self.gnconv = GnConv(dim, order, **gnconv_kwargs)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)             # on the channels-last view
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        if layer_scale_init > 0:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
        else:
            self.gamma1 = self.gamma2 = None
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        branch = self.gnconv(self.norm1(x))
        if self.gamma1 is not None:
            branch = branch * self.gamma1[:, None, None]
        x = x + self.drop_path(branch)
        branch = self.pwconv2(self.act(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))   # (B, H, W, C)
        if self.gamma2 is not None:
            branch = branch * self.gamma2
        return x + self.drop_path(branch.permute(0, 3, 1, 2))


def _four(name: str, value, check) -> tuple:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
        raise ValueError(f"{name} must have one entry per stage (4), got {value!r}")
    for v in value:
        check(v)
    return tuple(value)


class FourStageNet(nn.Module):
    """The four-stage layout HorNet takes from ConvNeXt, with the block left to the subclass.

        stem:        p x p conv (stride p) in_chans -> dims[0], LN            (H, W) -> (H/p, W/p)
        stage i:     depths[i] blocks of width dims[i] (``make_block(i, drop_path)``)
        downsample:  LN, 2x2 conv (stride 2) dims[i] -> dims[i+1]            before stages 1, 2, 3
        head:        mean over H, W -> LN -> Linear(dims[3], num_classes)

    Stochastic depth rises linearly from 0 at the first block to ``drop_path_rate`` at the last. Every Conv2d and
    Linear weight is initialised truncated normal (std 0.02, cut at ±2), biases 0, norms at weight 1 / bias 0
    (after the blocks are built, so the blocks' own parameters such as γ keep their values); the head's weight
    and bias are then multiplied by ``head_init_scale``. Arguments are checked by :meth:`check_arguments`.

    Shapes: images (B, in_chans, H, W) -> logits (B, num_classes); :meth:`forward_features` -> (B, dims[3]).
    """

    def __init__(self, in_chans: int, num_classes: int, depths: tuple[int, ...], dims: tuple[int, ...],
                 patch_size: int, drop_path_rate: float, head_init_scale: float,
                 make_block: Callable[[int, float], nn.Module]):
        super().__init__()
        self.in_chans, self.patch_size, self.dims = in_chans, patch_size, dims
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=patch_size, stride=patch_size), LayerNorm2d(dims[0]))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        rates = torch.linspace(0, drop_path_rate, sum(depths), dtype=torch.float64).tolist()
        self.stages = nn.ModuleList()
        for i in range(4):
            first = sum(depths[:i])
            self.stages.append(nn.Sequential(*[make_block(i, rates[first + j]) for j in range(depths[i])]))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(self._init_weights)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    @staticmethod
    def check_arguments(in_chans, num_classes, patch_size, depths, dims, drop_path_rate,
                        layer_scale_init) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """ValueErrors naming a bad argument; returns (depths, dims) as tuples of four ints."""
        _check_positive_int("in_chans", in_chans)
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("patch_size", patch_size)
        depths = _four("depths", depths, lambda v: _check_positive_int("depths entries", v))
        dims = _four("dims", dims, lambda v: _check_positive_int("dims entries", v))
        if isinstance(drop_path_rate, bool) or not isinstance(drop_path_rate, (int, float)) \
                or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        _check_layer_scale(layer_scale_init)
        return depths, dims

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)           # a=-2, b=2 absolute, as timm's
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """images (B, in_chans, H, W) -> pooled, normalised features (B, dims[3])."""
        _check_image("x", x, self.in_chans, "in_chans")
        least = 8 * self.patch_size
        if x.shape[2] < least or x.shape[3] < least:
            raise ValueError(f"x's H and W must be >= 8 x patch_size = {least} (the stem divides them by "
                             f"patch_size={self.patch_size}, three downsamplings by 2 more), got {tuple(x.shape)}; "
                             f"use a smaller patch_size for small images")
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.norm(x.mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """images (B, in_chans, H, W) -> logits (B, num_classes)."""
        return self.head(self.forward_features(x))


class HorNet(FourStageNet):
    """A four-stage HorNet classifier (official ``HorNet``), sized for small images by default.

        stem:        p x p conv (stride p) in_chans -> dims[0], LN            (H, W) -> (H/p, W/p)
        stage i:     depths[i] HorNetBlocks of width dims[i] and order orders[i]
        downsample:  LN, 2x2 conv (stride 2) dims[i] -> dims[i+1]            before stages 1, 2, 3
        head:        mean over H, W -> LN -> Linear(dims[3], num_classes)

    Args:
        in_chans: image channels.
        num_classes: classes of the linear head.
        depths: blocks per stage (official tiny/small/base/large: (2, 3, 18, 2)).
        dims: widths per stage; 2^(orders[i]-1) must divide dims[i] (official: base_dim x (1, 2, 4, 8),
            base_dim 64 / 96 / 128 / 192).
        orders: g^n Conv order per stage, (2, 3, 4, 5) as in the paper.
        patch_size: p, the stem's kernel and stride. 4 officially (a 224 image gives 56 x 56, 28, 14, 7).
            The four stages shrink an image by p x 8 in all, so H and W must be >= 8 p: 4 suits 32 x 32
            (maps 8, 4, 2, 1), 2 suits 16 x 16, 1 suits 8 x 8.
        kernel_size, scale: of every :class:`GnConv` (7 and 1/3 officially).
        drop_path_rate: stochastic depth, rising linearly from 0 at the first block to this at the last.
        layer_scale_init: γ's initial value in every block (1e-6 officially; 0: no layer scale).
        head_init_scale: multiplies the head's initial weight and bias (1 officially).
        global_filter: per stage, whether its g^n Convs use :class:`GlobalLocalFilter` (official HorNet-GF:
            (False, False, True, True)); one bool applies to all stages.
        filter_sizes: per stage, the global filter's (h, w) frequency grid; default: the grids of a 224 x 224
            image with p = 4, ((56, 29), (28, 15), (14, 8), (7, 4)), which are the official ones for stages
            3 and 4. Other feature sizes interpolate the filter; :meth:`filter_sizes_for` gives exact grids.

    Weights are initialised as officially: every Conv2d and Linear weight truncated normal (std 0.02,
    cut at ±2), biases 0, norms at weight 1 / bias 0, γ at ``layer_scale_init``.

    Shapes: images (B, in_chans, H, W) -> logits (B, num_classes); :meth:`forward_features` -> (B, dims[3]).
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 10, depths: Sequence[int] = (2, 2, 6, 2),
                 dims: Sequence[int] = (32, 64, 128, 256), orders: Sequence[int] = (2, 3, 4, 5),
                 patch_size: int = 4, kernel_size: int = 7, scale: float = 1 / 3, drop_path_rate: float = 0.0,
                 layer_scale_init: float = 1e-6, head_init_scale: float = 1.0,
                 global_filter: bool | Sequence[bool] = False,
                 filter_sizes: Sequence[tuple[int, int]] = ((56, 29), (28, 15), (14, 8), (7, 4))):
        depths, dims = self.check_arguments(in_chans, num_classes, patch_size, depths, dims, drop_path_rate,
                                            layer_scale_init)
        orders = _four("orders", orders, lambda v: _check_positive_int("orders entries", v))
        if global_filter in (True, False):
            global_filter = (bool(global_filter),) * 4
        global_filter = _four("global_filter", global_filter, lambda v: None)
        filter_sizes = _four("filter_sizes", filter_sizes, lambda v: None)
        for i, (dim, order) in enumerate(zip(dims, orders)):
            if dim % 2 ** (order - 1):
                raise ValueError(f"dims[{i}]={dim} must be divisible by 2^(orders[{i}]-1) = {2 ** (order - 1)} "
                                 f"(orders[{i}]={order})")

        def block(i: int, drop_path: float) -> HorNetBlock:
            return HorNetBlock(dims[i], orders[i], drop_path=drop_path, layer_scale_init=layer_scale_init,
                               kernel_size=kernel_size, scale=scale, global_filter=global_filter[i],
                               filter_size=filter_sizes[i])

        super().__init__(in_chans, num_classes, depths, dims, patch_size, drop_path_rate, head_init_scale, block)

    @staticmethod
    def filter_sizes_for(image_size: int | tuple[int, int], patch_size: int = 4) -> tuple[tuple[int, int], ...]:
        """The exact global-filter grids (h, w // 2 + 1) of the four stages for an image of ``image_size``
        (one int: square) and stem ``patch_size``; ``filter_sizes_for(224) == ((56, 29), (28, 15), (14, 8), (7, 4))``.
        """
        h, w = (image_size, image_size) if _is_int(image_size) else tuple(image_size)
        _check_positive_int("patch_size", patch_size)
        h, w = h // patch_size, w // patch_size
        sizes = []
        for _ in range(4):
            if h < 1 or w < 1:
                raise ValueError(f"image_size {image_size} is smaller than 8 x patch_size = {8 * patch_size}")
            sizes.append((h, w // 2 + 1))
            h, w = h // 2, w // 2
        return tuple(sizes)
