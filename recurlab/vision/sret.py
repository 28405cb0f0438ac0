"""SReT, the Sliced Recursive Transformer for images (Shen, Liu & Xing, "Sliced Recursive Transformer",
ECCV 2022, arXiv:2111.05297; official code github.com/szq0214/SReT, ``SReT.py``; docs/sret.md).

A three-stage pooling vision transformer (PiT-style: a conv stem, stages of constant width, strided
depthwise-style convs between them, mean pooling) whose blocks are reused over depth. Images
(B, C, H, W); inside a stage the feature map (B, D, h, w) is read as N = h w tokens in raster order.

    stem     z = ReLU(BN(Conv3x3/2(... ReLU(BN(Conv3x3/2(image))) ...))) + P       log2(stem_stride) convs,
                                                                                 P a learned (D, h, w) map
    stage    K unique blocks F_1 .. F_K, each applied n_loops times in place, every application followed
             by a projection of its own (the paper's non-linear projection layer, "NLL"):

                 for i = 1 .. K:   for l = 0 .. n_loops - 1:
                     z <- F_i(z; G_l, π_l)                          weights of F_i shared by its loops
                     z <- d1[i,l] z + d2[i,l] MLP_{i,l}(LN(z))      not shared: one per application

    block    F(z; G, π):   z <- c1 z + c2 DropPath(SGA_G(LN_1(z); π))
                           z <- c3 z + c4 DropPath(MLP(LN_2(z)))    c1..c4 learnable scalars (init 1),
                                                                    part of F and so shared by its loops
    SGA      sliced group self-attention: permute the tokens by π, cut them into G contiguous slices of
             N / G, run multi-head softmax attention inside each slice, undo the permutation, project:

                 SGA_G(z; π) = P_π^T [ Attn(P_π z)_{slice 1} ; ... ; Attn(P_π z)_{slice G} ] W_o + b_o

             G = 1 is ordinary full attention. Loop 0 uses G_0 slices of the raster order (π = identity);
             a loop l >= 1 with G_l > 1 draws a fresh random permutation π_l on every call (in training
             and in eval, as the official code does), so its slices mix tokens from the whole map.
    pool     between stages: Conv3x3, stride 2, padding 1, groups = D_s, D_s -> D_{s+1} (with bias)
    head     logits = W LN(mean_{h,w} z) + b                               no class token

MLPs are Linear -> GELU -> Dropout -> Linear -> Dropout, LayerNorms have eps 1e-6. The official SReT-T
(``SRET_CONFIGS["T"]``) has head_dim 32, heads (2, 4, 8) (widths 64, 128, 256), K = (2, 5, 3) unique
blocks looped twice (depths 4, 10, 6), slices G_0 = (8, 4, 1) and G_1 = (2, 1, 1), MLP ratio 3.6 and
NLL ratio 1. Defaults here are SReT-T for 32 x 32 images: a stride-4 stem (two convs) gives 8 x 8, 4 x 4
and 2 x 2 maps, so the slices of loop 0 are the rows of the first two maps. ``n_loops=1`` applies
each block once (no recursion, same block weights; the NLLs of the missing loops are the only
parameters that go away); ``groups=1`` is the unsliced model (the README's "SReT⋇", SReT_wo_slice.py).

Initialisation as officially: P truncated N(0, 0.02), scalars 1, everything else PyTorch's default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import _checks
from .activator import check_dropout, image_hw, positive_int
from .hornet import DropPath

__all__ = ["ConvStem", "LoopProjection", "SRET_CONFIGS", "SReT", "SReTBlock", "SReTStage", "SlicedGroupAttention",
           "sret_official"]

LN_EPS = 1e-6  # every LayerNorm of the official model

# The official configurations (SReT.py: SReT_T, SReT_LT, SReT_S). ``groups`` holds per stage the slice
# counts of (loop 0, loop 1); depths are unique blocks per stage (official recursive_num), each looped twice.
SRET_CONFIGS = {
    "T": {"head_dim": 32, "heads": (2, 4, 8), "depths": (2, 5, 3), "n_loops": 2,
          "groups": ((8, 2), (4, 1), (1, 1)), "mlp_ratio": 3.6, "proj_mlp_ratio": 1.0},
    "LT": {"head_dim": 32, "heads": (2, 4, 8), "depths": (2, 5, 3), "n_loops": 2,
           "groups": ((8, 2), (4, 1), (1, 1)), "mlp_ratio": 4.0, "proj_mlp_ratio": 1.0},
    "S": {"head_dim": 42, "heads": (3, 6, 12), "depths": (2, 5, 3), "n_loops": 2,
          "groups": ((8, 2), (4, 1), (1, 1)), "mlp_ratio": 3.0, "proj_mlp_ratio": 2.0},
}


def positive_ratio(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_bool(name: str, value) -> bool:
    if value not in (True, False):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def mlp(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """Linear(dim, hidden) -> GELU -> Dropout -> Linear(hidden, dim) -> Dropout (the official ``Mlp``)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                         nn.Dropout(dropout))


