"""Efficient Recurrent Inference Machines for accelerated MRI (Karkalousos et al.,
"Assessment of Data Consistency through Cascades of Independently Recurrent Inference Machines for fast and
robust accelerated MRI reconstruction", 2020/2022; official code wdika/mridc, ``nn/rim/rnn_cells.py``,
``nn/rim/rim_block.py``, ``nn/rim/rim_utils.py``), rebuilt on seeded brain-like phantoms and scikit-image's
Shepp-Logan phantom at 64 x 64.

The measurement model (per coil c of n_c, Cartesian undersampling mask M, orthonormal 2-D FFT F):

    y_c = M F S_c x + M n_c,        n_c ~ CN(0, noise^2)                (S_c: coil sensitivity, sum_c |S_c|^2 = 1)
    A x = (M F S_c x)_c,             A^H k = sum_c conj(S_c) F^-1 M k_c

The RIM (one cascade, "no data consistency" block as in the official CIRIM config) refines an estimate eta
for T = 8 steps, starting from the zero-filled image eta_0 = A^H y:

    g_t     = sum_c conj(S_c) F^-1 M (M F S_c eta_t - y_c)       gradient of 1/2 sum_c ||M F S_c eta - y_c||^2
    u       = ReLU(conv5x5_C([Re eta_t, Im eta_t, Re g_t, Im g_t]))
    h1      = cell1(u, h1)                                        recurrent cell on every pixel (1x1 convs)
    v       = ReLU(conv3x3_C,dilation 2(h1))
    h2      = cell2(v, h2)
    d_eta   = conv3x3_2(h2)  (no bias),   eta_{t+1} = eta_t + (d_eta_re + i d_eta_im)

The three cells, convolutional (W and U are 1x1 convolutions: the official ``recurrent_kernels: [1, 1, 0]``):

    GRU:    r = s(W_r x + U_r h), z = s(W_z x + U_z h), n = tanh(W_n x + r * U_n h), h' = (1 - z) * n + z * h
    MGU:    f = s(W_f x + U_f h), c = tanh(W_c x + f * U_c h), h' = c + f * (h - c)
    IndRNN: h' = ReLU(W x + u * h)                  (u: one recurrent weight per channel, elementwise)

Loss (official ``process_loss`` with ``accumulate_estimates``): the L1 distance of the magnitudes of every
step's estimate to the target, weighted by w_t = logspace(-1, 0, T) and averaged over steps. Adam 1e-3.

Baseline: compressed sensing with isotropic total variation, min_x 1/2 ||A x - y||^2 + lambda TV(x), solved by
the Chambolle-Pock primal-dual algorithm (written here in torch); lambda is chosen per setting on training
phantoms. Metrics on magnitudes: SSIM (7x7 uniform window, K1 0.01, K2 0.03, data range max |x|, as fastMRI
and scikit-image), PSNR, NMSE, NMSE inside the lesion region, and milliseconds per reconstruction (batch 1).

Data: :func:`brain_phantom` draws seeded brain-like complex images (scalp, skull, CSF, folded cortex, white
matter, ventricles, deep grey nuclei, smooth bias field and phase) with 0 to 3 bright lesions; the RIMs train
on phantoms WITHOUT lesions and are tested on phantoms WITH lesions (and on the Shepp-Logan phantom, never
seen). Settings: single-coil and 4-coil (Gaussian birdcage sensitivities), 4x and 8x Cartesian
undersampling (random phase-encoding lines plus a fully sampled centre: 8% at 4x, 4% at 8x).

Choices where the paper is open or we deviate (also in docs/recipes/rim_mri.md):
- 64 x 64 synthetic phantoms instead of 3-D FLAIR / fastMRI brain data; 4 coils instead of 32.
- one RIM cascade of 8 steps (the paper's efficient RIM; its CIRIM stacks 5 cascades with data consistency).
- hidden channels C = 16 in the full run (paper 64), 2,800 training steps of batch 4 per cell: a CPU budget.
- one model per cell trained on a mix of the four settings (the RIM reads the operator only through g_t).
- Zero padding in the convolutions; the L1 loss is not rescaled by the estimate's maximum (official divides
  each estimate by its own maximum magnitude, which leaves the overall scale free).
- The recurrent cells are written here: recurlab's units (``recurlab.layers``) are sequence token mixers over
  (B, T, D) with dense weights, while the RIM needs cells over an image-shaped state (B, C, H, W) whose
  recurrence runs over inference steps, with 1x1-convolution weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..train.loop import train_steps
from .common import RecipeResult, ResultRow

PAPER = ("Karkalousos et al., Assessment of Data Consistency through Cascades of Independently Recurrent Inference "
         "Machines for fast and robust accelerated MRI reconstruction, 2020/2022 (efficient RIM: GRU, MGU, IndRNN)")

CELLS = ("gru", "mgu", "indrnn")
CELL_NAMES = {"gru": "RIM-GRU", "mgu": "RIM-MGU", "indrnn": "RIM-IndRNN"}
CENTER_FRACTION = {4: 0.08, 8: 0.04}


# ----------------------------------------------------------------------------- phantoms

def shepp_logan(size: int) -> np.ndarray:
    """scikit-image's modified Shepp-Logan phantom resized to (size, size), float64 in [0, 1]."""
    try:
        from skimage.data import shepp_logan_phantom
        from skimage.transform import resize
    except ModuleNotFoundError:
        raise ModuleNotFoundError("recipe rim_mri needs scikit-image (the Shepp-Logan phantom): "
                                  "pip install 'recurlab[recipes]' (or pip install scikit-image)",
                                  name="skimage") from None
    img = resize(shepp_logan_phantom(), (size, size), order=1, anti_aliasing=True)
    return np.clip(img / img.max(), 0.0, 1.0)


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, a: float, b: float, theta: float) -> np.ndarray:
    """Boolean mask of the ellipse centred (cx, cy) with semi-axes a, b rotated by theta."""
    c, s = math.cos(theta), math.sin(theta)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _smooth_field(rng: np.random.Generator, size: int, n_terms: int = 4) -> np.ndarray:
    """A smooth random field in about [-1, 1]: a few random low-frequency cosines."""
    ax = np.linspace(-1, 1, size)
    xx, yy = np.meshgrid(ax, ax, indexing="xy")
    f = np.zeros((size, size))
    for _ in range(n_terms):
        kx, ky = rng.uniform(-2.0, 2.0, size=2)
        f += math.cos(rng.uniform(0, 2 * math.pi)) * np.cos(math.pi * (kx * xx + ky * yy) + rng.uniform(0, 2 * math.pi))
    return f / n_terms


