"""Learning-rate schedules: multipliers of the peak learning rate at a (0-based) step.

    warmup_cosine         linear warm-up, *then* a cosine from 1 to ``min_ratio`` over the remaining steps
                          (the trainer's schedule)
    warmup_times_cosine   a cosine from 1 to ``min_ratio`` over all steps, *multiplied by* a linear warm-up ramp
                          (the keyboard recipe's)
    epoch_cosine          a cosine from 1 to 0 over epochs, constant within each epoch, no warm-up
                          (Zoology's CosineAnnealingLR stepped once per epoch)
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_times_cosine(step: int, *, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based):

        min(1, (step + 1) / warmup) * [(1 + min_ratio) / 2 + (1 - min_ratio) / 2 * cos(π min(step, total) / total)]

    The cosine starts at step 0 (1 there, ``min_ratio`` at ``total`` and after) and the warm-up ramp scales it
    instead of preceding it, so the multiplier peaks at the end of the ramp slightly below 1 (0.9976 at step 99
    with ``warmup`` = 100, ``total`` = 3000). ``warmup`` <= 0: no ramp.
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return ramp * ((1 + min_ratio) / 2 + (1 - min_ratio) / 2 * math.cos(math.pi * min(step, total) / total))


def epoch_cosine(step: int, *, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based): (1 + cos(π e / epochs)) / 2 in epoch
    e = step // steps_per_epoch (1 in the first epoch, 0 from epoch ``epochs`` on), as torch's
    CosineAnnealingLR(T_max=epochs, eta_min=0) stepped at the end of every epoch."""
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"steps_per_epoch and epochs must be >= 1, got {steps_per_epoch} and {epochs}")
    epoch = min(step // steps_per_epoch, epochs)
    return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
