"""The ``reference`` backend of both causal convolutions: direct sums over the taps, the ground truth.

``causal_conv1d``: y_t = sum_i weight[:, i] * x_{t-W+1+i} (the short depthwise
convolution of Mamba, GLA, Zoology's BaseConv). ``long_conv``: y_t = sum_s
kernel[:, s] * x_{t-s} (Hyena, Poli et al. 2023, eq. 3). Both take the input
with its history already prepended, so they see no state and no bias.
"""

from __future__ import annotations

import torch


def causal_conv1d_reference(full: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """full (B, W-1+T, D): the W-1 earlier inputs then x; weight (D, W) -> y (B, T, D), no bias."""
    W = weight.shape[1]
    T = full.shape[1] - (W - 1)
    return sum(weight[:, i] * full[:, i : i + T] for i in range(W))


def long_conv_reference(full: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """full (B, L-1+T, D): the L-1 earlier inputs then x; kernel (D, L) by lag -> y (B, T, D), no skip."""
    L = kernel.shape[1]
    T = full.shape[1] - (L - 1)
    return sum(kernel[:, s] * full[:, L - 1 - s : L - 1 - s + T] for s in range(L))