def brain_phantom(size: int, rng: np.random.Generator, n_lesions: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One seeded brain-like axial slice (FLAIR-like contrast: CSF dark, lesions bright).

    Args:
        size: image side in pixels (>= 16).
        rng: numpy Generator (the phantom is a function of its state).
        n_lesions: number of bright lesions placed in the white matter (0 for training phantoms).

    Returns:
        image (size, size) complex128 with max magnitude 1 (smooth phase up to about +-pi/2) and the lesion
        mask (size, size) bool (all False when n_lesions = 0).
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if n_lesions < 0:
        raise ValueError(f"n_lesions must be >= 0, got {n_lesions}")
    ax = np.linspace(-1, 1, size)
    xx, yy = np.meshgrid(ax, ax, indexing="xy")
    theta0 = rng.uniform(-0.15, 0.15)
    a, b = rng.uniform(0.72, 0.82), rng.uniform(0.86, 0.94)  # head semi-axes (x narrower than y)
    cx, cy = rng.uniform(-0.04, 0.04, size=2)
    c, s = math.cos(theta0), math.sin(theta0)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)  # 1 on the head's outline
    ang = np.arctan2(v / b, u / a)
    # folded cortex: the grey/white boundary and the brain surface wobble with the angle
    gyri = sum(rng.uniform(0.01, 0.035) * np.sin(k * ang + rng.uniform(0, 2 * math.pi)) for k in (5, 9, 14))
    img = np.zeros((size, size))
    img[rho <= 1.0] = 0.75                          # scalp
    img[rho <= 0.93] = 0.08                         # skull
    img[rho <= 0.87] = 0.15                         # CSF around the brain
    brain = rho <= 0.84 + gyri
    img[brain] = 0.62                               # grey matter
    wm = rho <= 0.70 + 1.6 * gyri
    img[wm] = 0.45                                  # white matter
    # ventricles: two elongated dark lobes either side of the midline, and deep grey nuclei
    vent_len, vent_w = rng.uniform(0.18, 0.3), rng.uniform(0.04, 0.08)
    for side in (-1, 1):
        vx = cx + side * rng.uniform(0.07, 0.12)
        img[_ellipse(xx, yy, vx, cy + rng.uniform(-0.08, 0.02), vent_w, vent_len,
                     theta0 + side * rng.uniform(0.1, 0.35))] = 0.12
        img[_ellipse(xx, yy, cx + side * rng.uniform(0.25, 0.33), cy + rng.uniform(0.0, 0.12),
                     rng.uniform(0.06, 0.09), rng.uniform(0.1, 0.14), side * rng.uniform(0.0, 0.4))] = 0.56
    lesion = np.zeros((size, size), dtype=bool)
    candidates = np.argwhere(wm & (img == 0.45))
    for _ in range(n_lesions):
        iy, ix = candidates[rng.integers(len(candidates))]
        la, lb = rng.uniform(0.05, 0.1), rng.uniform(0.05, 0.1)
        spot = _ellipse(xx, yy, ax[ix], ax[iy], la, lb, rng.uniform(0, math.pi)) & brain
        img[spot] = rng.uniform(0.85, 1.0)
        lesion |= spot
    # texture and a smooth bias field (multiplicative), then a smooth phase
    img = img * (1 + 0.1 * _smooth_field(rng, size)) * (1 + 0.03 * rng.standard_normal((size, size)) * (img > 0.1))
    img = np.clip(img, 0, None)
    img = img / img.max()
    phase = rng.uniform(-0.5, 0.5) + rng.uniform(-0.6, 0.6) * xx + rng.uniform(-0.6, 0.6) * yy \
        + rng.uniform(-0.4, 0.4) * (xx ** 2 + yy ** 2)
    return img * np.exp(1j * phase), lesion


