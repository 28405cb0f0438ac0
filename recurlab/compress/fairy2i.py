"""Fairy2i: a real linear layer as a widely-linear complex map, quantised to the fourth roots of unity.

Paper: "Fairy2i" (PKU, 2025); official code github.com/PKULab1806/Fairy2i-W2 (``model_module/qat_modules.py``,
``model_module/quantization.py``), which this file follows; docs/compress.md.

**Widely-linear form (exact).** A real matrix A (2n x 2m) acting on x = [x_1; x_2] (halves, not interleaved)
is, with the complex input z = x_1 + i x_2 and output y_1 + i y_2, the widely-linear map

    y = U z + W conj(z),      A = [[A11, A12], [A21, A22]]  (n x m blocks)
    U = 1/2 [(A11 + A22) + i (A21 - A12)],      W = 1/2 [(A11 - A22) + i (A12 + A21)]

and back: A11 = Re W + Re U, A12 = Im W - Im U, A21 = Im W + Im U, A22 = Re U - Re W. Nothing is lost: the
2 n m complex entries of U and W hold the 4 n m real weights.

**Phase quantiser.** Each complex entry w of U (and of W) is coded by the sector of its angle as one of
{+1, +i, -1, -i} = i^k, k = 0..3:

    k = 0  for angle in [-π/4, π/4),     k = 1  for [π/4, 3π/4),     k = 3  for [-3π/4, -π/4),     k = 2 otherwise

and dequantised as s_re Re(i^k) + i s_im Im(i^k), with one pair of scales per tensor (U and W each):
s_re = mean |Re w| over the entries coded ±1, s_im = mean |Im w| over the entries coded ±i (at least 1e-6; a
sector with no entries gets 1e-6). Each code is 2 bits and stands for two real weights: 1 bit per real weight.

**Recursive residual.** T stages: Q_1 = PQ(w), e_1 = w - Q_1, Q_2 = PQ(e_1), ..., and w ≈ Q_1 + ... + Q_T, each
stage with its own scales. T = 2 is Fairy2i-W2 (2 bits per real weight), T = 1 is W1.

The quantised layer is trained with a straight-through estimator on the real weights (see
:mod:`recurlab.compress.layers`): the forward uses the real matrix rebuilt from the quantised U and W, the backward
passes the gradient to A unchanged, as the official ``PhaseQuantSTE``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["apply_widely_linear", "dequantize", "fairy2i_dequantize", "fairy2i_quantize", "from_widely_linear",
           "phase_codes", "phase_quantize", "to_widely_linear"]

MIN_SCALE = 1e-6  # the official clamp of every scale


def _check_weight(weight: torch.Tensor) -> tuple[int, int]:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"weight must be a floating (out_features, in_features) tensor, got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    out_features, in_features = weight.shape
    if out_features % 2 or in_features % 2:
        raise ValueError(f"weight must have even out_features and in_features (they pair into complex numbers), "
                         f"got {tuple(weight.shape)}")
    return out_features // 2, in_features // 2


def to_widely_linear(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A real weight (2n, 2m) -> (U, W), complex (n, m), with y = U z + W conj(z) the same map (module docstring)."""
    n, m = _check_weight(weight)
    a11, a12, a21, a22 = weight[:n, :m], weight[:n, m:], weight[n:, :m], weight[n:, m:]
    return torch.complex(0.5 * (a11 + a22), 0.5 * (a21 - a12)), torch.complex(0.5 * (a11 - a22), 0.5 * (a12 + a21))


