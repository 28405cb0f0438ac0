"""The ``chunk`` backend of ``gla``: the chunkwise form with a hand-written backward.

    S_t = diag(alpha_t) S_{t-1} + k_t v_t^T,      o_t = scale * S_t^T q_t

The chunkwise form of Yang et al. 2023 ("Gated Linear Attention Transformers with
Hardware-Efficient Training", sec. 4). The sequence is cut into chunks; with G_t
the in-chunk cumulative sum of log_alpha, the chunk's contribution to the state
(k_s * exp(G_end - G_s)) v_s^T is passed from chunk to chunk, queries read the
incoming state as (q_t * exp(G_t)) S_in, and the intra-chunk scores
A[t, s] = sum_k q_t k_s exp(G_t - G_s) (s <= t) multiply v. Two forms, chosen
per call from the gates:

- direct (the usual case): the longest chunk of 64, 32, 16, 8 or 4 steps over
  which no channel decays by more than e^-20 (GLA's gates decay by
  e^-0.04..e^-0.3 per step, so 64). Then exp(G_t - G_s) = exp(G_t) * exp(-G_s)
  with both factors inside [e^-20, e^20] (relative error < 3e-6), and all
  intra-chunk scores are one matmul. Forward and backward are written out
  (``_DirectChunkGLA``): 5 + 9 batched matmuls and a loop of T / C state
  updates, no autograd graph of element-wise temporaries.
- extreme decay, past e^-5 per step ("secondary chunking", 64-step chunks of
  16-step sub-chunks): between sub-chunks i > j the decay is split at r, the
  last step of sub-chunk j, into (q_t * exp(G_t - G_r)) . (k_s * exp(G_r - G_s)),
  both exponents <= 0, so one matmul per pair never overflows however strong
  the decay; inside a sub-chunk the exact factor is formed element-wise (and
  recomputed in the backward rather than stored). Short decays are summed from
  their own start (never as a difference of long cumulative sums), so the
  gradient with respect to log_alpha stays accurate. Slower: it forms
  (B, H, T, 16, K) temporaries.

Everything runs in the dtype it is given (the dispatcher passes float32, or
float64 for float64 inputs).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .. import _checks
from ..diag_scan import diag_scan

CHUNK_SIZE = 64
SUB_CHUNK_SIZE = 16
MIN_DIRECT_CHUNK_SIZE = 4
# Chunks whose total decay stays under this (in every channel) take the direct
# intra-chunk form exp(G_t) * exp(-G_s); stronger decay takes secondary chunking.
DIRECT_MAX_DECAY = 20.0


def gla_chunk(q, k, v, log_alpha, scale, state):
    """The chunkwise form: q, k (B, T, H, K), v (B, T, H, V), log_alpha (B, T, H, K or 1),
    state (B, H, K, V) or None, all in one accumulation dtype -> o (B, T, H, V), S_last (B, H, K, V).

    Under torch.compile it is one opaque custom op, ``torch.ops.recurlab.gla_chunk``: the chunk
    length and form are chosen from the gate values, which a graph cannot branch on.
    """
    if _checks._is_compiling():
        return _gla_chunk_op(q, k, v, log_alpha, state, float(scale))
    return _gla_chunk_eager(q, k, v, log_alpha, scale, state)


def _gla_chunk_eager(q, k, v, log_alpha, scale, state, *, checkpoint_scores: bool = True,
                     scan_backend: str = "auto"):
    T = q.shape[1]
    C, direct = _choose_chunk(log_alpha)
    q, k, v, log_alpha = (_to_chunks(x, C) for x in (q, k, v, log_alpha))
    if direct:
        o, S_last = _DirectChunkGLA.apply(q, k, v, log_alpha, state, scale)
    else:
        o, S_last = _strong_decay_chunk_gla(q, k, v, log_alpha, state, scale, checkpoint_scores, scan_backend)
    return _from_chunks(o, T), S_last


def _to_chunks(x: torch.Tensor, C: int) -> torch.Tensor:
    """(B, T, H, D) -> (B, H, N, C, D), the layout for matmuls; padded steps are 0 (q = k = v = 0, alpha = 1)."""
    B, T, H, D = x.shape
    pad = (-T) % C
    return F.pad(x.transpose(1, 2), (0, 0, 0, pad)).reshape(B, H, (T + pad) // C, C, D)


def _from_chunks(y: torch.Tensor, T: int) -> torch.Tensor:
    """(B, H, N, C, D) -> (B, T, H, D), the padding dropped."""
    B, H, N, C, D = y.shape
    return y.reshape(B, H, N * C, D)[:, :, :T].transpose(1, 2)


def _choose_chunk(log_alpha: torch.Tensor) -> tuple[int, bool]:
    """The chunk length and whether the direct form applies.

    The longest of 64, 32, 16, 8, 4 steps (not beyond the sequence rounded up
    to 16) over which no channel decays by more than DIRECT_MAX_DECAY takes the
    direct form. Short chunks cost more small matmuls and state updates, but far
    less than secondary chunking; only gates that decay by more than e^-20 over
    4 steps (e^-5 per step) take 64-step chunks with secondary chunking.
    """
    T = log_alpha.shape[1]
    longest = min(CHUNK_SIZE, -(-T // SUB_CHUNK_SIZE) * SUB_CHUNK_SIZE)
    padded = F.pad(log_alpha.detach(), (0, 0, 0, 0, 0, (-T) % longest))
    C = longest
    while C >= MIN_DIRECT_CHUNK_SIZE:
        decay = padded.reshape(padded.shape[0], -1, C, *padded.shape[2:]).sum(2)
        if _max_chunk_decay(decay) <= DIRECT_MAX_DECAY:
            return C, True
        C //= 2
    return longest, False


class _DirectChunkGLA(torch.autograd.Function):
    """Chunkwise GLA when no chunk decays by more than e^-20 (forward and hand-written backward).

    Inputs in (B, H, N, C, *) layout. Per chunk, with G the in-chunk cumulative
    log decay, E = exp(G) and scale folded into the queries:

        Q = scale * q * E,   K_in = k / E,   K_end = K_in * exp(G_end)
        U_j = K_end^T v                      (what chunk j adds to the state)
        S_in[j + 1] = exp(G_end_j) * S_in[j] + U_j       (state passing, j = 0..N-1)
        o = Q S_in + tril(Q K_in^T) v

    E and exp(G_end) lie in [e^-20, 1], so every factor is well inside float32's
    range. The backward runs the same matmuls transposed and the state passing
    in reverse; it is written out rather than left to autograd to avoid a dozen
    element-wise passes over (B, H, T, K) tensors.
    """

    @staticmethod
    def forward(ctx, q, k, v, log_alpha, state, scale):
        o, S, saved = _direct_forward(q, k, v, log_alpha, state, scale)
        ctx.save_for_backward(*saved)
        ctx.scale, ctx.has_state = scale, state is not None
        ctx.set_materialize_grads(False)
        return o, S

    @staticmethod
    def backward(ctx, d_o, d_S_last):
        grads = _direct_backward(ctx.saved_tensors, ctx.scale, d_o, d_S_last)
        return (*grads[:4], grads[4] if ctx.has_state else None, None)


def _direct_forward(q, k, v, log_alpha, state, scale):
    """The direct form's forward (see :class:`_DirectChunkGLA`) -> o, S_last and the tensors its
    backward needs."""
    B, H, N, C, K = q.shape
    V = v.shape[-1]
    lower = _triangle(C, q, lower=True)
    G = lower @ log_alpha  # (B, H, N, C, K or 1)
    E = torch.exp(G)
    decay_end = E[:, :, :, -1]  # (B, H, N, K or 1) = exp(G_end)
    Q = q * (scale * E)
    K_in = k / E
    K_end = K_in * decay_end.unsqueeze(3)
    U = K_end.transpose(-1, -2) @ v  # (B, H, N, K, V)
    S_in = q.new_empty(B, H, N, K, V)
    S = state if state is not None else q.new_zeros(B, H, K, V)
    for j in range(N):  # N = T / C sequential steps on (B, H, K, V) states
        S_in[:, :, j] = S
        S = torch.addcmul(U[:, :, j], decay_end[:, :, j].unsqueeze(-1), S)
    A = (Q @ K_in.transpose(-1, -2)).tril_()
    o = torch.baddbmm((Q @ S_in).flatten(0, 2), A.flatten(0, 2), v.flatten(0, 2)).view(B, H, N, C, V)
    return o, S, (v, E, decay_end, Q, K_in, S_in, A)


def _direct_backward(saved, scale, d_o, d_S_last):
    """The direct form's written-out backward -> dq, dk, dv, d_log_alpha, d_state (all in chunk layout)."""
    v, E, decay_end, Q, K_in, S_in, A = saved
    B, H, N, C, K = Q.shape
    V = v.shape[-1]
    if d_o is None:
        d_o = torch.zeros_like(Q[..., :1]).expand(B, H, N, C, V)
    flat = lambda x: x.flatten(0, 2)  # noqa: E731
    dA = (d_o @ v.transpose(-1, -2)).tril_()
    dv = A.transpose(-1, -2) @ d_o
    dQ = torch.baddbmm(flat(d_o @ S_in.transpose(-1, -2)), flat(dA), flat(K_in)).view_as(Q)
    dK_in = dA.transpose(-1, -2) @ Q
    dS_in = Q.transpose(-1, -2) @ d_o  # (B, H, N, K, V)
    # state passing in reverse: S_out_j = exp(G_end_j) * S_in_j + U_j
    dU = torch.empty_like(S_in)
    d_decay_end = torch.empty(B, H, N, K, dtype=Q.dtype, device=Q.device)
    dS = d_S_last if d_S_last is not None else Q.new_zeros(B, H, K, V)
    for j in reversed(range(N)):
        dU[:, :, j] = dS
        d_decay_end[:, :, j] = (dS * S_in[:, :, j]).sum(-1)
        dS = torch.addcmul(dS_in[:, :, j], decay_end[:, :, j].unsqueeze(-1), dS)
    K_end = K_in * decay_end.unsqueeze(3)
    dK_end = v @ dU.transpose(-1, -2)  # (B, H, N, C, K)
    dv = torch.baddbmm(flat(dv), flat(K_end), flat(dU)).view_as(v)
    dK_in = torch.addcmul(dK_in, dK_end, decay_end.unsqueeze(3))
    d_decay_end = d_decay_end + (dK_end * K_in).sum(3)
    dq = dQ * (scale * E)
    dk = dK_in / E
    dG = dQ * Q - dK_in * K_in  # dL/dE * E
    if E.shape[-1] == 1:  # head-wise decay broadcast over K
        dG = dG.sum(-1, keepdim=True)
        d_decay_end = d_decay_end.sum(-1, keepdim=True)
    dG[:, :, :, -1] += d_decay_end * decay_end
    d_log_alpha = _triangle(C, Q, lower=True).transpose(0, 1) @ dG
    return dq, dk, dv, d_log_alpha, dS


