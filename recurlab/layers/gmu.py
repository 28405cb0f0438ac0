"""Gated Memory Unit (GMU) of SambaY (Ren et al. 2025, "Decoder-Hybrid-Decoder Architecture for
Efficient Reasoning with Long Generation", eq. 4; the authors' ArchScale code):

    y_t = W_out( SiLU(W_in x_t) ⊙ m_t )                      (no biases)
    y_t = W_out( GroupRMSNorm(m_t ⊙ SiLU(W_in x_t)) )        (norm_groups set: for matrix-state memories)

GroupRMSNorm is ArchScale's ``RMSNormGated(d_mem, eps=1e-5, norm_before_gate=False,
group_size=d_mem // ngroups)``: each group of memory_dim / norm_groups channels is divided by its
RMS (eps 1e-5), then every channel has its own weight (memory_dim of them).

m_t is a *memory read-out* shared from an earlier layer: in SambaY the scan
output of the last self-decoder SSM layer, before its output gate and
projection. Every GMU of the cross-decoder reads the same m, so the
cross-decoder adds no recurrent state and no KV cache: a GMU layer is
stateless and costs O(d_model * memory_dim) per token. In recurlab the memory
comes from any mixer that ``produces_memory`` (mingru, minlstm, gla, ...), wired by
the ``Stack`` depth module through ``ModelConfig.memory_layer``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import StatelessMixer
from .registry import register


class GroupRMSNorm(nn.Module):
    """RMSNorm within each of ``groups`` equal groups of channels, one weight per channel: (..., dim) -> (..., dim)."""

    def __init__(self, dim: int, groups: int, eps: float = 1e-5):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.unflatten(-1, (self.groups, -1))
        grouped = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + self.eps)
        return grouped.flatten(-2) * self.weight


@register("gmu", kind="token", paper="Ren et al. 2025, SambaY (Gated Memory Unit)", state="none (reads a shared memory)",
          tiny={"memory_dim": 12})
class GatedMemoryUnit(StatelessMixer):
    reads_memory = True

    def __init__(self, d_model: int, memory_dim: int | None = None, norm_groups: int | None = None):
        super().__init__(d_model)
        self.memory_dim = memory_dim or d_model
        self.in_proj = nn.Linear(d_model, self.memory_dim, bias=False)
        self.out_proj = nn.Linear(self.memory_dim, d_model, bias=False)
        self.norm_groups = norm_groups
        if norm_groups is not None:
            if self.memory_dim % norm_groups:
                raise ValueError(f"norm_groups={norm_groups} must divide memory_dim={self.memory_dim}")
            self.norm = GroupRMSNorm(self.memory_dim, norm_groups)

    def _gate(self, x, memory):
        self.check_memory(memory, x)
        gated = F.silu(self.in_proj(x)) * memory.to(x.dtype)
        if self.norm_groups is not None:
            gated = self.norm(gated)
        return self.out_proj(gated)

    def mix(self, x, state, memory=None):
        return self._gate(x, memory), state

    def mix_step(self, x_t, state, memory=None):
        return self._gate(x_t, memory), state
