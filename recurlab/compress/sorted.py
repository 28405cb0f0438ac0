"""SortedNet (Valipour et al. 2023): train every nested sub-model of a language model at once.

A sub-model (recurlab/models/submodel.py) is the first ``depth`` blocks with channel mixers narrowed to their
first ``width`` hidden units, sharing the model's tensors. A grid of (depth, width) pairs names the sub-models to
train. Each optimizer step, on the step's batch (x, y):

    b_1 .. b_G ~ Uniform(grid)                         drawn with replacement, seeded by (seed, step)
    g = (1/G) sum_g grad_theta L(f_{b_g}(x; theta), y) the gradients of the G sub-models, accumulated
    theta <- AdamW(theta, g)

so the first blocks and the first hidden units, which every sub-model uses, are trained the most: the network
comes out "sorted", and a smaller model is a prefix of it with no search at inference. The accumulation is one
backward of the mean of the G losses (the same gradient as G backward passes; all G graphs are held at once,
which is what a small model on a CPU can afford). With G = len(grid), a SortedNet run costs in expectation as
much as training every sub-model on its own for the same number of steps: the comparison of recurlab bench sorted.

Our reading of the paper (no official code was found): the paper draws a random sub-model per iteration and
accumulates gradients over several draws before each update (its "gradient accumulation"); whether all draws of
one update see the same mini-batch is not stated in what we could read: here they do.

    sorted_model = SortedTraining(model, nested_grid(model, depths=[1, 2, 4], widths=[128, 256, 512]), samples=9)
    Trainer(sorted_model, train, val, TrainConfig(...)).fit()   # the Trainer calls sorted_model.labelled_loss
    model.submodel(depth=2, width=256)                           # then any grid point is a working model
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.causal_lm import CausalLM
from ..models.submodel import SubModel, check_nestable, hidden_width


def nested_grid(model: CausalLM, depths: list[int] | None = None, widths: list[int] | None = None
                ) -> list[tuple[int, int]]:
    """Every (depth, width) pair of ``depths`` x ``widths`` (None: the full depth / hidden width only), checked
    against ``model``; widths are hidden units of the channel mixers."""
    n = len(getattr(model.depth, "blocks", ()))
    check_nestable(model, None, None)
    hidden = hidden_width(model.depth.blocks[0].channel_mixer) if model.config.channel_mixer else None
    depths = [n] if depths is None else list(depths)
    widths = [hidden] if widths is None else list(widths)
    if not depths or not widths:
        raise ValueError("depths and widths must each name at least one value")
    if widths != [None] and hidden is None:
        raise ValueError("widths= needs channel mixers, and this model has none")
    grid = []
    for depth in depths:
        for width in widths:
            check_nestable(model, depth, width)
            grid.append((depth, width))
    if len(set(grid)) != len(grid):
        raise ValueError(f"depths and widths must not repeat a value, got depths={depths}, widths={widths}")
    return grid


class SortedTraining(nn.Module):
    """The module a :class:`~recurlab.train.trainer.Trainer` trains for SortedNet: ``labelled_loss`` is the mean
    loss of ``samples`` sub-models drawn from ``grid``; ``features`` / ``logits`` (what evaluation calls) are the
    full model's. ``draws`` counts training batches (a buffer: saved in checkpoints, so a resumed run draws the
    same sub-models)."""

    def __init__(self, model: CausalLM, grid: list[tuple[int, int]], samples: int | None = None, seed: int = 0):
        super().__init__()
        if not grid:
            raise ValueError("grid must name at least one (depth, width) sub-model")
        samples = len(grid) if samples is None else samples
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an int >= 1 (sub-models per step), got {samples!r}")
        self.model, self.grid, self.samples, self.seed = model, list(grid), samples, seed
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        # views, not submodules: their tensors are self.model's, and the state dict must name them once
        self._views = {key: SubModel(model, *key) for key in self.grid}

    def submodel(self, depth: int, width: int) -> SubModel:
        return self._views[(depth, width)]

    def draw(self, index: int) -> list[tuple[int, int]]:
        """The ``samples`` grid points of training batch ``index`` (a pure function of seed and index)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        picks = torch.randint(len(self.grid), (self.samples,), generator=generator)
        return [self.grid[int(i)] for i in picks]

    def labelled_loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean over the drawn sub-models of their summed cross-entropy, number labelled); in eval mode the full
        model's."""
        from ..train.trainer import labelled_loss

        if not self.training:
            return labelled_loss(self.model, inputs, labels)
        picks = self.draw(int(self.draws))
        self.draws += 1
        total, count = 0.0, None
        for key in picks:  # a view's own modules (Block wrappers, PrefixChannel) have no mode-dependent layers
            loss, count = labelled_loss(self._views[key], inputs, labels)
            total = total + loss
        return total / len(picks), count

    def features(self, input_ids: torch.Tensor, *args, **kwargs):
        return self.model.features(input_ids, *args, **kwargs)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.logits(features)

    def extra_repr(self) -> str:
        return f"grid={self.grid}, samples={self.samples}, seed={self.seed}"