def from_widely_linear(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(U, W) complex (n, m) -> the real weight (2n, 2m) of the same map; the inverse of :func:`to_widely_linear`."""
    if u.shape != w.shape or u.dim() != 2 or not (u.is_complex() and w.is_complex()):
        raise ValueError(f"u and w must be complex (n, m) tensors of one shape, got {tuple(u.shape)}, {tuple(w.shape)}")
    top = torch.cat([w.real + u.real, w.imag - u.imag], 1)
    bottom = torch.cat([w.imag + u.imag, u.real - w.real], 1)
    return torch.cat([top, bottom], 0)


def apply_widely_linear(u: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x (..., 2m) real -> (..., 2n) real through complex arithmetic: z = x_1 + i x_2, y = U z + W conj(z),
    output [Re y, Im y]. Equal to ``x @ from_widely_linear(u, w).T`` (the tests check it); for checking only."""
    m = u.shape[1]
    z = torch.complex(x[..., :m], x[..., m:])
    y = z @ u.transpose(0, 1) + z.conj() @ w.transpose(0, 1)
    return torch.cat([y.real, y.imag], -1)


def phase_codes(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """The code k in 0..3 (i^k in {+1, +i, -1, -i}) of every complex entry re + i im, by its angle's sector."""
    phase = torch.atan2(im, re)
    quarter = math.pi / 4
    codes = torch.full(phase.shape, 2, dtype=torch.uint8, device=phase.device)  # -1: |angle| >= 3π/4
    codes[(phase >= -quarter) & (phase < quarter)] = 0
    codes[(phase >= quarter) & (phase < 3 * quarter)] = 1
    codes[(phase >= -3 * quarter) & (phase < -quarter)] = 3
    return codes


def _sector_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    mean = (values.abs() * mask).sum() / count.clamp_min(1)
    return torch.where(count > 0, mean, torch.zeros_like(mean)).clamp_min(MIN_SCALE)


def phase_quantize(re: torch.Tensor, im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One stage: (codes uint8 in 0..3, scales (2,) = [s_re, s_im]) of a complex tensor given as its parts."""
    codes = phase_codes(re, im)
    s_re = _sector_mean(re, (codes == 0) | (codes == 2))
    s_im = _sector_mean(im, (codes == 1) | (codes == 3))
    return codes, torch.stack([s_re, s_im])


def dequantize(codes: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(re, im) of s_re Re(i^k) + i s_im Im(i^k) for codes k; scales (2,) = [s_re, s_im]."""
    dtype = scales.dtype
    re = ((codes == 0).to(dtype) - (codes == 2).to(dtype)) * scales[0]
    im = ((codes == 1).to(dtype) - (codes == 3).to(dtype)) * scales[1]
    return re, im


def fairy2i_quantize(weight: torch.Tensor, steps: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantise a real weight (2n, 2m) with ``steps`` recursive residual stages (T; 2 = Fairy2i-W2).

    Returns (dequantised real weight (2n, 2m) in weight's dtype, codes uint8 (T, 2, n, m) for U then W,
    scales (T, 2, 2) = [stage][U, W][s_re, s_im]). The quantisation is computed without gradient; see
    :class:`recurlab.compress.layers.QuantizedLinear` for the straight-through training.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int (the recursive residual stages T), got {steps!r}")
    with torch.no_grad():
        u, w = to_widely_linear(weight)
        parts = [[u.real, u.imag], [w.real, w.imag]]  # the residuals, per tensor
        all_codes, all_scales = [], []
        for _ in range(steps):
            stage_codes, stage_scales = [], []
            for t, (re, im) in enumerate(parts):
                codes, scales = phase_quantize(re, im)
                q_re, q_im = dequantize(codes, scales)
                parts[t] = [re - q_re, im - q_im]
                stage_codes.append(codes)
                stage_scales.append(scales)
            all_codes.append(torch.stack(stage_codes))
            all_scales.append(torch.stack(stage_scales))
        codes, scales = torch.stack(all_codes), torch.stack(all_scales)
        # rebuilt from the codes, exactly as a packed layer rebuilds it (the same weights, bit for bit)
        return fairy2i_dequantize(codes, scales), codes, scales


def fairy2i_dequantize(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The real weight (2n, 2m) of codes (T, 2, n, m) and scales (T, 2, 2) as :func:`fairy2i_quantize` gives them."""
    total = None
    for stage_codes, stage_scales in zip(codes, scales):
        u, w = (torch.complex(*dequantize(stage_codes[t], stage_scales[t])) for t in range(2))
        part = from_widely_linear(u, w)
        total = part if total is None else total + part
    return total
