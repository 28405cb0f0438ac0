"""The diagonal gated linear recurrence, the core of vector-state units.

    h_t = a_t * h_{t-1} + b_t,    a_t = exp(log_a_t) in (0, 1],    element-wise,

as used by minGRU/minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", eq. 4),
HGRN, PGN and RWKV-4 style units. The decay is passed in log space so that long
products of gates never underflow and its gradient never divides by ``a``.

Backends (``backend=``):

- ``reference``: the plain loop over time; the ground truth of the tests.
- ``chunk``: pure PyTorch, parallel over time. Within chunks of 64 steps a
  Kogge-Stone scan combines (log A, h) pairs: log-space cumulative sums of the
  gates, so every factor applied is exp(<= 0) and nothing overflows for gates
  near 0 or near 1, and b enters linearly (never through a log), so negative b
  is exact. Chunk end states are carried between chunks by the same scan,
  applied recursively to the chunk summaries. The backward is the reverse scan
  run by the same forward code on time-reversed inputs.
- ``cpu``: a compiled C++ kernel (``csrc/diag_scan.cpp``): sequential in time,
  vectorised over channels, parallel over batch x channel blocks, float32
  accumulation for float16/bfloat16; fused reverse-scan backward.
- ``auto``: ``cpu`` on CPU tensors when the kernel is built, else ``chunk``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import _checks
from .backends import resolve

CHUNK_SIZE = 64


def diag_scan(
    log_a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor | None = None,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run h_t = exp(log_a_t) * h_{t-1} + b_t over the time axis.

    Args:
        log_a: (B, T, D) or (B, T, H, K) log of the gates; finite and <= 0.
        b: the input, same shape and dtype as ``log_a``.
        h0: initial state (B, D) or (B, H, K), any floating dtype; zeros if None.
        backend: "auto", "reference", "chunk" or "cpu".

    Returns:
        h: every state, shape and dtype of ``b``.
        h_last: the final state (B, D) or (B, H, K) in float32 (float64 for
            float64 inputs); pass it as ``h0`` to continue the sequence.
    """
    _checks.check_tensor("log_a", log_a, ranks=(3, 4), layout="(B, T, D) or (B, T, H, K)")
    _checks.check_tensor("b", b, ranks=(3, 4), layout="(B, T, D) or (B, T, H, K)")
    layout = "(B, T, D)" if log_a.dim() == 3 else "(B, T, H, K)"
    _checks.check_shape("b", b, log_a.shape, f"{layout} like log_a")
    _checks.check_same_dtype("b", b, "log_a", log_a)
    _checks.check_same_device("b", b, "log_a", log_a)
    state_shape = (log_a.shape[0], *log_a.shape[2:])
    if h0 is not None:
        _checks.check_tensor("h0", h0, ranks=(log_a.dim() - 1,), layout=layout.replace("T, ", ""))
        _checks.check_shape("h0", h0, state_shape, layout.replace("T, ", ""))
        _checks.check_same_device("h0", h0, "log_a", log_a)
    name = resolve("diag_scan", backend, log_a.device)
    acc = _checks.accumulation_dtype(b.dtype)
    B, T = log_a.shape[:2]
    if T == 0:
        h_last = h0.to(acc) if h0 is not None else log_a.new_zeros(state_shape, dtype=acc)
        return b.new_empty(b.shape), h_last
    if name != "cpu":  # the cpu kernel checks the gates inside its single pass
        _checks.check_log_gate("log_a", log_a)

    flat_la = log_a.reshape(B, T, -1)
    flat_b = b.reshape(B, T, -1)
    flat_h0 = None if h0 is None else h0.reshape(B, -1)
    if name == "reference":
        h, h_last = _reference_scan(flat_la, flat_b, flat_h0)
    elif name == "chunk":
        h, h_last = _ChunkScan.apply(flat_la.to(acc), flat_b.to(acc), None if flat_h0 is None else flat_h0.to(acc))
        h = h.to(b.dtype)
    else:
        h, h_last = _CpuScan.apply(flat_la, flat_b, flat_h0)
    return h.reshape(b.shape), h_last.reshape(state_shape)


def diag_step(
    log_a_t: torch.Tensor, b_t: torch.Tensor, h: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of the recurrence: the decoding form of :func:`diag_scan`.

    Args:
        log_a_t, b_t: (B, D) or (B, H, K), same shape and dtype.
        h: the state carried so far (B, D) or (B, H, K); zeros if None.

    Returns:
        h_t in the dtype of ``b_t`` and the new state in float32 (float64 for
        float64 inputs), equal to one more step of ``diag_scan``.
    """
    _checks.check_tensor("log_a_t", log_a_t, ranks=(2, 3), layout="(B, D) or (B, H, K)")
    _checks.check_tensor("b_t", b_t, ranks=(2, 3), layout="(B, D) or (B, H, K)")
    _checks.check_shape("b_t", b_t, log_a_t.shape, "like log_a_t")
    _checks.check_same_dtype("b_t", b_t, "log_a_t", log_a_t)
    _checks.check_same_device("b_t", b_t, "log_a_t", log_a_t)
    if h is not None:
        _checks.check_tensor("h", h, ranks=(log_a_t.dim(),), layout="like log_a_t")
        _checks.check_shape("h", h, log_a_t.shape, "like log_a_t")
        _checks.check_same_device("h", h, "log_a_t", log_a_t)
    _checks.check_log_gate("log_a_t", log_a_t)
    acc = _checks.accumulation_dtype(b_t.dtype)
    h_new = b_t.to(acc)
    if h is not None:
        h_new = torch.exp(log_a_t.to(acc)) * h.to(acc) + h_new
    return h_new.to(b_t.dtype), h_new


# --------------------------------------------------------------------------- reference


def _reference_scan(log_a, b, h0):
    """The plain loop, (B, T, D). unbind + stack keeps the backward O(T)."""
    acc = _checks.accumulation_dtype(b.dtype)
    h = h0.to(acc) if h0 is not None else b.new_zeros((b.shape[0], b.shape[2]), dtype=acc)
    states = []
    for log_a_t, b_t in zip(log_a.to(acc).unbind(1), b.to(acc).unbind(1)):
        h = torch.exp(log_a_t) * h + b_t
        states.append(h)
    return torch.stack(states, 1).to(b.dtype), h


# --------------------------------------------------------------------------- chunk


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
    @staticmethod
    def forward(ctx, log_a, b, h0):
        h, h_last = _chunk_scan_forward(log_a, b, h0)
        ctx.save_for_backward(log_a, h, h0)
        ctx.set_materialize_grads(False)
        return h, h_last

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        log_a, h, h0 = ctx.saved_tensors
        grad_log_a, grad_b, grad_h0 = _reverse_scan_gradients(_chunk_scan_forward, log_a, h, h0, grad_h, grad_last)
        return grad_log_a, grad_b, grad_h0 if h0 is not None else None


# --------------------------------------------------------------------------- cpu


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
