"""The public functions :func:`gla` and :func:`gla_step`: input checks, then a backend.

Gated linear attention, a matrix-state gated linear recurrence:

    S_t = diag(alpha_t) S_{t-1} + k_t v_t^T,      o_t = scale * S_t^T q_t,

with alpha_t = exp(log_alpha_t) in (0, 1]^K (Yang et al. 2023, "Gated Linear
Attention Transformers with Hardware-Efficient Training", eqs. 1-3). One decay
per head (log_alpha of shape (B, T, H, 1)) gives RetNet / Mamba-2 style decay.

Backends (``backend=``), one module each in this package:

- ``reference`` (``reference.py``): the recurrence step by step; the ground truth of the tests.
- ``chunk`` (``chunk.py``): the chunkwise form of Yang et al. (sec. 4), direct or
  with secondary chunking, chosen per call from the gates (see that module).
  Everything runs in float32 (float64 for float64 inputs).
- ``auto``: ``chunk``.
"""

from __future__ import annotations

import torch

from .. import _checks
from ..backends import resolve
from .chunk import gla_chunk
from .reference import gla_reference


def gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_alpha: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = True,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated linear attention over a whole sequence.

    Args:
        q, k: (B, T, H, K) queries and keys.
        v: (B, T, H, V) values, same dtype as q and k.
        log_alpha: (B, T, H, K) key-wise or (B, T, H, 1) head-wise log decay;
            finite and <= 0; any floating dtype.
        scale: output scale; K ** -0.5 if None.
        initial_state: (B, H, K, V) state to start from; zeros if None.
        output_final_state: return the final state (else None).
        backend: "auto", "reference" or "chunk".

    Returns:
        o: (B, T, H, V) in the dtype of v.
        S_last: (B, H, K, V) float32 (float64 for float64 inputs), or None.

    Empty inputs (B, T, H, K or V = 0) run no backend: the state passes through
    (``initial_state``, or zeros) and o is empty (zeros when only K = 0).
    """
    B, T, H, K, V = _check_inputs(q, k, v, log_alpha, initial_state, time_axis=True)
    name = resolve("gla", backend, q.device)
    acc = _checks.accumulation_dtype(v.dtype)
    if 0 in (B, T, H, K, V):  # no backend runs; the state passes through
        # o_t = S_t^T q_t is a sum over K terms: zeros when K = 0, empty otherwise
        o = v.new_zeros(B, T, H, V)
        state = initial_state.to(acc) if initial_state is not None else q.new_zeros(B, H, K, V, dtype=acc)
        o, state = (_checks.joined_to_inputs(x, q, k, v, log_alpha, initial_state) for x in (o, state))
        return o, state if output_final_state else None
    scale = _default_scale(K) if scale is None else float(scale)
    _checks.check_log_gate("log_alpha", log_alpha)
    args = [x.to(acc) for x in (q, k, v, log_alpha)]
    state = None if initial_state is None else initial_state.to(acc)
    if name == "reference":
        o, state = gla_reference(*args, scale, state)
    else:
        o, state = gla_chunk(*args, scale, state)
    return o.to(v.dtype), state if output_final_state else None


def gla_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    log_alpha_t: torch.Tensor,
    state: torch.Tensor | None = None,
    *,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of :func:`gla`: q_t, k_t (B, H, K), v_t (B, H, V), log_alpha_t
    (B, H, K) or (B, H, 1), state (B, H, K, V). Returns (o_t (B, H, V), new state)."""
    B, _, H, K, V = _check_inputs(q_t, k_t, v_t, log_alpha_t, state, time_axis=False)
    _checks.check_log_gate("log_alpha_t", log_alpha_t)
    scale = _default_scale(K) if scale is None else float(scale)
    out_dtype, acc = v_t.dtype, _checks.accumulation_dtype(v_t.dtype)
    q_t, k_t, v_t, log_alpha_t = (x.to(acc) for x in (q_t, k_t, v_t, log_alpha_t))
    new_state = k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
    if state is not None:
        new_state = torch.exp(log_alpha_t).unsqueeze(-1) * state.to(acc) + new_state
    o_t = scale * torch.einsum("bhk,bhkv->bhv", q_t, new_state)
    return o_t.to(out_dtype), new_state


def _default_scale(K: int) -> float:
    """K ** -0.5; with K = 0 every output is an empty sum (zero) and any scale will do."""
    return K**-0.5 if K > 0 else 1.0


def _check_inputs(q, k, v, log_alpha, state, *, time_axis: bool):
    t = "T, " if time_axis else ""
    rank = 4 if time_axis else 3
    sfx = "" if time_axis else "_t"
    _checks.check_tensor(f"q{sfx}", q, ranks=(rank,), layout=f"(B, {t}H, K)")
    _checks.check_tensor(f"k{sfx}", k, ranks=(rank,), layout=f"(B, {t}H, K)")
    _checks.check_tensor(f"v{sfx}", v, ranks=(rank,), layout=f"(B, {t}H, V)")
    _checks.check_tensor(f"log_alpha{sfx}", log_alpha, ranks=(rank,), layout=f"(B, {t}H, K) or (B, {t}H, 1)")
    _checks.check_shape(f"k{sfx}", k, q.shape, f"(B, {t}H, K) like q{sfx}")
    lead = tuple(q.shape[:-1])
    _checks.check_shape(f"v{sfx}", v, (*lead, v.shape[-1]), f"(B, {t}H, V) with (B, {t}H) of q{sfx}")
    if log_alpha.shape[-1] != 1:
        _checks.check_shape(f"log_alpha{sfx}", log_alpha, q.shape, f"(B, {t}H, K) like q{sfx} (or last dim 1)")
    else:
        _checks.check_shape(f"log_alpha{sfx}", log_alpha, (*lead, 1), f"(B, {t}H, 1) (or (B, {t}H, K) like q{sfx})")
    for name, x in ((f"k{sfx}", k), (f"v{sfx}", v)):
        _checks.check_same_dtype(name, x, f"q{sfx}", q)
    for name, x in ((f"k{sfx}", k), (f"v{sfx}", v), (f"log_alpha{sfx}", log_alpha)):
        _checks.check_same_device(name, x, f"q{sfx}", q)
    B, H, K, V = q.shape[0], q.shape[-2], q.shape[-1], v.shape[-1]
    T = q.shape[1] if time_axis else 1
    if state is not None:
        name = "initial_state" if time_axis else "state"
        _checks.check_tensor(name, state, ranks=(4,), layout="(B, H, K, V)")
        _checks.check_shape(name, state, (B, H, K, V), "(B, H, K, V)")
        _checks.check_same_device(name, state, f"q{sfx}", q)
    return B, T, H, K, V