def check_tokens(x, dim: int) -> None:
    _checks.check_tensor("x", x, ranks=(3,), layout="(B, N, dim)")
    if x.shape[-1] != dim:
        raise ValueError(f"x must have shape (B, N, dim) with dim={dim}, got {_checks.fmt_shape(x.shape)}")


def no_decay(p: nn.Parameter) -> nn.Parameter:
    p.no_weight_decay = True  # recurlab's Trainer leaves it undecayed, as the official optimiser does
    return p


class SlicedGroupAttention(nn.Module):
    """Multi-head softmax self-attention within G slices of the token sequence (module docstring, SGA).

    ``forward(x, groups, perm)``: x (B, N, dim) -> (B, N, dim). With ``perm`` (a permutation of range(N),
    int64), the tokens are reordered to x[:, perm] first and the attention output is put back in the
    original order; the slices are then contiguous runs of N / groups in the permuted order. ``groups=1``
    (with or without perm) is ordinary full attention. One qkv Linear (with bias) and one output Linear.
    """

    def __init__(self, dim: int, n_heads: int, attn_dropout: float = 0.0, dropout: float = 0.0):
        super().__init__()
        self.dim, self.n_heads = positive_int("dim", dim), positive_int("n_heads", n_heads)
        if dim % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide dim={dim}")
        self.head_dim = dim // n_heads
        self.attn_dropout = check_dropout("attn_dropout", attn_dropout)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(check_dropout("dropout", dropout))

    def forward(self, x: torch.Tensor, groups: int = 1, perm: torch.Tensor | None = None) -> torch.Tensor:
        check_tokens(x, self.dim)
        B, N, D = x.shape
        groups = positive_int("groups", groups)
        if N % groups:
            raise ValueError(f"groups={groups} must divide the number of tokens N={N}")
        if perm is not None:
            if (not isinstance(perm, torch.Tensor) or perm.dtype != torch.int64 or perm.shape != (N,)
                    or not torch.equal(perm.sort().values, torch.arange(N, device=perm.device))):
                raise ValueError(f"perm must be an int64 permutation of range(N={N}), got "
                                 f"{perm if not isinstance(perm, torch.Tensor) else perm.dtype, tuple(perm.shape)}")
            perm = perm.to(x.device)
            x = x[:, perm]
        n = N // groups  # tokens per slice; slice g holds tokens g n .. g n + n - 1 (of the permuted order)
        q, k, v = self.qkv(x).view(B * groups, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # explicit matmuls, not F.scaled_dot_product_attention: torch's FlopCounterMode counts no FLOPs for the
        # CPU SDPA kernel (torch 2.13), and the FLOPs saved by slicing are what SReT is measured by
        w = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim ** -0.5, dim=-1)
        o = F.dropout(w, self.attn_dropout, self.training) @ v
        o = o.transpose(1, 2).reshape(B, N, D)  # (B G, H, n, Dh) -> (B, N, D), slices back in sequence
        if perm is not None:
            o = o[:, torch.argsort(perm)]
        return self.drop(self.proj(o))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_heads={self.n_heads}"