def _strong_decay_chunk_gla(q, k, v, log_alpha, state, scale, checkpoint_scores: bool = True,
                            scan_backend: str = "auto"):
    """Chunkwise GLA for any decay, by autograd: exact intra-chunk decay factors
    (head-wise) or secondary chunking (key-wise); inputs in (B, H, N, C, *) layout.
    ``scan_backend`` runs the scan over chunks ("chunk" under torch.func, which the compiled
    kernel's custom op does not support)."""
    B, H, N, C, K = q.shape
    V = v.shape[-1]
    G = _triangle(C, q, lower=True) @ log_alpha  # (B, H, N, C, K or 1): log decay from chunk start to t
    G_end = G[:, :, :, -1]  # (B, H, N, K or 1): log decay over the whole chunk
    # sum the decay from s to the chunk end directly (no large-minus-large)
    k_to_end = k * torch.exp(_triangle(C, q, lower=False) @ log_alpha)
    U = k_to_end.transpose(-1, -2) @ v  # (B, H, N, K, V): what each chunk adds to the state
    chunk_decay = G_end.unsqueeze(-1).expand(B, H, N, K, V)
    states, S_last = diag_scan(
        chunk_decay.permute(0, 2, 1, 3, 4).reshape(B, N, H * K, V),
        U.permute(0, 2, 1, 3, 4).reshape(B, N, H * K, V),
        None if state is None else state.reshape(B, H * K, V),
        backend=scan_backend,
    )
    states = states.reshape(B, N, H, K, V).permute(0, 2, 1, 3, 4)
    first = state.unsqueeze(2) if state is not None else states.new_zeros(B, H, 1, K, V)
    S_in = torch.cat([first, states[:, :, :-1]], 2)  # state entering each chunk
    o = (q * torch.exp(G)) @ S_in
    if log_alpha.shape[-1] == 1:  # head-wise decay: the exact C x C decay matrix is cheap
        A = (q @ k.transpose(-1, -2)) * torch.exp(_pairwise_log_decay(log_alpha).squeeze(-1))
    elif checkpoint_scores and torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, log_alpha)):
        A = checkpoint(_secondary_chunk_scores, q, k, log_alpha, use_reentrant=False)
    else:
        A = _secondary_chunk_scores(q, k, log_alpha)
    return scale * (o + A @ v), S_last.reshape(B, H, K, V)


