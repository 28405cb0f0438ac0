"""Gated Memory Unit (GMU) of SambaY (Ren et al. 2025, "Decoder-Hybrid-Decoder Architecture for
Efficient Reasoning with Long Generation", eq. 4; the authors' ArchScale code):

    y_t = W_out( SiLU(W_in x_t) ⊙ m_t )                      (no biases)
    y_t = W_out( GroupRMSNorm(m_t ⊙ SiLU(W_in x_t)) )        (norm_groups set: for matrix-state memories)

m_t is a *memory read-out* shared from an earlier layer: in SambaY the scan
output of the last self-decoder SSM layer, before its output gate and
projection. Every GMU of the cross-decoder reads the same m, so the
cross-decoder adds no recurrent state and no KV cache: a GMU layer is
stateless and costs O(d_model * memory_dim) per token. In recurlab the memory
comes from any mixer that ``produces_memory`` (mingru, minlstm, gla, ...), wired by
the ``Stack`` depth module through ``ModelConfig.memory_layer``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import StatelessMixer
from .registry import register


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
            self.norm = nn.RMSNorm(self.memory_dim // norm_groups)

    def _gate(self, x, memory):
        self.check_memory(memory, x)
        gated = F.silu(self.in_proj(x)) * memory.to(x.dtype)
        if self.norm_groups is not None:
            gated = self.norm(gated.unflatten(-1, (self.norm_groups, -1))).flatten(-2)
        return self.out_proj(gated)

    def mix(self, x, state, memory=None):
        return self._gate(x, memory), state

    def mix_step(self, x_t, state, memory=None):
        return self._gate(x_t, memory), state
