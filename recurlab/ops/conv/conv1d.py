"""The ``conv`` backend of ``causal_conv1d``: torch's conv1d with one group per channel.

y_t = sum_i weight[:, i] * x_{t-W+1+i}, the short depthwise causal convolution
in front of most recurrent mixers (Mamba, GLA's short conv, Zoology's BaseConv,
GAM's local pathway). Causality comes from the history prepended by the caller:
the convolution is "valid" over it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_conv(full: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """full (B, W-1+T, D): the W-1 earlier inputs then x; weight (D, W) -> y (B, T, D), no bias."""
    D = weight.shape[0]
    return F.conv1d(full.transpose(1, 2), weight.unsqueeze(1), groups=D).transpose(1, 2)
