"""The ``cpu`` backend of ``diag_scan``: the compiled C++ kernel in ``diag_scan.cpp``.

    h_t = exp(log_a_t) * h_{t-1} + b_t

Sequential in time, vectorised over channels, parallel over batch x channel
blocks, float32 accumulation for float16/bfloat16; fused reverse-scan backward;
the gate check (finite and <= 0) is fused into the forward pass. The kernel is
built on first use and cached by ``recurlab.ops._cpu_ext``; call this only when
``_cpu_ext.available()`` is True (``recurlab.ops.backends.resolve`` sees to it).

The kernel is a torch custom op, ``torch.ops.recurlab.diag_scan_cpu`` (defined
here with ``torch.library.custom_op``, calling the C++ functions
``recurlab::diag_scan_fwd`` / ``diag_scan_bwd``), with a fake (shape-only)
implementation and an autograd formula registered, so ``torch.compile`` puts it
in a graph as one opaque node (no graph break) and ``torch.func`` can
differentiate through it. The op is defined at import, before the kernel is
built; it is called only after ``_cpu_ext.available()`` has loaded it.
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import _checks


def diag_scan_cpu(
    log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The compiled kernel: log_a, b (B, T, D) CPU tensors, h0 (B, D) or None ->
    h (B, T, D) in b's dtype, h_last (B, D) in float32 (float64 for float64 inputs).

    Raises ValueError (from inside the kernel) when a gate is not finite or > 0.
    """
    return _diag_scan_cpu_op(log_a, b, h0)


@torch.library.custom_op("recurlab::diag_scan_cpu", mutates_args=(), device_types="cpu")
def _diag_scan_cpu_op(
    log_a: torch.Tensor, b: torch.Tensor, h0: Optional[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ops.recurlab.diag_scan_fwd(log_a, b, h0)


@_diag_scan_cpu_op.register_fake
def _(log_a, b, h0):  # contiguous, like the kernel's outputs
    return log_a.new_empty(log_a.shape), log_a.new_empty(
        (log_a.shape[0], log_a.shape[2]), dtype=_checks.accumulation_dtype(log_a.dtype))


@torch.library.custom_op("recurlab::diag_scan_cpu_backward", mutates_args=(), device_types="cpu")
def _diag_scan_cpu_backward_op(
    grad_h: torch.Tensor, grad_last: torch.Tensor, log_a: torch.Tensor, h: torch.Tensor, h0: Optional[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_log_a, grad_b, grad_h0) by the kernel's fused reverse scan; grad_h0 in the accumulation dtype."""
    return torch.ops.recurlab.diag_scan_bwd(grad_h, grad_last, log_a, h, h0)


@_diag_scan_cpu_backward_op.register_fake
def _(grad_h, grad_last, log_a, h, h0):
    B, _, D = log_a.shape
    return log_a.new_empty(log_a.shape), log_a.new_empty(log_a.shape), log_a.new_empty(
        (B, D), dtype=_checks.accumulation_dtype(log_a.dtype))


def _setup_context(ctx, inputs, output):
    log_a, _, h0 = inputs
    h, _ = output
    ctx.save_for_backward(log_a, h, h0)


def _backward(ctx, grad_h, grad_last):
    log_a, h, h0 = ctx.saved_tensors
    grad_log_a, grad_b, grad_h0 = _diag_scan_cpu_backward_op(grad_h, grad_last, log_a, h, h0)
    return grad_log_a, grad_b, grad_h0.to(h0.dtype) if h0 is not None else None


_diag_scan_cpu_op.register_autograd(_backward, setup_context=_setup_context)