def _max_chunk_decay(chunk_log_decay: torch.Tensor) -> float:
    """The largest total decay -sum(log_alpha) over any chunk and channel."""
    return float(-chunk_log_decay.detach().min()) if chunk_log_decay.numel() else 0.0


def _triangle(C: int, like: torch.Tensor, *, lower: bool) -> torch.Tensor:
    """(C, C) 0/1 matrix: lower gives inclusive prefix sums (M @ x)_t = sum_{u <= t} x_u,
    upper the exclusive suffix sums sum_{u > t} x_u."""
    ones = torch.ones(C, C, dtype=like.dtype, device=like.device)
    return ones.tril() if lower else ones.triu(1)


def _exclusive_suffix_sum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """out_t = sum_{u > t} x_u along ``dim``, summed from the end (no large-minus-large)."""
    suffix = torch.flip(torch.cumsum(torch.flip(x, [dim]), dim), [dim])
    return torch.cat([suffix.narrow(dim, 1, x.shape[dim] - 1), torch.zeros_like(suffix.narrow(dim, 0, 1))], dim)


def _exclusive_prefix_sum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """out_t = sum_{u < t} x_u along ``dim``."""
    prefix = torch.cumsum(x, dim)
    return torch.cat([torch.zeros_like(prefix.narrow(dim, 0, 1)), prefix.narrow(dim, 0, x.shape[dim] - 1)], dim)


