"""One supervised training loop for models that fit in memory (the application recipes).

    history = train_epochs(model, optimizer, loss_fn, TensorBatches((x, y), 32, generator), epochs=20,
                           validate=lambda: {"val_loss": ...}, select="val_loss", patience=3)
    history = train_steps(model, optimizer, loss_fn, batch_fn, steps=3000, eval_every=500,
                          lr_factor=partial(warmup_cosine, total=3000, warmup=100, min_ratio=0.1))

A batch is a tuple ``(*inputs, target)``; a step computes ``loss = loss_fn(model(*inputs), target)``, back-propagates
it, optionally clips the gradient norm and takes one optimizer step at ``base_lr * lr_factor(step)``. Steps are
grouped in *windows*: one pass over ``batches`` (:func:`train_epochs`) or ``eval_every`` steps (:func:`train_steps`).
After every window ``validate()`` is called; with ``select`` the weights of the best window are kept and restored
at the end, and with ``patience`` training stops after that many windows without improvement.

The loop draws no random numbers itself: given the same model, optimizer state and batches (seeded by the caller)
it repeats a run bit for bit. It works unchanged with an Opacus-wrapped model, optimizer and Poisson-sampling
DataLoader (per-example clipping is then the optimizer's; ``grad_clip`` is refused).

:class:`recurlab.train.Trainer` is the language-model trainer (token batches by step number, checkpoints with exact
resume, DDP); this loop is the small one for arbitrary in-memory models and losses, with no files and no processes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

Batch = Sequence[torch.Tensor]  # (*inputs, target); the model is called as model(*inputs)


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors, a new permutation per pass (like a shuffling DataLoader,
    without per-example collation).

    ``tensors``: tensors sharing dim 0 (N, ...); each pass draws ``torch.randperm(N, generator=generator)`` and
    yields ``tuple(t[idx] for t in tensors)`` for consecutive ``batch_size`` slices of it (the last may be smaller).
    """

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, generator: torch.Generator):
        if not tensors or any(t.shape[0] != tensors[0].shape[0] for t in tensors):
            raise ValueError(f"tensors must be a non-empty sequence sharing dim 0, got shapes "
                             f"{[tuple(t.shape) for t in tensors]}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors, self.batch_size, self.generator = tuple(tensors), batch_size, generator

    def __len__(self) -> int:
        return math.ceil(self.tensors[0].shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(self.tensors[0].shape[0], generator=self.generator)
        for idx in order.split(self.batch_size):
            yield tuple(t[idx] for t in self.tensors)


@dataclass
class History:
    """What a run did. Steps and windows are counted from 0; ``val[i]`` is ``validate()`` after window i.

    Attributes:
        step_loss: the loss of every optimizer step.
        step_size: the examples in every step's batch (``target.shape[0]``).
        lr: the learning rate of the first parameter group at every step.
        window_loss: the mean training loss of every window, weighted by examples.
        window_end: the number of steps done at the end of every window.
        val: ``validate()``'s metrics after every window (empty without ``validate``).
        best_window: the window whose weights were kept (-1: none, e.g. no ``select``).
        best_value: its ``val[best_window][select]``.
        stopped_early: whether ``patience`` ended the run.
    """

    step_loss: list[float] = field(default_factory=list)
    step_size: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    window_loss: list[float] = field(default_factory=list)
    window_end: list[int] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    best_window: int = -1
    best_value: float | None = None
    stopped_early: bool = False


def train_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, batches: Iterable[Batch],
                 epochs: int, **options) -> History:
    """Train for ``epochs`` passes over ``batches`` (re-iterated every epoch: a DataLoader, an Opacus DPDataLoader,
    :class:`TensorBatches`); one window per epoch. ``options``: those of :func:`train_windows`."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    try:
        total = epochs * len(batches)  # type: ignore[arg-type]
    except TypeError:  # an iterable without a length: the bar counts steps without a total
        total = None
    return train_windows(model, optimizer, loss_fn, (batches for _ in range(epochs)), total, **options)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                batch_fn: Callable[[int], Batch], steps: int, eval_every: int, **options) -> History:
    """Train for ``steps`` steps on ``batch_fn(step)`` (called once per step, for step = 0, 1, ..., in order);
    one window per ``eval_every`` steps, the last one ending at ``steps``. ``options``: those of
    :func:`train_windows`."""
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be >= 1, got {steps}, {eval_every}")
    windows = ((batch_fn(s) for s in range(start, min(start + eval_every, steps)))
               for start in range(0, steps, eval_every))
    return train_windows(model, optimizer, loss_fn, windows, steps, **options)


def train_windows(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                  windows: Iterable[Iterable[Batch]], total_steps: int | None, *,
                  lr_factor: Callable[[int], float] | None = None, grad_clip: float | None = None,
                  validate: Callable[[], dict[str, float]] | None = None, select: str | None = None,
                  maximize: bool = False, patience: int | None = None, progress: bool = False,
                  desc: str = "train") -> History:
    """The loop itself, behind :func:`train_epochs` and :func:`train_steps` (use it directly for other windows).

    Args:
        model: called as ``model(*inputs)``; put in training mode at the start of every window (``validate`` may
            switch it to evaluation mode).
        optimizer: any torch optimizer (Opacus' DPOptimizer included). Its learning rates when a loop first
            sees it (kept as each group's ``initial_lr``) are the peaks that ``lr_factor`` scales, in this call
            and in later calls with the same optimizer.
        loss_fn: ``loss_fn(output, target) -> scalar tensor``.
        windows: an iterable of windows, each an iterable of batches ``(*inputs, target)``. Batches with no
            examples (which Poisson sampling can draw) are skipped and take no step.
        total_steps: for the progress bar (None: unknown).
        lr_factor: multiplier of the peak learning rate at step s (0-based), e.g. a function of
            :mod:`recurlab.train.schedule` with its keywords bound; None: constant.
        grad_clip: clip the gradient's global L2 norm to this before every step; None: no clipping.
        validate: called after every window; returns metrics (plain floats) recorded in ``History.val``. Run its
            forward passes under ``torch.no_grad()``: an Opacus model records the activations of every forward
            that could back-propagate, and a stray one breaks its next per-example gradients.
        select: the metric of ``validate`` that picks the weights to keep (lower is better unless ``maximize``);
            the best window's weights are restored at the end. None: the final weights are kept.
        patience: stop after this many windows in a row without a better ``select`` metric. None: never.
        progress: show a tqdm bar that advances every step, with the window's running loss and the last
            validation metrics in its postfix.
        desc: the bar's label.
    """
    if grad_clip is not None and hasattr(optimizer, "noise_multiplier"):
        raise ValueError("grad_clip clips the batch gradient, which an Opacus DPOptimizer replaces by its noised "
                         "sum of per-example clipped gradients; set max_grad_norm in make_private instead")
    if (select is not None or patience is not None) and validate is None:
        raise ValueError("select and patience need validate")
    if patience is not None and (select is None or patience < 1):
        raise ValueError(f"patience needs select and must be >= 1, got select={select!r}, patience={patience}")
    # the peaks: each group's rate when a loop first saw it, kept in the group as torch's schedulers keep theirs;
    # a caller that runs the loop one epoch at a time (the vision trainer) then continues one schedule instead of
    # scaling the rates the previous call left, which compounded the decay epoch after epoch
    base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
    history = History()
    best_state, stale = None, 0
    bar = tqdm(total=total_steps, desc=desc, unit="step", disable=not progress, leave=False, dynamic_ncols=True)
    step = 0
    for window, batches in enumerate(windows):
        model.train()
        total, count = 0.0, 0
        for batch in batches:
            *inputs, target = batch
            if target.shape[0] == 0:
                continue
            if lr_factor is not None:
                factor = lr_factor(step)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
            loss = loss_fn(model(*inputs), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            value, n = loss.item(), target.shape[0]
            history.step_loss.append(value)
            history.step_size.append(n)
            history.lr.append(optimizer.param_groups[0]["lr"])
            total += value * n
            count += n
            step += 1
            bar.update(1)
            if not bar.disable:
                bar.set_postfix(loss=f"{total / count:.4f}", **_short(history.val[-1:]), refresh=False)
        history.window_loss.append(total / max(count, 1))
        history.window_end.append(step)
        if validate is None:
            continue
        metrics = validate()
        history.val.append(metrics)
        if not bar.disable:
            bar.set_postfix(loss=f"{history.window_loss[-1]:.4f}", **_short(history.val[-1:]))
        if select is None:
            continue
        value = metrics[select]
        if history.best_value is None or (value > history.best_value if maximize else value < history.best_value):
            history.best_window, history.best_value, stale = window, value, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if patience is not None and stale >= patience:
                history.stopped_early = True
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def _short(last_val: list[dict[str, float]]) -> dict[str, str]:
    """The last validation metrics, formatted for the bar's postfix."""
    return {k: f"{v:.4f}" for k, v in last_val[0].items()} if last_val else {}
