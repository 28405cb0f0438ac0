"""The public functions :func:`diag_scan` and :func:`diag_step`: input checks, then a backend.

The diagonal gated linear recurrence, the core of vector-state units:

    h_t = a_t * h_{t-1} + b_t,    a_t = exp(log_a_t) in (0, 1],    element-wise,

as used by minGRU/minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", eq. 4),
HGRN, PGN and RWKV-4 style units. The decay is passed in log space so that long
products of gates never underflow and its gradient never divides by ``a``.

Backends (``backend=``), one module each in this package:

- ``reference`` (``reference.py``): the plain loop over time; the ground truth of the tests.
- ``chunk`` (``chunk.py``): pure PyTorch, parallel over time (a Kogge-Stone scan
  of (log A, h) pairs inside 64-step chunks, chunks carried by the same scan).
- ``cpu`` (``cpu.py``): a compiled C++ kernel (``diag_scan.cpp``): sequential in
  time, vectorised over channels, parallel over batch x channel blocks, float32
  accumulation for float16/bfloat16; fused reverse-scan backward.
- ``auto``: ``cpu`` on CPU tensors when the kernel is built, else ``chunk``.
"""

from __future__ import annotations

import torch

from .. import _checks
from ..backends import resolve
from .chunk import diag_scan_chunk
from .cpu import diag_scan_cpu
from .reference import diag_scan_reference


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

    Empty inputs (B, T or D = 0) give an empty ``h`` and pass the state through
    (``h0``, or zeros when None) without running a backend.
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
    if log_a.numel() == 0:  # B, T or D is 0: no backend runs; the state passes through
        h_last = h0.to(acc) if h0 is not None else log_a.new_zeros(state_shape, dtype=acc)
        return tuple(_checks.joined_to_inputs(out, log_a, b, h0) for out in (b.new_empty(b.shape), h_last))
    if name != "cpu":  # the cpu kernel checks the gates inside its single pass
        _checks.check_log_gate("log_a", log_a)

    flat_la = log_a.reshape(B, T, -1)
    flat_b = b.reshape(B, T, -1)
    flat_h0 = None if h0 is None else h0.reshape(B, -1)
    if name == "reference":
        h, h_last = diag_scan_reference(flat_la, flat_b, flat_h0)
    elif name == "chunk":
        h, h_last = diag_scan_chunk(flat_la, flat_b, flat_h0)
    else:
        h, h_last = diag_scan_cpu(flat_la, flat_b, flat_h0)
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
