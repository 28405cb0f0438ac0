"""A small Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", ICLR 2021): the
token-mixing baseline for the Activator (vision/activator.py), built with the same patch embedding,
pooling and head so the two differ where the papers differ.

    tokens = patch conv (kernel = stride = patch_size, with bias) + learned position embedding
    block:  x = x + Attn(LN(x)),   Attn = softmax(q kᵀ / sqrt(Dh)) v over all tokens, n_heads heads
            x = x + MLP(LN(x)),    MLP = Linear(dim, mlp_ratio dim) -> GELU -> Linear(mlp_ratio dim, dim)
    head:   LN -> mean over tokens -> Linear -> logits

Attention is written out (softmax(q kᵀ / sqrt(Dh)) v, not causal) so torch's flop counter sees it. Pooling is the
mean over patch tokens, not a class token: the Activator pools by the mean, so the two models see the
same N tokens and classify the same way (a class token would add one token and a second difference).
Initialisation follows the timm / DeiT convention: Linear weights and the position embedding
truncated N(0, 0.02), biases 0; the patch conv keeps PyTorch's default. Per block it has
12 dim² + 13 dim parameters (mlp_ratio 4) against the Activator's 10 dim² + 14 dim (6 dim² + 11 dim
light), so equal-size comparisons pick dim or depth accordingly (docs/activator.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import _checks
from .activator import PatchEmbedding, check_dropout, positive_int


class SelfAttention(nn.Module):
    """Multi-head softmax self-attention over all tokens (no mask): (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide dim={dim}")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.dropout = check_dropout("dropout", dropout)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # written out rather than F.scaled_dot_product_attention: torch's flop counter counts 0 FLOPs for the
        # latter on CPU (torch 2.13), and the vision bench compares FLOPs per image
        w = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim ** -0.5, dim=-1)   # (B, H, T, T)
        w = F.dropout(w, self.dropout, self.training)
        return self.proj((w @ v).transpose(1, 2).reshape(B, T, D))


class ViTBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN x), then x + MLP(LN x) (two LayerNorms)."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.dim = positive_int("dim", dim)
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be a positive number, got {mlp_ratio!r}")
        hidden = int(dim * mlp_ratio)
        p = check_dropout("dropout", dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, n_heads, p)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(p), nn.Linear(hidden, dim),
                                 nn.Dropout(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_tensor("x", x, ranks=(3,), layout="(B, T, dim)")
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (B, T, dim) with dim={self.dim}, got {_checks.fmt_shape(x.shape)}")
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small ViT classifier (module docstring). ``n_heads`` defaults to dim // 64 (at least 1).

    ``patch_tokens(images)`` -> (B, N, dim) with position embeddings added, ``encode(tokens)`` ->
    (B, N, dim) through the blocks and the final LayerNorm, ``classify(tokens)`` -> logits (mean, Linear).
    """

    def __init__(self, image_size=32, patch_size: int = 4, num_classes: int = 10, dim: int = 256,
                 depth: int = 4, n_heads: int | None = None, mlp_ratio: float = 4.0, in_chans: int = 3,
                 dropout: float = 0.0):
        super().__init__()
        self.num_classes = positive_int("num_classes", num_classes)
        self.dim, self.depth = positive_int("dim", dim), positive_int("depth", depth)
        self.n_heads = max(1, dim // 64) if n_heads is None else positive_int("n_heads", n_heads)
        if dim % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide dim={dim}")
        self.embed = PatchEmbedding(image_size, patch_size, in_chans, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.embed.num_patches, dim))
        self.blocks = nn.Sequential(*[ViTBlock(dim, self.n_heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images) + self.pos_embed

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(tokens))

    def classify(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens.mean(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, in_chans, H, W) with (H, W) = image_size -> logits (B, num_classes)."""
        return self.classify(self.encode(self.patch_tokens(images)))
