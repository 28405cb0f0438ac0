"""The ``chunk`` backend of ``diag_scan``: a parallel scan over time in pure PyTorch.

    h_t = exp(log_a_t) * h_{t-1} + b_t

Within chunks of 64 steps a Kogge-Stone scan combines (log A, h) pairs: log-space
cumulative sums of the gates, so every factor applied is exp(<= 0) and nothing
overflows for gates near 0 or near 1, and b enters linearly (never through a log),
so negative b is exact. Chunk end states are carried between chunks by the same
scan, applied recursively to the chunk summaries. The backward is the reverse scan
run by the same forward code on time-reversed inputs. Meant for accelerators, and
the CPU fallback when the compiled kernel is unavailable.
"""

from __future__ import annotations

import torch

from .. import _checks

CHUNK_SIZE = 64


def diag_scan_chunk(
    log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The parallel scan: log_a, b (B, T, D), h0 (B, D) or None -> h (B, T, D) in b's dtype, h_last (B, D).

    Runs in float32 (float64 for float64 inputs); h_last stays in that dtype.
    """
    acc = _checks.accumulation_dtype(b.dtype)
    h, h_last = _ChunkScan.apply(log_a.to(acc), b.to(acc), None if h0 is None else h0.to(acc))
    return h.to(b.dtype), h_last


def _chunk_scan_forward(log_a, b, h0, chunk_size: int = CHUNK_SIZE):
    """Parallel scan, (B, T, D) in the accumulation dtype. Differentiable torch ops only."""
    B, T, D = b.shape
    C = min(chunk_size, T)
    pad = (-T) % C
    if pad:  # padded steps have a = 1 and b = 0: the state passes through unchanged
        log_a = torch.nn.functional.pad(log_a, (0, 0, 0, pad))
        b = torch.nn.functional.pad(b, (0, 0, 0, pad))
    N = (T + pad) // C
    cum_log_a = log_a.reshape(B, N, C, D)
    h = b.reshape(B, N, C, D)
    shift = 1
    while shift < C:  # Kogge-Stone: fold in the partial result `shift` steps earlier
        h = torch.cat([h[:, :, :shift], h[:, :, shift:] + torch.exp(cum_log_a[:, :, shift:]) * h[:, :, :-shift]], 2)
        cum_log_a = torch.cat([cum_log_a[:, :, :shift], cum_log_a[:, :, shift:] + cum_log_a[:, :, :-shift]], 2)
        shift *= 2
    # now cum_log_a[:, j, t] = sum of log_a over chunk j up to t, h = scan of chunk j from a zero state
    if N > 1 or h0 is not None:
        if N > 1:
            chunk_ends, _ = _chunk_scan_forward(cum_log_a[:, :, -1], h[:, :, -1], h0, chunk_size)
            first = h0.unsqueeze(1) if h0 is not None else chunk_ends.new_zeros(B, 1, D)
            carry_in = torch.cat([first, chunk_ends[:, :-1]], 1)
        else:
            carry_in = h0.unsqueeze(1)
        h = h + torch.exp(cum_log_a) * carry_in.unsqueeze(2)
    h = h.reshape(B, N * C, D)[:, :T]
    return h, h[:, T - 1]


def _reverse_scan_gradients(forward, log_a, h, h0, grad_h, grad_last):
    """Gradients of a diagonal scan from any forward implementation.

    g_t = dL/dh_t (total) obeys g_t = grad_h_t + a_{t+1} g_{t+1}, g_{T-1} =
    grad_h_{T-1} + grad_last: a forward scan in reversed time with gates
    shifted by one. Then dL/db_t = g_t, dL/dlog_a_t = g_t a_t h_{t-1} and
    dL/dh0 = a_0 g_0.
    """
    B, T, D = log_a.shape
    if grad_h is None:
        grad_h = torch.zeros_like(h)
    reversed_log_a = torch.cat([log_a[:, 1:], log_a.new_zeros(B, 1, D)], 1).flip(1)
    g, _ = forward(reversed_log_a, grad_h.flip(1), grad_last)
    g = g.flip(1)
    a = torch.exp(log_a)
    first = h0.unsqueeze(1) if h0 is not None else h.new_zeros(B, 1, D)
    h_prev = torch.cat([first, h[:, :-1]], 1)
    return g * a * h_prev, g, g[:, 0] * a[:, 0]


class _ChunkScan(torch.autograd.Function):
    """Forward by the parallel scan, backward by the same scan on reversed time. Written with a
    separate ``setup_context`` so that ``torch.func`` transforms (and torch.compile) accept it."""

    @staticmethod
    def forward(log_a, b, h0):
        return _chunk_scan_forward(log_a, b, h0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        log_a, _, h0 = inputs
        ctx.save_for_backward(log_a, output[0], h0)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        log_a, h, h0 = ctx.saved_tensors
        grad_log_a, grad_b, grad_h0 = _reverse_scan_gradients(_chunk_scan_forward, log_a, h, h0, grad_h, grad_last)
        return grad_log_a, grad_b, grad_h0 if h0 is not None else None