class SReTBlock(nn.Module):
    """The shared transformer block F (module docstring): x (B, N, dim) -> (B, N, dim),

        x <- c1 x + c2 DropPath(SGA_groups(LN_1 x; perm));   x <- c3 x + c4 DropPath(MLP(LN_2 x))

    ``scales`` = (c1, c2, c3, c4), initialised to 1. MLP hidden width int(dim * mlp_ratio)."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 3.6, drop_path: float = 0.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        self.dim = positive_int("dim", dim)
        hidden = int(dim * positive_ratio("mlp_ratio", mlp_ratio))
        if hidden < 1:
            raise ValueError(f"mlp_ratio={mlp_ratio} leaves no hidden unit at dim={dim}")
        p = check_dropout("dropout", dropout)
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = SlicedGroupAttention(dim, n_heads, attn_dropout, p)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = mlp(dim, hidden, p)
        self.drop_path = DropPath(drop_path)
        self.scales = no_decay(nn.Parameter(torch.ones(4)))

    def forward(self, x: torch.Tensor, groups: int = 1, perm: torch.Tensor | None = None) -> torch.Tensor:
        c1, c2, c3, c4 = self.scales
        x = c1 * x + c2 * self.drop_path(self.attn(self.norm1(x), groups, perm))
        return c3 * x + c4 * self.drop_path(self.mlp(self.norm2(x)))


class LoopProjection(nn.Module):
    """The non-shared projection after one block application (the paper's NLL): x (B, N, dim) -> (B, N, dim),

        x <- d1 x + d2 MLP(LN x)      ``scales`` = (d1, d2), initialised to 1; MLP hidden int(dim * mlp_ratio).

    No DropPath (the official ``Non_proj`` takes a drop_path argument and ignores it)."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0, dropout: float = 0.0):
        super().__init__()
        self.dim = positive_int("dim", dim)
        hidden = int(dim * positive_ratio("proj_mlp_ratio", mlp_ratio))
        if hidden < 1:
            raise ValueError(f"proj_mlp_ratio={mlp_ratio} leaves no hidden unit at dim={dim}")
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = mlp(dim, hidden, check_dropout("dropout", dropout))
        self.scales = no_decay(nn.Parameter(torch.ones(2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1, d2 = self.scales
        return d1 * x + d2 * self.mlp(self.norm(x))


class SReTStage(nn.Module):
    """One stage (module docstring): ``n_unique`` blocks, each applied ``n_loops`` times in place, loop l
    with ``groups[l]`` slices, each application followed by its own LoopProjection (``projection=True``).

    ``forward(x, generator)``: x (B, dim, h, w) -> (B, dim, h, w); ``run(tokens, generator)`` does the same on
    (B, N, dim) raster-order tokens. Permutations for loops l >= 1 with groups[l] > 1 (when ``shuffle``) are
    drawn on the CPU by ``torch.randperm(N, generator=generator)``, one per such application, in order.
    ``projections[i * n_loops + l]`` belongs to application l of block i (official ``non_projs`` order).
    """

    def __init__(self, dim: int, n_heads: int, n_unique: int, n_loops: int, groups: Sequence[int],
                 mlp_ratio: float = 3.6, proj_mlp_ratio: float = 1.0, projection: bool = True,
                 shuffle: bool = True, drop_paths: Sequence[float] | None = None, dropout: float = 0.0,
                 attn_dropout: float = 0.0):
        super().__init__()
        self.dim = positive_int("dim", dim)
        self.n_unique, self.n_loops = positive_int("n_unique", n_unique), positive_int("n_loops", n_loops)
        if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or len(groups) != n_loops:
            raise ValueError(f"groups must hold one slice count per loop (n_loops={n_loops}), got {groups!r}")
        self.groups = tuple(positive_int(f"groups[{l}]", g) for l, g in enumerate(groups))
        self.shuffle = check_bool("shuffle", shuffle)
        drop_paths = [0.0] * n_unique if drop_paths is None else list(drop_paths)
        if len(drop_paths) != n_unique:
            raise ValueError(f"drop_paths must hold one rate per unique block (n_unique={n_unique}), got {drop_paths!r}")
        self.blocks = nn.ModuleList([SReTBlock(dim, n_heads, mlp_ratio, drop_paths[i], dropout, attn_dropout)
                                     for i in range(n_unique)])
        self.projections = nn.ModuleList([LoopProjection(dim, proj_mlp_ratio, dropout)
                                          for _ in range(n_unique * n_loops)]) if check_bool("projection", projection) else None

    @property
    def n_applications(self) -> int:
        """Block applications per forward: n_unique * n_loops (the official stage depth)."""
        return self.n_unique * self.n_loops

    def permutation(self, loop: int, n_tokens: int, generator: torch.Generator | None) -> torch.Tensor | None:
        """The token permutation of loop ``loop`` (None: slices of the raster order)."""
        if loop == 0 or self.groups[loop] == 1 or not self.shuffle:
            return None
        return torch.randperm(n_tokens, generator=generator)

    def run(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_tokens(x, self.dim)
        N = x.shape[1]
        bad = [g for g in self.groups if N % g]
        if bad:
            raise ValueError(f"groups={self.groups} must each divide the stage's N={N} tokens, {bad} do not")
        for i, block in enumerate(self.blocks):
            for loop in range(self.n_loops):
                x = block(x, self.groups[loop], self.permutation(loop, N, generator))
                if self.projections is not None:
                    x = self.projections[i * self.n_loops + loop](x)
        return x

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _checks.check_tensor("x", x, ranks=(4,), layout="(B, dim, h, w)")
        B, D, h, w = x.shape
        tokens = self.run(x.flatten(2).transpose(1, 2), generator)
        return tokens.transpose(1, 2).reshape(B, D, h, w)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_unique={self.n_unique}, n_loops={self.n_loops}, groups={self.groups}, "
                f"shuffle={self.shuffle}, projection={self.projections is not None}")


class ConvStem(nn.Module):
    """The convolutional stem: log2(stride) x (Conv3x3 stride 2 padding 1 with bias -> BatchNorm -> ReLU),
    widths dim // 2 for the first conv (dim when it is the only one), dim after. (B, C, H, W) ->
    (B, dim, ceil(H / stride), ceil(W / stride)). stride 8 is the official three-conv stem."""

    def __init__(self, in_chans: int, dim: int, stride: int):
        super().__init__()
        stride = positive_int("stem_stride", stride)
        if stride < 2 or stride & (stride - 1):
            raise ValueError(f"stem_stride must be a power of two >= 2 (one stride-2 conv each), got {stride}")
        n = stride.bit_length() - 1
        widths = [dim // 2 if n > 1 else dim] + [dim] * (n - 1)
        if widths[0] < 1:
            raise ValueError(f"the stem's first width dim // 2 must be positive, got dim={dim}")
        layers, c = [], positive_int("in_chans", in_chans)
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class SReT(nn.Module):
    """The SReT image classifier (module docstring). Defaults: SReT-T on 32 x 32 images, 10 classes,
    stem stride 4 (the official model: ``sret_official("T")``, 224 x 224, stride 8).

    Args:
        image_size: int or (H, W); images must have exactly this size.
        stem_stride: 2, 4, 8, ...: one stride-2 conv each (official 8).
        head_dim, heads: stage s has width head_dim * heads[s] and heads[s] heads (official base_dims, heads).
        depths: unique blocks per stage (official recursive_num); each is applied n_loops times.
        n_loops: applications of each block (official 2; 1 = no recursion).
        groups: slices per stage and loop, ``groups[s][l]``; an int entry is used for every loop of its stage,
            an int ``groups`` for everything (1 = full attention). None: the official (8, 4, 1) for loop 0
            and (2, 1, 1) for every later loop (three stages only).
        mlp_ratio, proj_mlp_ratio: hidden widths of the block MLP and of the NLL MLP, as multiples of width.
        projection: the non-shared NLL after every application (official: always).
        shuffle: random token permutation before the slices of loops >= 1 (official: always).
        drop_path: stochastic depth rate, linear over all applications; unique block i of stage s gets the
            rate of application (first application of stage s) + i, as the official code indexes it.
        dropout, attn_dropout: after the position embedding, in MLPs and after the attention projection;
            on the attention weights.

    ``features(images, generator)`` -> (B, width) after the final LayerNorm; ``forward`` -> logits.
    ``generator`` (a CPU torch.Generator) drives the token permutations; None uses the global RNG.
    """

    def __init__(self, image_size=32, num_classes: int = 10, in_chans: int = 3, stem_stride: int = 4,
                 head_dim: int = 32, heads: Sequence[int] = (2, 4, 8), depths: Sequence[int] = (2, 5, 3),
                 n_loops: int = 2, groups=None, mlp_ratio: float = 3.6, proj_mlp_ratio: float = 1.0,
                 projection: bool = True, shuffle: bool = True, drop_path: float = 0.1, dropout: float = 0.0,
                 attn_dropout: float = 0.0):
        super().__init__()
        self.image_size = image_hw(image_size)
        self.in_chans = positive_int("in_chans", in_chans)
        self.num_classes = positive_int("num_classes", num_classes)
        self.n_loops = positive_int("n_loops", n_loops)
        head_dim = positive_int("head_dim", head_dim)
        heads = self._ints("heads", heads)
        depths = self._ints("depths", depths)
        if len(depths) != len(heads):
            raise ValueError(f"depths must have one entry per stage (len(heads)={len(heads)}), got {depths!r}")
        self.dims = tuple(head_dim * h for h in heads)
        for s in range(len(heads) - 1):
            if heads[s + 1] % heads[s]:
                raise ValueError(f"heads[{s + 1}]={heads[s + 1]} must be a multiple of heads[{s}]={heads[s]}: the "
                                 f"pooling conv is grouped by input channel, so its widths must divide")
        self.groups = self._group_schedule(groups, len(heads))
        rate = check_dropout("drop_path", drop_path)
        p = check_dropout("dropout", dropout)

        self.stem = ConvStem(in_chans, self.dims[0], stem_stride)
        if any(s % stem_stride for s in self.image_size):
            raise ValueError(f"stem_stride={stem_stride} must divide image_size={self.image_size}")
        self.stem_stride = stem_stride
        grid = [s // stem_stride for s in self.image_size]
        self.pos_embed = no_decay(nn.Parameter(torch.zeros(1, self.dims[0], *grid)))
        self.pos_drop = nn.Dropout(p)
        self.grids = []
        total, first = sum(depths) * n_loops, 0
        stages, pools = [], []
        for s, (dim, h, k) in enumerate(zip(self.dims, heads, depths)):
            n_tokens = grid[0] * grid[1]
            for l, g in enumerate(self.groups[s]):
                if n_tokens % g:
                    raise ValueError(f"groups[{s}][{l}]={g} must divide stage {s}'s {grid[0]}x{grid[1]} = "
                                     f"{n_tokens} tokens")
            self.grids.append(tuple(grid))
            stages.append(SReTStage(dim, h, k, n_loops, self.groups[s], mlp_ratio, proj_mlp_ratio, projection, shuffle,
                                    [rate * (first + i) / total for i in range(k)], p, attn_dropout))
            first += k * n_loops
            if s < len(heads) - 1:
                pools.append(nn.Conv2d(dim, self.dims[s + 1], 3, stride=2, padding=1, groups=dim))
                grid = [math.ceil(g / 2) for g in grid]
        self.grids = tuple(self.grids)
        self.stages, self.pools = nn.ModuleList(stages), nn.ModuleList(pools)
        self.norm = nn.LayerNorm(self.dims[-1], eps=LN_EPS)
        self.head = nn.Linear(self.dims[-1], num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @staticmethod
    def _ints(name: str, values) -> tuple[int, ...]:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values!r}")
        return tuple(positive_int(f"{name}[{i}]", v) for i, v in enumerate(values))

    def _group_schedule(self, groups, n_stages: int) -> tuple[tuple[int, ...], ...]:
        if groups is None:
            if n_stages != 3:
                raise ValueError(f"groups=None is the official three-stage schedule; give groups for {n_stages} stages")
            return tuple((g0,) + (g1,) * (self.n_loops - 1) for g0, g1 in ((8, 2), (4, 1), (1, 1)))
        if isinstance(groups, int) and not isinstance(groups, bool):
            groups = [groups] * n_stages
        if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or len(groups) != n_stages:
            raise ValueError(f"groups must be an int or hold one entry per stage ({n_stages}), got {groups!r}")
        schedule = []
        for s, g in enumerate(groups):
            if isinstance(g, int) and not isinstance(g, bool):
                g = [g] * self.n_loops
            if isinstance(g, (str, bytes)) or not isinstance(g, Sequence) or len(g) != self.n_loops:
                raise ValueError(f"groups[{s}] must be an int or one slice count per loop (n_loops={self.n_loops}), "
                                 f"got {g!r}")
            schedule.append(tuple(positive_int(f"groups[{s}][{l}]", v) for l, v in enumerate(g)))
        return tuple(schedule)

    @property
    def n_applications(self) -> int:
        """Block applications per image, over all stages (official sum(depth))."""
        return sum(stage.n_applications for stage in self.stages)

    def check_images(self, images) -> None:
        _checks.check_tensor("images", images, ranks=(4,), layout="(B, in_chans, H, W)")
        _checks.check_shape("images", images, (images.shape[0], self.in_chans, *self.image_size), "(B, in_chans, H, W)")

    def features(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """images (B, in_chans, H, W) -> (B, width of the last stage), LayerNorm of the mean token."""
        self.check_images(images)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        x = self.pos_drop(self.stem(images) + self.pos_embed)
        for s, stage in enumerate(self.stages):
            x = stage(x, generator)
            if s < len(self.pools):
                x = self.pools[s](x)
        return self.norm(x.mean((2, 3)))

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """images (B, in_chans, H, W) with (H, W) = image_size -> logits (B, num_classes)."""
        return self.head(self.features(images, generator))


def sret_official(name: str = "T", **overrides) -> SReT:
    """An official configuration ("T", "LT" or "S") at the official 224 x 224, stem stride 8, 1000 classes;
    keyword arguments override any SReT argument (e.g. ``n_loops=1``, ``groups=1``)."""
    if name not in SRET_CONFIGS:
        raise ValueError(f"name must be one of {sorted(SRET_CONFIGS)}, got {name!r}")
    kwargs = {"image_size": 224, "stem_stride": 8, "num_classes": 1000, **SRET_CONFIGS[name]}
    if "n_loops" in overrides and "groups" not in overrides:  # keep the official (G_0, G_1, G_1, ...) pattern
        kwargs["groups"] = None
    return SReT(**{**kwargs, **overrides})
