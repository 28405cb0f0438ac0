"""Token trees as attention inputs: many continuations of one context scored in one call.

A speculative draft tree (recurlab/decoding/rsd.py) is a set of token sequences sharing prefixes.
Laid out flat, each token at its depth's position, with a mask that lets every token see the
cached context and its own ancestors only, one attention call computes for every node exactly what
running its root-to-node path would (Miao et al. 2024, SpecInfer's "tree attention"). Only softmax
attention over a full KV cache can do this (capability ``tree_attention``); a recurrence has one
state per sequence and cannot branch inside a call.

    tree = TokenTree(torch.tensor([-1, 0, 0, 1]))   # 0 is a root; 1, 2 its children; 3 a child of 1
    tree.depths()     # tensor([0, 1, 1, 2]): rotary positions offset + depth
    tree.visible()    # (4, 4) bool: token i sees token j iff j is i or an ancestor of i
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenTree:
    """parents (N,) int64: parents[i] is the index of token i's parent (< i), or -1 for a token that
    directly follows the cached context."""

    parents: torch.Tensor

    def __post_init__(self):
        p = self.parents
        if not isinstance(p, torch.Tensor) or p.dim() != 1 or p.dtype != torch.int64:
            raise ValueError(f"parents must be a 1-D int64 tensor, got {getattr(p, 'dtype', type(p).__name__)} "
                             f"{tuple(getattr(p, 'shape', ()))}")
        index = torch.arange(len(p), device=p.device)
        if bool(((p < -1) | (p >= index)).any()):
            raise ValueError(f"every parent must be -1 or the index of an earlier token, got {p.tolist()}")

    def __len__(self) -> int:
        return len(self.parents)

    def depths(self) -> torch.Tensor:
        """(N,) int64: 0 for a token after the context, its parent's depth + 1 otherwise."""
        depth = [0] * len(self)
        for i, parent in enumerate(self.parents.tolist()):
            depth[i] = 0 if parent < 0 else depth[parent] + 1
        return torch.tensor(depth, device=self.parents.device)

    def visible(self) -> torch.Tensor:
        """(N, N) bool: row i is True at i and at each of its ancestors."""
        n = len(self)
        seen = torch.eye(n, dtype=torch.bool, device=self.parents.device)
        for i, parent in enumerate(self.parents.tolist()):
            if parent >= 0:
                seen[i] |= seen[parent]
        return seen

    def path(self, node: int) -> list[int]:
        """Indices of the tokens from the root down to ``node``, inclusive."""
        out = []
        while node >= 0:
            out.append(node)
            node = int(self.parents[node])
        return out[::-1]
