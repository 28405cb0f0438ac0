"""The ``fft`` backend of ``long_conv``: causal convolution with a long kernel by FFT, O(T log T).

y_t = sum_{s=0}^{L-1} kernel[:, s] * x_{t-s}, Hyena's long convolution (Poli et
al. 2023, "Hyena Hierarchy: Towards Larger Convolutional Language Models",
eq. 3). The FFT size is the next power of two >= (L-1+T) + L - 1, so the
circular convolution equals the linear one; it runs in float32 (float64 for
float64 inputs) and rounds once to the input dtype.
"""

from __future__ import annotations

import torch

from .. import _checks


def long_conv_fft(full: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """full (B, L-1+T, D): the L-1 earlier inputs then x; kernel (D, L) by lag -> y (B, T, D) in full's dtype, no skip."""
    L = kernel.shape[1]
    T = full.shape[1] - (L - 1)
    n = full.shape[1] + L - 1
    n_fft = 1 << (n - 1).bit_length()
    acc = _checks.accumulation_dtype(full.dtype)
    X = torch.fft.rfft(full.to(acc), n=n_fft, dim=1)  # (B, F, D)
    K = torch.fft.rfft(kernel.to(acc), n=n_fft, dim=1).t()  # (F, D)
    return torch.fft.irfft(X * K, n=n_fft, dim=1)[:, L - 1 : L - 1 + T].to(full.dtype)
