"""The language-modelling loss: cross-entropy over the labelled positions only.

Labels are IGNORE (-100) where nothing is predicted (prompts, padding, MQAR's keys), so every loss,
evaluation and benchmark of recurlab goes through :func:`masked_cross_entropy`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tasks import IGNORE


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits`` (..., V) against ``labels`` (...) where ``labels != IGNORE``, in float32.

    reduction: "mean" (per labelled position; NaN when there is none), "sum", or "none" (the loss at
    every position, 0 where unlabelled, shaped like ``labels``).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits (..., V) and labels (...) must agree, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    mask = labels != IGNORE
    if reduction == "none":
        loss = torch.zeros(labels.shape, dtype=torch.float32, device=logits.device)
        loss[mask] = F.cross_entropy(logits[mask].float(), labels[mask], reduction="none")
        return loss
    if not bool(mask.all()):
        logits, labels = logits[mask], labels[mask]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), reduction=reduction)
