"""Activator: a vision transformer whose attention is replaced by a GLU unit (Abdullah & Aydin 2024,
"Activator: GLU Activation Function as the Core Component of a Vision Transformer", arXiv:2405.15953;
official code: github.com/Abdullah-88/Activator, activator.py, activator_only_GEGLU.py, train.py).

    unit:   u = LN_h(GELU(x W_1 + b_1)),  v = LN_h(x W_2 + b_2)     one LayerNorm (over the hidden width h)
            y = (u ⊙ v) W_3 + b_3                                    applied to both u and v
    block:  x = x + unit(LN_d(x))
            x = x + FFN(LN_d(x)),  FFN(x) = Drop(W_5 Drop(GELU(x W_4 + b_4)) + b_5)
                                                                     the SAME LN_d module before both
    light:  x = x + unit(LN_d(x))                                    the "only GEGLU" variant: no FFN

    model:  tokens = patch conv (kernel = stride = patch_size, with bias), flattened row-major
            -> depth blocks -> mean over tokens -> Linear -> logits

There is no position embedding, no class token and no final norm: every operation after the patch
embedding acts on each token alone except the mean, so the model is a bag of patches. Permuting the
patch tokens permutes every block's output the same way, and the logits do not change when the
image's patches are rearranged (tests/vision/test_activator.py). Defaults are the official training
script's model: 32x32 images, patch 4, 10 classes, dim 256, hidden 512 (2 dim), depth 4, dropout
0.5 (in the FFN only). Initialisation is PyTorch's default, as in the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import _checks


def positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_dropout(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def image_hw(image_size) -> tuple[int, int]:
    """image_size as (height, width): an int for a square image or a pair."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return positive_int("image_size", image_size), image_size
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return positive_int("image_size[0]", image_size[0]), positive_int("image_size[1]", image_size[1])
    raise ValueError(f"image_size must be a positive int or a (height, width) pair, got {image_size!r}")


class PatchEmbedding(nn.Module):
    """images (B, C, H, W) -> tokens (B, (H / p) (W / p), dim) by a conv of kernel = stride = p (with bias),
    tokens in row-major patch order. Refuses images of any other size than ``image_size``."""

    def __init__(self, image_size, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.image_size = image_hw(image_size)
        self.patch_size = positive_int("patch_size", patch_size)
        self.in_chans = positive_int("in_chans", in_chans)
        if any(s % patch_size for s in self.image_size):
            raise ValueError(f"patch_size={patch_size} must divide image_size={image_size}")
        self.grid = (self.image_size[0] // patch_size, self.image_size[1] // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_tensor("images", x, ranks=(4,), layout="(B, in_chans, H, W)")
        _checks.check_shape("images", x, (x.shape[0], self.in_chans, *self.image_size), "(B, in_chans, H, W)")
        return self.proj(x).flatten(2).transpose(1, 2)


class ActivatorUnit(nn.Module):
    """The Activator gating unit (module docstring): (..., dim) -> (..., dim), hidden width ``hidden``
    (default 2 dim, the official script's d_ffn = 512 for d_model = 256). It acts on each token alone."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        self.dim = positive_int("dim", dim)
        self.hidden = 2 * dim if hidden is None else positive_int("hidden", hidden)
        self.u_proj = nn.Linear(dim, self.hidden)
        self.v_proj = nn.Linear(dim, self.hidden)
        self.out_proj = nn.Linear(self.hidden, dim)
        self.norm = nn.LayerNorm(self.hidden)  # shared by u and v, as in the official unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_tensor("x", x, ranks=range(1, 9), layout="(..., dim)")
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., dim) with dim={self.dim}, got {_checks.fmt_shape(x.shape)}")
        u = self.norm(F.gelu(self.u_proj(x)))
        v = self.norm(self.v_proj(x))
        return self.out_proj(u * v)


class ActivatorBlock(nn.Module):
    """x + unit(LN(x)), then (unless ``light``) + FFN(LN(x)) with the same LayerNorm module; the FFN is
    Linear(dim, hidden) -> GELU -> Dropout -> Linear(hidden, dim) -> Dropout. (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, light: bool = False, hidden: int | None = None, dropout: float = 0.5):
        super().__init__()
        if light not in (True, False):
            raise ValueError(f"light must be True or False, got {light!r}")
        self.dim, self.light = positive_int("dim", dim), bool(light)
        p = check_dropout("dropout", dropout)
        self.norm = nn.LayerNorm(dim)
        self.unit = ActivatorUnit(dim, hidden)
        self.ffn = None if light else nn.Sequential(
            nn.Linear(dim, self.unit.hidden), nn.GELU(), nn.Dropout(p), nn.Linear(self.unit.hidden, dim), nn.Dropout(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_tensor("x", x, ranks=(3,), layout="(B, T, dim)")
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (B, T, dim) with dim={self.dim}, got {_checks.fmt_shape(x.shape)}")
        x = x + self.unit(self.norm(x))
        if self.ffn is not None:
            x = x + self.ffn(self.norm(x))
        return x


class Activator(nn.Module):
    """The Activator image classifier (module docstring). ``light=True`` builds the official
    activator_only_GEGLU model (blocks without the FFN; ``dropout`` then has nothing to act on).

    ``patch_tokens(images)`` -> (B, N, dim), ``encode(tokens)`` -> (B, N, dim) through the blocks,
    ``classify(tokens)`` -> logits (mean over tokens, Linear); ``forward`` chains the three.
    """

    def __init__(self, image_size=32, patch_size: int = 4, num_classes: int = 10, dim: int = 256,
                 depth: int = 4, light: bool = False, in_chans: int = 3, hidden: int | None = None,
                 dropout: float = 0.5):
        super().__init__()
        self.num_classes = positive_int("num_classes", num_classes)
        self.dim, self.depth = positive_int("dim", dim), positive_int("depth", depth)
        self.embed = PatchEmbedding(image_size, patch_size, in_chans, dim)
        self.blocks = nn.Sequential(*[ActivatorBlock(dim, light, hidden, dropout) for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.blocks(tokens)

    def classify(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens.mean(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, in_chans, H, W) with (H, W) = image_size -> logits (B, num_classes)."""
        return self.classify(self.encode(self.patch_tokens(images)))