def _pairwise_log_decay(log_alpha: torch.Tensor) -> torch.Tensor:
    """E[t, s] = sum_{s < u <= t} log_alpha_u for s <= t, -inf above: (..., L, Kg) -> (..., L, L, Kg).

    Each entry is summed from its own start s (a cumulative sum down the
    column), so short decays keep full relative precision and the diagonal
    (E = 0) carries no gradient, where a difference G_t - G_s of long
    cumulative sums would lose digits and cancel.
    """
    L = log_alpha.shape[-2]
    below = torch.ones(L, L, dtype=torch.bool, device=log_alpha.device).tril(-1).unsqueeze(-1)  # t > s
    steps = torch.where(below, log_alpha.unsqueeze(-2), 0.0)  # steps[t, s] = log_alpha_t if t > s
    upper = torch.ones(L, L, dtype=torch.bool, device=log_alpha.device).triu(1).unsqueeze(-1)  # t < s
    return torch.cumsum(steps, dim=-3).masked_fill(upper, float("-inf"))


def _secondary_chunk_scores(q, k, log_alpha):
    """A[t, s] = sum_k q_t k_s exp(G_t - G_s), s <= t, by secondary chunking: (..., C, K) -> (..., C, C).

    With sub-chunks i (rows) and j (columns), i > j, the decay from s to t is
    split at r_j, the last step of sub-chunk j: exp(G_t - G_r) * exp(G_r - G_s),
    both <= 1; the exponents are summed locally (within sub-chunks, plus whole
    sub-chunk totals between i and j). Inside a sub-chunk the exact factor is
    formed element-wise.
    """
    *lead, C, K = q.shape
    c = SUB_CHUNK_SIZE
    n = C // c
    qs, ks = q.reshape(*lead, n, c, K), k.reshape(*lead, n, c, K)
    gs = log_alpha.reshape(*lead, n, c, log_alpha.shape[-1])
    within = torch.cumsum(gs, -2)  # decay from the start of its sub-chunk to t (inclusive)
    totals = within[..., -1, :]  # (..., n, K): decay over each sub-chunk
    before = _exclusive_prefix_sum(totals, -2)  # decay over the sub-chunks before i
    through = torch.cumsum(totals, -2)  # decay over sub-chunks 0..j
    # G_t - G_{r_j} for t in sub-chunk i > j: within_i(t) + (before_i - through_j)
    between = before.unsqueeze(-3) - through.unsqueeze(-2)  # (..., n_j, n_i, K)
    q_log = within.unsqueeze(-4) + between.unsqueeze(-2)  # (..., n_j, n_i, c, K)
    later = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1).view(n, n, 1, 1)  # i > j
    q_dec = qs.unsqueeze(-4) * torch.exp(q_log.masked_fill(~later, float("-inf")))
    k_dec = ks * torch.exp(_exclusive_suffix_sum(gs, -2))  # k_s * exp(G_{r_j} - G_s)
    A = q_dec.reshape(*lead, n, C, K) @ k_dec.transpose(-1, -2)  # (..., n_j, C, c)
    A = A.movedim(-3, -2)  # (..., C, n_j, c): A[t, j, s] is the score of (t, j * c + s)
    decay = torch.exp(_pairwise_log_decay(gs))  # (..., n, c, c, K)
    diag = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * decay).sum(-1)  # (..., n, c, c)
    on_diagonal = torch.eye(n, dtype=A.dtype, device=A.device).view(n, 1, n, 1)
    A = A.reshape(*lead, n, c, n, c) + diag.unsqueeze(-2) * on_diagonal
    return A.reshape(*lead, C, C)