def coil_maps(n_coils: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth coil sensitivities (n_coils, size, size) complex128 with sum_c |S_c|^2 = 1 at every pixel.

    n_coils = 1 gives the single-coil case S = 1. Otherwise coil c is a Gaussian centred on a circle of radius
    1.3 around the image (angle 2 pi c / n_coils plus a jitter) times a linear phase ramp.
    """
    if n_coils < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils}")
    if n_coils == 1:
        return np.ones((1, size, size), dtype=np.complex128)
    ax = np.linspace(-1, 1, size)
    xx, yy = np.meshgrid(ax, ax, indexing="xy")
    maps = []
    for k in range(n_coils):
        phi = 2 * math.pi * k / n_coils + rng.uniform(-0.2, 0.2)
        px, py = 1.3 * math.cos(phi), 1.3 * math.sin(phi)
        width = rng.uniform(0.9, 1.2)
        mag = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * width ** 2))
        ph = rng.uniform(-math.pi, math.pi) + rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy
        maps.append(mag * np.exp(1j * ph))
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))


def cartesian_mask(size: int, acceleration: int, rng: np.random.Generator,
                   center_fraction: float | None = None) -> np.ndarray:
    """A 1-D Cartesian undersampling mask (size,) float64 in FFT order (DC at index 0): a fully sampled centre
    of round(size * center_fraction) lines plus random lines up to round(size / acceleration) lines in all."""
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    cf = CENTER_FRACTION.get(acceleration, 0.08) if center_fraction is None else center_fraction
    if not 0 <= cf <= 1:
        raise ValueError(f"center_fraction must be in [0, 1], got {cf}")
    n_lines = max(1, round(size / acceleration))
    n_center = min(n_lines, max(1, round(size * cf)))
    centered = np.zeros(size)
    start = (size - n_center + 1) // 2
    centered[start:start + n_center] = 1
    rest = np.flatnonzero(centered == 0)
    centered[rng.choice(rest, size=n_lines - n_center, replace=False)] = 1
    return np.fft.ifftshift(centered)


# ----------------------------------------------------------------------------- operators

def fft2(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fft2(x, norm="ortho")


def ifft2(k: torch.Tensor) -> torch.Tensor:
    return torch.fft.ifft2(k, norm="ortho")


def _check_shapes(x: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor) -> None:
    if sens.ndim != 4 or x.shape != (sens.shape[0], *sens.shape[2:]):
        raise ValueError(f"image must be (B, H, W) and sens (B, C, H, W) with matching B, H, W; got "
                         f"{tuple(x.shape)} and {tuple(sens.shape)}")
    if mask.ndim != 4 or mask.shape[0] != sens.shape[0] or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H or 1, W or 1), got {tuple(mask.shape)}")


def forward_op(x: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A x = M F (S_c x): image (B, H, W) complex -> masked multi-coil k-space (B, C, H, W)."""
    _check_shapes(x, sens, mask)
    return mask * fft2(sens * x.unsqueeze(1))


def adjoint_op(k: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A^H k = sum_c conj(S_c) F^-1 (M k_c): k-space (B, C, H, W) -> image (B, H, W)."""
    if k.shape != sens.shape:
        raise ValueError(f"k-space must have the shape of sens {tuple(sens.shape)}, got {tuple(k.shape)}")
    return (sens.conj() * ifft2(mask * k)).sum(1)


def dc_gradient(eta: torch.Tensor, y: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The data-consistency gradient g = sum_c conj(S_c) F^-1 M (M F S_c eta - y_c) (B, H, W): the gradient of
    1/2 sum_c ||M F S_c eta - y_c||^2 with respect to eta (PyTorch's convention for complex inputs)."""
    return adjoint_op(forward_op(eta, sens, mask) - y, sens, mask)


def _grad2(x: torch.Tensor) -> torch.Tensor:
    """Forward differences (B, H, W) -> (B, 2, H, W), zero across the last row / column (Neumann)."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    dy[:, :-1, :] = x[:, 1:, :] - x[:, :-1, :]
    return torch.stack([dx, dy], 1)


def _grad2_adjoint(q: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`_grad2` (minus the divergence): (B, 2, H, W) -> (B, H, W)."""
    qx, qy = q[:, 0], q[:, 1]
    out = torch.zeros_like(qx)
    out[:, :, :-1] -= qx[:, :, :-1]
    out[:, :, 1:] += qx[:, :, :-1]
    out[:, :-1, :] -= qy[:, :-1, :]
    out[:, 1:, :] += qy[:, :-1, :]
    return out


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV of complex images (B, H, W): sum over pixels of sqrt(|dx|^2 + |dy|^2) -> (B,)."""
    return _grad2(x).abs().pow(2).sum(1).sqrt().sum((1, 2))


def cs_objective(x: torch.Tensor, y: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """The CS objective 1/2 ||A x - y||^2 + lam TV(x) per image (B,)."""
    return 0.5 * (forward_op(x, sens, mask) - y).abs().pow(2).sum((1, 2, 3)) + lam * total_variation(x)


def cs_tv(y: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """Compressed sensing with TV: Chambolle-Pock primal-dual iterations for min 1/2 ||A x - y||^2 + lam TV(x).

    K = [A; grad], ||K||^2 <= ||A||^2 + ||grad||^2 <= 1 + 8 (orthonormal FFT, sum_c |S_c|^2 = 1), so
    tau = sigma = 1 / 3.01 converge. Starts from the zero-filled image. Returns x (B, H, W) complex.
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    tau = sigma = 1 / 3.01
    x = adjoint_op(y, sens, mask)
    x_bar = x
    p = torch.zeros_like(y)
    q = torch.zeros((x.shape[0], 2, *x.shape[1:]), dtype=x.dtype)
    for _ in range(iters):
        p = (p + sigma * (forward_op(x_bar, sens, mask) - y)) / (1 + sigma)  # prox of the conjugate of 1/2||.-y||^2
        q = q + sigma * _grad2(x_bar)
        if lam > 0:
            q = q / torch.clamp(q.abs().pow(2).sum(1, keepdim=True).sqrt() / lam, min=1.0)  # project on |q| <= lam
        else:
            q = torch.zeros_like(q)
        x_new = x - tau * (adjoint_op(p, sens, mask) + _grad2_adjoint(q))
        x_bar = 2 * x_new - x
        x = x_new
    return x


# ----------------------------------------------------------------------------- metrics (magnitude images)

def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | float | None = None,
         win: int = 7, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM of real images (B, H, W) or (H, W) with a win x win uniform window (as scikit-image's
    ``structural_similarity`` with its defaults and fastMRI's evaluation), averaged over the valid window
    positions. ``data_range``: per image (default: the target's maximum). Returns (B,) or a scalar."""
    if pred.shape != target.shape or pred.ndim not in (2, 3):
        raise ValueError(f"pred and target must share a shape (B, H, W) or (H, W), got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    single = pred.ndim == 2
    x = (pred[None] if single else pred).double().unsqueeze(1)
    t = (target[None] if single else target).double().unsqueeze(1)
    if min(x.shape[-2:]) < win:
        raise ValueError(f"images must be at least win={win} pixels on each side, got {tuple(x.shape[-2:])}")
    if data_range is None:
        data_range = t.amax((1, 2, 3))
    rng = torch.as_tensor(data_range, dtype=torch.float64).reshape(-1, 1, 1, 1)
    kernel = torch.full((1, 1, win, win), 1.0 / win ** 2, dtype=torch.float64)
    ux, uy = F.conv2d(x, kernel), F.conv2d(t, kernel)
    uxx, uyy, uxy = F.conv2d(x * x, kernel), F.conv2d(t * t, kernel), F.conv2d(x * t, kernel)
    cov_norm = win ** 2 / (win ** 2 - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    out = s.mean((1, 2, 3))
    return out[0] if single else out


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """10 log10(max(target)^2 / MSE) per image (B, H, W) -> (B,), in dB."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must share a shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    mse = (pred.double() - target.double()).pow(2).mean((-2, -1))
    return 10 * torch.log10(target.double().amax((-2, -1)) ** 2 / mse)


def nmse(pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """||pred - target||^2 / ||target||^2 per image (B, H, W) -> (B,), optionally only over ``region`` (bool)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must share a shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    w = torch.ones_like(target, dtype=torch.float64) if region is None else region.double()
    err = ((pred.double() - target.double()).pow(2) * w).sum((-2, -1))
    return err / (target.double().pow(2) * w).sum((-2, -1))


# ----------------------------------------------------------------------------- recurrent cells and the RIM

class ConvGRUCell(nn.Module):
    """GRU on every pixel: r = s(W_r x + U_r h), z = s(W_z x + U_z h), n = tanh(W_n x + r * U_n h),
    h' = (1 - z) * n + z * h, with W, U k x k convolutions (the official RIM uses k = 1). x (B, I, H, W),
    h (B, C, H, W) -> h' (B, C, H, W)."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 1):
        super().__init__()
        self.hidden_size = hidden_size
        self.ih = nn.Conv2d(input_size, 3 * hidden_size, kernel_size, padding=kernel_size // 2)
        self.hh = nn.Conv2d(hidden_size, 3 * hidden_size, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.orthogonal_(self.ih.weight)
        nn.init.orthogonal_(self.hh.weight)
        nn.init.zeros_(self.ih.bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = self.ih(x).chunk(3, 1)
        hr, hz, hn = self.hh(h).chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


class ConvMGUCell(nn.Module):
    """Minimal gated unit on every pixel: f = s(W_f x + U_f h), c = tanh(W_c x + f * U_c h), h' = c + f (h - c)."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 1):
        super().__init__()
        self.hidden_size = hidden_size
        self.ih = nn.Conv2d(input_size, 2 * hidden_size, kernel_size, padding=kernel_size // 2)
        self.hh = nn.Conv2d(hidden_size, 2 * hidden_size, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.xavier_uniform_(self.ih.weight, nn.init.calculate_gain("relu"))
        nn.init.xavier_uniform_(self.hh.weight)
        nn.init.zeros_(self.ih.bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xf, xc = self.ih(x).chunk(2, 1)
        hf, hc = self.hh(h).chunk(2, 1)
        f = torch.sigmoid(xf + hf)
        c = torch.tanh(xc + f * hc)
        return c + f * (h - c)


class ConvIndRNNCell(nn.Module):
    """Independently recurrent cell on every pixel: h' = ReLU(W x + u * h), u (C,) elementwise per channel.
    Initialisation as the official cell: W and u ~ N(0, (1 / (C (1 + k^2)))^2), bias 0."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 1):
        super().__init__()
        self.hidden_size = hidden_size
        std = 1.0 / (hidden_size * (1 + kernel_size ** 2))
        self.ih = nn.Conv2d(input_size, hidden_size, kernel_size, padding=kernel_size // 2)
        self.u = nn.Parameter(torch.randn(1, hidden_size, 1, 1) * std)
        nn.init.normal_(self.ih.weight, std=std)
        nn.init.zeros_(self.ih.bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.ih(x) + self.u * h)


CELL_CLASSES = {"gru": ConvGRUCell, "mgu": ConvMGUCell, "indrnn": ConvIndRNNCell}


class RIM(nn.Module):
    """The efficient RIM: T steps of eta += conv3x3(cell2(ReLU(conv3x3,d2(cell1(ReLU(conv5x5([eta; g]))))))).

    ``forward(y, sens, mask)``: y (B, C, H, W) complex k-space, sens (B, C, H, W) complex, mask (B, 1, 1, W)
    -> the estimates of every step stacked (T, B, H, W) complex (the last is the reconstruction).
    """

    def __init__(self, cell: str, channels: int = 64, time_steps: int = 8, recurrent_kernel: int = 1):
        super().__init__()
        if cell not in CELL_CLASSES:
            raise ValueError(f"cell must be one of {', '.join(CELL_CLASSES)}, got {cell!r}")
        if channels < 1 or time_steps < 1:
            raise ValueError(f"channels and time_steps must be >= 1, got {channels}, {time_steps}")
        self.cell_name, self.channels, self.time_steps = cell, channels, time_steps
        self.conv1 = nn.Conv2d(4, channels, 5, padding=2)
        self.cell1 = CELL_CLASSES[cell](channels, channels, recurrent_kernel)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=2, dilation=2)
        self.cell2 = CELL_CLASSES[cell](channels, channels, recurrent_kernel)
        self.conv3 = nn.Conv2d(channels, 2, 3, padding=1, bias=False)
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, y: torch.Tensor, sens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        eta = adjoint_op(y, sens, mask)  # zero-filled start
        b, hgt, wid = eta.shape
        h1 = eta.real.new_zeros((b, self.channels, hgt, wid))
        h2 = torch.zeros_like(h1)
        out = []
        for _ in range(self.time_steps):
            g = dc_gradient(eta, y, sens, mask)
            x = torch.stack([eta.real, eta.imag, g.real, g.imag], 1)
            h1 = self.cell1(torch.relu(self.conv1(x)), h1)
            h2 = self.cell2(torch.relu(self.conv2(h1)), h2)
            d = self.conv3(h2)
            eta = eta + torch.complex(d[:, 0], d[:, 1])
            out.append(eta)
        return torch.stack(out)


def step_weights(time_steps: int) -> torch.Tensor:
    """The official per-step loss weights logspace(-1, 0, T) (0.1 for the first step up to 1 for the last)."""
    return torch.logspace(-1, 0, time_steps)


def rim_loss(estimates: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_t w_t mean |(|eta_t| - |x|)| / T over the steps' estimates (T, B, H, W) and the target (B, H, W)."""
    if estimates.ndim != 4 or estimates.shape[1:] != target.shape:
        raise ValueError(f"estimates must be (T, *target.shape), got {tuple(estimates.shape)} and "
                         f"{tuple(target.shape)}")
    w = step_weights(estimates.shape[0]).to(estimates.real.dtype)
    per_step = (estimates.abs() - target.abs()).abs().mean((1, 2, 3))
    return (w * per_step).sum() / estimates.shape[0]


# ----------------------------------------------------------------------------- data sets

def simulate(images: np.ndarray, coils: list[int], accelerations: list[int], rng: np.random.Generator,
             n_coils_max: int, noise: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Undersampled k-space of every image (N, H, W) complex: image i gets coils[i] coils (1 or n_coils_max)
    and a fresh Cartesian mask at accelerations[i], plus complex Gaussian noise of std ``noise`` on the sampled
    k-space points. The coil axis is padded to n_coils_max with zero sensitivities (a single-coil example is
    then the same problem: the padded coils add nothing to A^H or to the gradient).

    Returns y (N, n_coils_max, H, W) complex64, sens (N, n_coils_max, H, W) complex64, mask (N, 1, 1, W) float32.
    """
    n, size, _ = images.shape
    if len(coils) != n or len(accelerations) != n:
        raise ValueError(f"coils and accelerations need one entry per image ({n}), got {len(coils)} and "
                         f"{len(accelerations)}")
    if any(c < 1 or c > n_coils_max for c in coils):
        raise ValueError(f"coils must be in [1, n_coils_max={n_coils_max}], got {sorted(set(coils))}")
    sens = np.zeros((n, n_coils_max, size, size), dtype=np.complex128)
    mask = np.zeros((n, 1, 1, size))
    for i in range(n):
        sens[i, :coils[i]] = coil_maps(coils[i], size, rng)
        mask[i, 0, 0] = cartesian_mask(size, accelerations[i], rng)
    k = np.fft.fft2(sens * images[:, None], norm="ortho")
    k = k + noise * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) / math.sqrt(2)
    present = (np.arange(n_coils_max)[None, :] < np.asarray(coils)[:, None])[:, :, None, None]
    y = mask * k * present
    return (torch.from_numpy(y.astype(np.complex64)), torch.from_numpy(sens.astype(np.complex64)),
            torch.from_numpy(mask.astype(np.float32)))


def phantom_set(n: int, size: int, seed: int, lesions: bool) -> tuple[np.ndarray, np.ndarray]:
    """n brain phantoms (n, size, size) complex128 and lesion masks (n, size, size) bool; with ``lesions`` each has
    1 to 3 lesions. Seeded by (seed, lesions)."""
    rng = np.random.default_rng([seed, 7, int(lesions)])
    out = [brain_phantom(size, rng, int(rng.integers(1, 4)) if lesions else 0) for _ in range(n)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


# ----------------------------------------------------------------------------- the recipe

@dataclass
class Config:
    """One run's settings. ``quick()`` takes ~2 min and ``full()`` ~30 min of CPU time on one core (the defaults
    here, 700 training steps per cell, ~8 min)."""

    size: int = 64                    # image side, pixels
    n_coils: int = 4                  # coils of the multi-coil setting (the single-coil setting has 1)
    accelerations: tuple[int, ...] = (4, 8)
    noise: float = 0.005              # k-space noise std (images have max magnitude 1)
    cells: tuple[str, ...] = CELLS
    channels: int = 16                # hidden channels of convs and cells (paper 64)
    time_steps: int = 8
    n_train: int = 400                # training phantoms (no lesions); masks/coils are drawn fresh every step
    train_steps: int = 700
    batch_size: int = 4
    lr: float = 1e-3
    eval_every: int = 100
    n_val: int = 8                    # validation phantoms (no lesions), for the best-window selection
    n_test: int = 12                  # test phantoms with lesions (each reconstructed in every setting)
    cs_iters: int = 300
    cs_lambdas: tuple[float, ...] = (0.002, 0.004, 0.008, 0.016, 0.032)
    n_tune: int = 4                   # training phantoms per setting for choosing the CS lambda
    n_timing: int = 6                 # reconstructions timed one at a time per method

    @classmethod
    def quick(cls) -> "Config":
        return cls(channels=8, n_train=100, train_steps=120, eval_every=60, n_test=6, cs_iters=100,
                   cs_lambdas=(0.004, 0.008, 0.016), n_timing=3)

    @classmethod
    def full(cls) -> "Config":
        # 2,800 steps per cell: at 700 every cell's validation SSIM was still rising when training stopped
        return cls(train_steps=2800, eval_every=200)

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("size", "n_coils", "channels", "time_steps", "n_train", "train_steps", "batch_size",
                     "eval_every", "n_val", "n_test", "n_tune", "n_timing"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16, got {self.size}")
        if not self.accelerations or any(a < 1 for a in self.accelerations):
            raise ValueError(f"accelerations must be a non-empty tuple of ints >= 1, got {self.accelerations}")
        bad = [c for c in self.cells if c not in CELL_CLASSES]
        if bad or not self.cells:
            raise ValueError(f"cells must be a non-empty subset of {', '.join(CELLS)}, got {self.cells}")
        if self.noise < 0 or self.lr <= 0 or self.cs_iters < 0 or not self.cs_lambdas or min(self.cs_lambdas) < 0:
            raise ValueError(f"noise >= 0, lr > 0, cs_iters >= 0 and non-negative cs_lambdas needed; got noise="
                             f"{self.noise}, lr={self.lr}, cs_iters={self.cs_iters}, cs_lambdas={self.cs_lambdas}")


def settings(cfg: Config) -> list[tuple[int, int]]:
    """(coils, acceleration) of every test setting: single- and multi-coil at every acceleration."""
    coil_options = [1] if cfg.n_coils == 1 else [1, cfg.n_coils]
    return [(c, a) for c in coil_options for a in cfg.accelerations]


def setting_name(coils: int, acc: int) -> str:
    return f"{'single' if coils == 1 else f'{coils}'}-coil {acc}x"


def image_metrics(recon: torch.Tensor, target: torch.Tensor, lesion: torch.Tensor | None = None) -> dict[str, float]:
    """Mean SSIM, PSNR, NMSE of the magnitudes of recon vs target (B, H, W) complex; with ``lesion`` masks
    (B, H, W) bool also the NMSE inside the lesions (images without lesion pixels are skipped)."""
    r, t = recon.abs(), target.abs()
    out = {"ssim": float(ssim(r, t).mean()), "psnr": float(psnr(r, t).mean()), "nmse": float(nmse(r, t).mean())}
    if lesion is not None:
        has = lesion.flatten(1).any(1)
        if has.any():
            out["lesion_nmse"] = float(nmse(r[has], t[has], lesion[has]).mean())
    return out


def _batches(cfg: Config, pool: np.ndarray, seed: int):
    """batch_fn(step) for train_steps: batch_size pool phantoms, each in a random setting with a fresh mask,
    coils and noise, all drawn from Generator([seed, 11, step])."""
    options = settings(cfg)

    def batch_fn(step: int):
        rng = np.random.default_rng([seed, 11, step])
        idx = rng.integers(0, len(pool), size=cfg.batch_size)
        which = [options[i] for i in rng.integers(0, len(options), size=cfg.batch_size)]
        y, sens, mask = simulate(pool[idx], [c for c, _ in which], [a for _, a in which], rng, cfg.n_coils, cfg.noise)
        return y, sens, mask, torch.from_numpy(pool[idx].astype(np.complex64))

    return batch_fn


def train_rim(cell: str, cfg: Config, pool: np.ndarray, val: tuple, seed: int, progress: bool = False):
    """Train one RIM with ``cell`` through :func:`recurlab.train.loop.train_steps` (Adam, the weights of the best
    validation SSIM are kept). ``val``: (y, sens, mask, target) of the validation phantoms. Returns the model
    and its curves (mean training loss and validation SSIM per window)."""
    torch.manual_seed(seed)
    model = RIM(cell, cfg.channels, cfg.time_steps)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    y_v, s_v, m_v, t_v = val

    def validate() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            rec = model(y_v, s_v, m_v)[-1]
        return {"val_ssim": image_metrics(rec, t_v)["ssim"]}

    history = train_steps(model, opt, rim_loss, _batches(cfg, pool, seed), cfg.train_steps, cfg.eval_every,
                          validate=validate, select="val_ssim", maximize=True, progress=progress,
                          desc=CELL_NAMES[cell])
    model.eval()
    return model, {"loss": history.window_loss, "val_ssim": [v["val_ssim"] for v in history.val],
                   "window_end": history.window_end, "best_window": history.best_window}


def _timed(fn, examples) -> float:
    """Median milliseconds of fn(y, sens, mask) over examples, one reconstruction at a time."""
    times = []
    with torch.no_grad():
        fn(*examples[0])  # warm-up
        for ex in examples:
            start = time.perf_counter()
            fn(*ex)
            times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def tune_lambda(cfg: Config, pool: np.ndarray, coils: int, acc: int, seed: int) -> tuple[float, dict[str, float]]:
    """The CS lambda of cs_lambdas with the best mean SSIM on cfg.n_tune training phantoms (no lesions) in the
    setting (coils, acc); returns it and the SSIM of every candidate."""
    rng = np.random.default_rng([seed, 13, coils, acc])
    imgs = pool[:cfg.n_tune]
    y, sens, mask = simulate(imgs, [coils] * len(imgs), [acc] * len(imgs), rng, cfg.n_coils, cfg.noise)
    target = torch.from_numpy(imgs.astype(np.complex64))
    scores = {str(lam): image_metrics(cs_tv(y, sens, mask, lam, cfg.cs_iters), target)["ssim"]
              for lam in cfg.cs_lambdas}
    best = max(cfg.cs_lambdas, key=lambda lam: scores[str(lam)])
    return best, scores


def _plot_recons(panels: list[dict], path: Path) -> None:
    """panels: one dict per example (title, target, lesion, recons {method: image}) -> a grid of magnitudes
    (row 1) and absolute error maps (row 2) per example, lesions outlined in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(panels[0]["recons"])
    ncol = len(methods) + 1
    fig, axes = plt.subplots(2 * len(panels), ncol, figsize=(2.1 * ncol, 4.3 * len(panels)))
    for p, panel in enumerate(panels):
        tgt, lesion = panel["target"], panel["lesion"]
        ax = axes[2 * p, 0]
        ax.imshow(tgt, cmap="gray", vmin=0, vmax=1)
        if lesion.any():
            ax.contour(lesion.astype(float), levels=[0.5], colors="r", linewidths=0.8)
        ax.set_title(f"ground truth\n{panel['title']}", fontsize=8)
        axes[2 * p + 1, 0].axis("off")
        for j, m in enumerate(methods, start=1):
            img = panel["recons"][m]
            err = np.abs(img - tgt)
            ax = axes[2 * p, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            if lesion.any():
                ax.contour(lesion.astype(float), levels=[0.5], colors="r", linewidths=0.8)
            s = float(ssim(torch.from_numpy(img), torch.from_numpy(tgt)))
            ax.set_title(f"{m}\nSSIM {s:.3f}", fontsize=8)
            ax = axes[2 * p + 1, j]
            ax.imshow(err, cmap="magma", vmin=0, vmax=0.3)
            if lesion.any():
                ax.contour(lesion.astype(float), levels=[0.5], colors="c", linewidths=0.8)
            ax.set_title(f"|error| (0-0.3){'' if not lesion.any() else ', lesion NMSE ' + format(float(nmse(torch.from_numpy(img), torch.from_numpy(tgt), torch.from_numpy(lesion))), '.3f')}", fontsize=6)
        for ax in axes[2 * p:2 * p + 2].ravel():
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_curves(curves: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for cell, c in curves.items():
        axes[0].plot(c["window_end"], c["loss"], marker="o", label=CELL_NAMES[cell])
        axes[1].plot(c["window_end"], c["val_ssim"], marker="o", label=CELL_NAMES[cell])
    axes[0].set_title("training loss (weighted L1 over steps)", fontsize=9)
    axes[1].set_title("validation SSIM (phantoms without lesions)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None) -> RecipeResult:
    """Train a RIM per cell on lesion-free phantoms; reconstruct lesion phantoms and Shepp-Logan in every setting
    with zero-filling, CS-TV and each RIM; report SSIM / PSNR / NMSE, lesion NMSE and ms per reconstruction."""
    from tqdm.auto import tqdm

    cfg = config or (Config.quick() if quick else Config.full())
    cfg.check()
    shepp = shepp_logan(cfg.size).astype(np.complex128)  # fails early, naming the extra, without scikit-image
    pool, _ = phantom_set(cfg.n_train + cfg.n_val, cfg.size, seed, lesions=False)
    pool, val_imgs = pool[:cfg.n_train], pool[cfg.n_train:]
    test_imgs, test_lesions = phantom_set(cfg.n_test, cfg.size, seed, lesions=True)
    options = settings(cfg)

    rng = np.random.default_rng([seed, 17])
    which = [options[i % len(options)] for i in range(cfg.n_val)]
    val = (*simulate(val_imgs, [c for c, _ in which], [a for _, a in which], rng, cfg.n_coils, cfg.noise),
           torch.from_numpy(val_imgs.astype(np.complex64)))

    models, curves = {}, {}
    for cell in cfg.cells:
        models[cell], curves[cell] = train_rim(cell, cfg, pool, val, seed, progress)

    # test data: every lesion phantom plus Shepp-Logan, in every setting
    images = np.concatenate([test_imgs, shepp[None]])
    lesions = torch.from_numpy(np.concatenate([test_lesions, np.zeros((1, cfg.size, cfg.size), bool)]))
    target = torch.from_numpy(images.astype(np.complex64))
    methods = ["zero-filled", "CS-TV", *[CELL_NAMES[c] for c in cfg.cells]]
    per_setting, lambdas, lambda_scores, timing_examples, panels = {}, {}, {}, [], []
    bar = tqdm(options, desc="CS tuning + test", disable=not progress, leave=False)
    for coils, acc in bar:
        name = setting_name(coils, acc)
        bar.set_postfix(setting=name)
        lam, lambda_scores[name] = tune_lambda(cfg, pool, coils, acc, seed)
        lambdas[name] = lam
        srng = np.random.default_rng([seed, 19, coils, acc])
        y, sens, mask = simulate(images, [coils] * len(images), [acc] * len(images), srng, cfg.n_coils, cfg.noise)
        with torch.no_grad():
            recons = {"zero-filled": adjoint_op(y, sens, mask), "CS-TV": cs_tv(y, sens, mask, lam, cfg.cs_iters)}
            for cell in cfg.cells:
                recons[CELL_NAMES[cell]] = models[cell](y, sens, mask)[-1]
        n = cfg.n_test
        per_setting[name] = {m: {**image_metrics(r[:n], target[:n], lesions[:n]),
                                 "shepp_logan_ssim": image_metrics(r[n:], target[n:])["ssim"]}
                             for m, r in recons.items()}
        timing_examples += [(y[i:i + 1], sens[i:i + 1], mask[i:i + 1], lam) for i in range(cfg.n_timing)]
        if (coils, acc) == options[-1]:  # the hardest setting: a lesion phantom and Shepp-Logan
            i = int(test_lesions.reshape(n, -1).sum(1).argmax())
            for k, title in ((i, f"lesion phantom, {name}"), (n, f"Shepp-Logan, {name}")):
                panels.append({"title": title, "target": np.abs(images[k]), "lesion": lesions[k].numpy(),
                               "recons": {m: r[k].abs().numpy().astype(np.float64) for m, r in recons.items()}})
    bar.close()

    # milliseconds per reconstruction, one at a time, each setting's first n_timing test images
    ms = {"CS-TV": _timed(lambda y, s, m, lam: cs_tv(y, s, m, lam, cfg.cs_iters), timing_examples)}
    for cell in cfg.cells:
        ms[CELL_NAMES[cell]] = _timed(lambda y, s, m, lam, model=models[cell]: model(y, s, m), timing_examples)

    mean = {m: {k: float(np.mean([per_setting[s][m][k] for s in per_setting])) for k in per_setting[
        next(iter(per_setting))][m]} for m in methods}
    scale = (f"{cfg.size}x{cfg.size} synthetic brain phantoms, {len(options)} settings (1/{cfg.n_coils} coils x "
             f"{'/'.join(map(str, cfg.accelerations))}x), C={cfg.channels}, {cfg.train_steps} steps x batch "
             f"{cfg.batch_size}, CS-TV {cfg.cs_iters} iterations")
    rows = []
    for key, label, fmt in (("ssim", "SSIM", ".4f"), ("psnr", "PSNR dB", ".2f"), ("nmse", "NMSE", ".4f"),
                            ("lesion_nmse", "NMSE inside lesions (unseen in training)", ".4f")):
        for m in methods:
            paper = "RIM better than CS" if key == "lesion_nmse" and m != "zero-filled" else "-"
            rows.append(ResultRow(f"test {label}, {m}", mean[m][key], paper, scale, fmt))
    for m in methods[1:]:
        rows.append(ResultRow(f"Shepp-Logan SSIM (never seen), {m}", mean[m]["shepp_logan_ssim"], "-", scale))
    for m, v in ms.items():
        rows.append(ResultRow(f"ms per reconstruction (1 CPU thread), {m}", v, "-", scale, ".1f"))
    if "indrnn" in cfg.cells:
        rows.append(ResultRow("inference time reduction of RIM-IndRNN vs CS-TV", 1 - ms["RIM-IndRNN"] / ms["CS-TV"],
                              "68%", scale, ".1%"))
    result = RecipeResult(recipe="rim_mri", quick=quick, seed=seed, rows=rows,
                          details={"config": asdict(cfg), "mean_over_settings": mean, "per_setting": per_setting,
                                   "ms_per_reconstruction": ms, "cs_lambda": lambdas, "cs_lambda_ssim": lambda_scores,
                                   "curves": curves,
                                   "parameters": {CELL_NAMES[c]: sum(p.numel() for p in models[c].parameters())
                                                  for c in cfg.cells},
                                   "timing_note": "ms are wall-clock medians; they vary between runs and machines"})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for path, draw in ((out / "rim_mri_reconstructions.png", lambda p: _plot_recons(panels, p)),
                           (out / "rim_mri_curves.png", lambda p: _plot_curves(curves, p))):
            draw(path)
            result.files.append(str(path))
    return result
