"""The ``cpu`` backend of ``diag_scan``: the compiled C++ kernel in ``diag_scan.cpp``.

    h_t = exp(log_a_t) * h_{t-1} + b_t

Sequential in time, vectorised over channels, parallel over batch x channel
blocks, float32 accumulation for float16/bfloat16; fused reverse-scan backward;
the gate check (finite and <= 0) is fused into the forward pass. The kernel is
built on first use and cached by ``recurlab.ops._cpu_ext``; call this only when
``_cpu_ext.available()`` is True (``recurlab.ops.backends.resolve`` sees to it).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def diag_scan_cpu(
    log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The compiled kernel: log_a, b (B, T, D) CPU tensors, h0 (B, D) or None ->
    h (B, T, D) in b's dtype, h_last (B, D) in float32 (float64 for float64 inputs).

    Raises ValueError (from inside the kernel) when a gate is not finite or > 0.
    """
    return _CpuScan.apply(log_a, b, h0)


class _CpuScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, log_a, b, h0):
        h, h_last = torch.ops.recurlab.diag_scan_fwd(log_a, b, h0)
        ctx.save_for_backward(log_a, h, h0)
        ctx.set_materialize_grads(False)
        return h, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h, grad_last):
        log_a, h, h0 = ctx.saved_tensors
        grad_log_a, grad_b, grad_h0 = torch.ops.recurlab.diag_scan_bwd(grad_h, grad_last, log_a, h, h0)
        return grad_log_a, grad_b, grad_h0.to(h0.dtype) if h0 is not None else None