# --------------------------------------------------------------------------- torch.compile


@torch.library.custom_op("recurlab::gla_chunk", mutates_args=())
def _gla_chunk_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor, state: Optional[torch.Tensor],
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gla_chunk` as one node of a compiled graph (the eager code runs inside)."""
    o, S_last = _gla_chunk_eager(q, k, v, log_alpha, scale, state, checkpoint_scores=False)
    return o.contiguous(), S_last.contiguous()


@_gla_chunk_op.register_fake
def _(q, k, v, log_alpha, state, scale):
    B, T, H, K = q.shape
    V = v.shape[-1]
    return q.new_empty(B, T, H, V), q.new_empty(B, H, K, V)


@torch.library.custom_op("recurlab::gla_chunk_backward", mutates_args=())
def _gla_chunk_backward_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor, state: Optional[torch.Tensor],
    scale: float, d_o: torch.Tensor, d_S: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`gla_chunk` (dq, dk, dv, d_log_alpha, d_state; d_state is empty without a
    state), recomputing the forward: the direct form by its written-out backward, secondary
    chunking by ``torch.func.vjp`` (autograd proper does not record inside a custom op; its scan
    over chunks takes the ``chunk`` backend there, as custom ops do not support torch.func)."""
    T = q.shape[1]
    C, direct = _choose_chunk(log_alpha)
    if direct:
        _, _, saved = _direct_forward(*(_to_chunks(x, C) for x in (q, k, v, log_alpha)), state, scale)
        *grads, d_state = _direct_backward(saved, scale, _to_chunks(d_o, C), d_S)
        grads = [_from_chunks(g, T) for g in grads]
    else:
        primals = (q, k, v, log_alpha) if state is None else (q, k, v, log_alpha, state)

        def forward(*xs):
            return _gla_chunk_eager(*xs[:4], scale, xs[4] if len(xs) > 4 else None, checkpoint_scores=False,
                                    scan_backend="chunk")

        _, vjp = torch.func.vjp(forward, *primals)
        *grads, d_state = (*vjp((d_o, d_S)), None) if state is None else vjp((d_o, d_S))
    d_state = q.new_zeros(0) if state is None else d_state
    return tuple(g.contiguous() for g in (*grads, d_state))


@_gla_chunk_backward_op.register_fake
def _(q, k, v, log_alpha, state, scale, d_o, d_S):
    d_state = q.new_empty(0) if state is None else state.new_empty(state.shape)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), log_alpha.new_empty(log_alpha.shape), d_state


def _gla_setup_context(ctx, inputs, output):
    q, k, v, log_alpha, state, scale = inputs
    ctx.save_for_backward(q, k, v, log_alpha, state)
    ctx.scale = scale


def _gla_backward(ctx, d_o, d_S):
    q, k, v, log_alpha, state = ctx.saved_tensors
    dq, dk, dv, d_log_alpha, d_state = _gla_chunk_backward_op(q, k, v, log_alpha, state, ctx.scale, d_o, d_S)
    return dq, dk, dv, d_log_alpha, (d_state if state is not None else None), None


_gla_chunk_op.register_autograd(_gla_backward, setup_context=_gla_setup_context)
