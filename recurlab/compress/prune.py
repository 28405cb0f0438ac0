"""Unstructured weight pruning: dead-neuron tracking, magnitude masks, IMP with rewinding, and AP on top of it.

AP ("Activate-while-Pruning"): Liu, Ghosh, Tan & Motani, "AP: Selective Activation for De-sparsifying Pruned
Neural Networks" (arXiv 2212.06145, 2022; TMLR 2023 as "... Pruned Networks"; official code
github.com/Martin1937/Activate-While-Pruning, ``resnet_20.py``). The paper's observation: the fewer weights a ReLU
network keeps, the fewer of its ReLU outputs are zero while it trains (the *dynamic dead-neuron rate*, DNR); AP
lowers the DNR further by choosing part of each round's pruning among the weights that hold neurons off.

    DNR          = #{ReLU outputs exactly 0} / #{ReLU outputs}, counted over every forward pass of training
                   (every sample, every unit, every spatial position or token)
    IMP round r  : train the masked network from the rewind point; with A_r the weights alive before the round,
                   remove ``round(rate x |A_r|)`` of them (global over all prunable tensors), then rewind the
                   survivors to their values at initialisation and train again
    IMP          : all ``round(rate x |A_r|)`` by smallest |w_end|
    AP           : ``round(rate x |A_r|) - round(ap_rate x |A_r|)`` by smallest |w_end|, then
                   ``round(ap_rate x |A_r|)`` more among the survivors with w_end < 0, those with the smallest
                   |w_end - w_start| (w_start: the weight when the round's training began, i.e. the rewind point)

Removing a negative weight raises the pre-activation it fed, so it can switch a dead unit on; a negative weight
that training barely moved is taken as one that matters little except for keeping units off. The defaults are
the official script's: 20% of the alive weights per round, 2 points of them by AP (``prune_percent=20``,
``ap_pruning_rate=2``). docs/prune.md lists what the official code does line by line and where this file differs.

Pieces:

- :class:`DeadNeuronTracker`: forward hooks on every ``nn.ReLU`` and every recurlab ``mlp`` channel mixer with a
  ReLU-family activation; counts zeros of the activation output exactly, per layer and overall.
- :func:`prunable_weights`, :class:`Masks`, :func:`sparsity`: which weights, their 0/1 masks, masks kept applied
  through optimizer steps.
- :func:`magnitude_prune`, :func:`ap_prune`: one pruning step each (global, exact counts).
- :func:`iterative_prune`: IMP with rewinding to initialisation, optionally with AP; a :class:`PruneRound` per round.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

RELU_FAMILY = ("relu", "relu2")  # activations of recurlab's mlp channel mixer whose zeros are dead units


# ------------------------------------------------------------------------------------------- dead neurons


def relu_activations(model: nn.Module) -> dict[str, nn.Module]:
    """name -> module for every ``nn.ReLU`` of ``model`` and every recurlab ``mlp`` channel mixer whose activation
    is ReLU-family ("relu" or "relu2"). An ``mlp`` with GELU has no exact zeros and is left out."""
    from ..layers.mlp import MLP

    found = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            found[name] = module
        elif isinstance(module, MLP) and module.activation_name in RELU_FAMILY:
            found[name] = module
    return found


class DeadNeuronTracker:
    """Counts the zeros of ReLU outputs over every forward pass while it is open (the paper's dynamic DNR).

    For an ``nn.ReLU`` the output is hooked; for an ``mlp`` channel mixer the output of ``mlp.up`` (B, T, H) is
    passed through the mixer's own activation function, which gives exactly the tensor its forward multiplies by
    ``mlp.down`` (the activation is element-wise and deterministic). Every element counts as one neuron-sample:
    (B, C, H, W) conv maps count C x H x W per image, (B, T, H) hidden states H per token.

        with DeadNeuronTracker(model) as dnr:
            train(model)
        dnr.rate(), dnr.rates()   # overall, and {layer name: rate}

    ``modules``: name -> module to track (default :func:`relu_activations`); a ValueError if there is none.
    """

    def __init__(self, model: nn.Module, modules: dict[str, nn.Module] | None = None):
        from ..layers.mlp import MLP

        modules = relu_activations(model) if modules is None else modules
        if not modules:
            raise ValueError("model has no ReLU activations to track (nn.ReLU modules or mlp channel mixers with "
                             "activation 'relu' / 'relu2')")
        self.zeros = {name: 0 for name in modules}
        self.total = {name: 0 for name in modules}
        self._handles = []
        for name, module in modules.items():
            if isinstance(module, MLP):
                if module.activation_name not in RELU_FAMILY:
                    raise ValueError(f"modules[{name!r}] is an mlp with activation {module.activation_name!r}; "
                                     f"valid: {', '.join(RELU_FAMILY)}")
                hook = self._mlp_hook(name, module.activation)
                self._handles.append(module.up.register_forward_hook(hook))
            elif isinstance(module, nn.ReLU):
                self._handles.append(module.register_forward_hook(self._relu_hook(name)))
            else:
                raise ValueError(f"modules[{name!r}] is a {type(module).__name__}; valid: nn.ReLU or an mlp mixer")

    def _count(self, name: str, activated: torch.Tensor) -> None:
        self.zeros[name] += int((activated == 0).sum())
        self.total[name] += activated.numel()

    def _relu_hook(self, name: str):
        def hook(module, inputs, output):
            self._count(name, output.detach())
        return hook

    def _mlp_hook(self, name: str, activation: Callable[[torch.Tensor], torch.Tensor]):
        def hook(module, inputs, output):
            with torch.no_grad():
                self._count(name, activation(output.detach()))
        return hook

    def reset(self) -> None:
        """Forget the counts so far (the hooks stay)."""
        for name in self.zeros:
            self.zeros[name] = self.total[name] = 0

    def rates(self) -> dict[str, float]:
        """{layer name: zeros / outputs} over the forward passes seen; NaN for a layer that saw none."""
        return {name: self.zeros[name] / self.total[name] if self.total[name] else float("nan") for name in self.zeros}

    def rate(self) -> float:
        """All layers together: total zeros / total outputs (layers weigh by their number of outputs)."""
        total = sum(self.total.values())
        return sum(self.zeros.values()) / total if total else float("nan")

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "DeadNeuronTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------- masks

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_weights(model: nn.Module, under: str | Iterable[str] | None = None) -> dict[str, nn.Parameter]:
    """``{"<module name>.weight": weight}`` of every ``nn.Linear`` and ``nn.ConvNd`` of ``model`` (biases, norms and
    embeddings are never pruned), optionally only those whose module name starts with one of ``under`` (e.g.
    ``"depth."`` for a language model's blocks). A weight shared by two modules (a tied head) is listed once, under
    its first name. A ValueError if nothing matches."""
    prefixes = (under,) if isinstance(under, str) else (tuple(under) if under is not None else None)
    found, seen = {}, set()
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES):
            continue
        if prefixes is not None and not name.startswith(prefixes):
            continue
        if id(module.weight) in seen:
            continue
        seen.add(id(module.weight))
        found[f"{name}.weight"] = module.weight
    if not found:
        raise ValueError(f"under={under!r} matches no nn.Linear / nn.Conv weight of the model")
    return found


@dataclass
class Masks:
    """0/1 masks of some weights: ``masks[name]`` has the shape of ``weights[name]``; 1 = alive.

    :meth:`apply` zeroes the pruned weights; :meth:`enforce` keeps them zero through every step of an optimizer
    (a step post-hook that applies the masks again, so momentum and weight decay cannot revive them).
    """

    weights: dict[str, nn.Parameter]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if not self.masks:
            self.masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in self.weights.items()}
        if set(self.masks) != set(self.weights):
            raise ValueError(f"masks must name the same weights as weights; got {sorted(self.masks)} vs "
                             f"{sorted(self.weights)}")
        for name, m in self.masks.items():
            if m.shape != self.weights[name].shape:
                raise ValueError(f"masks[{name!r}] has shape {tuple(m.shape)}, the weight "
                                 f"{tuple(self.weights[name].shape)}")
            self.masks[name] = m.to(torch.bool)

    @classmethod
    def of(cls, model: nn.Module, under: str | Iterable[str] | None = None) -> "Masks":
        """All-ones masks over :func:`prunable_weights` (``model``, ``under``)."""
        return cls(prunable_weights(model, under))

    def alive(self) -> int:
        return sum(int(m.sum()) for m in self.masks.values())

    def numel(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    def sparsity(self) -> float:
        """Fraction of the masked weights that are pruned."""
        return 1 - self.alive() / self.numel()

    def with_masks(self, masks: dict[str, torch.Tensor]) -> "Masks":
        return Masks(self.weights, masks)

    @torch.no_grad()
    def apply(self) -> None:
        """Set every pruned weight to exactly 0."""
        for name, w in self.weights.items():
            w.mul_(self.masks[name])

    def enforce(self, optimizer: torch.optim.Optimizer):
        """Apply the masks after every ``optimizer.step()`` from now on (and once now); returns the hook's handle
        (``handle.remove()`` stops it)."""
        self.apply()
        return optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply())


def sparsity(model: nn.Module, under: str | Iterable[str] | None = None) -> float:
    """Fraction of exactly-zero entries among :func:`prunable_weights` (``model``, ``under``)."""
    weights = prunable_weights(model, under)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    return zeros / sum(w.numel() for w in weights.values())


# ---------------------------------------------------------------------------------------------- pruning steps


def _flat(values: dict[str, torch.Tensor], masks: Masks) -> tuple[torch.Tensor, torch.Tensor]:
    """(values of every masked weight, in the order of masks.weights, flattened; the alive flags likewise)."""
    names = list(masks.weights)
    return (torch.cat([values[n].detach().reshape(-1).float() for n in names]),
            torch.cat([masks.masks[n].reshape(-1) for n in names]))


def _unflat(keep: torch.Tensor, masks: Masks) -> Masks:
    out, start = {}, 0
    for name, w in masks.weights.items():
        out[name] = keep[start:start + w.numel()].reshape(w.shape)
        start += w.numel()
    return masks.with_masks(out)


def _check_count(count: int, limit: int, what: str) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= limit:
        raise ValueError(f"count must be an integer in [0, {limit}] ({what}), got {count!r}")


def _remove_smallest(score: torch.Tensor, candidates: torch.Tensor, alive: torch.Tensor, count: int) -> torch.Tensor:
    """alive with the ``count`` candidates of smallest score set to False (ties: the earlier index goes first)."""
    index = torch.nonzero(candidates).squeeze(1)
    order = torch.sort(score[index], stable=True).indices[:count]
    keep = alive.clone()
    keep[index[order]] = False
    return keep


def magnitude_prune(masks: Masks, count: int) -> Masks:
    """New masks without the ``count`` alive weights of smallest |w| over all masked tensors together (global).

    ``count`` is in [0, alive]; the current values of ``masks.weights`` are the magnitudes."""
    values, alive = _flat({n: w for n, w in masks.weights.items()}, masks)
    _check_count(count, int(alive.sum()), "alive weights")
    return _unflat(_remove_smallest(values.abs(), alive, alive, count), masks)


def ap_prune(masks: Masks, start: dict[str, torch.Tensor], count: int) -> Masks:
    """AP's step: new masks without ``count`` more alive weights, chosen among those with w_end < 0 (the weights'
    current values) as the ones with the smallest |w_end - w_start|, over all masked tensors together.

    ``start``: name -> the weight's value when the round's training began (same shapes). ``count`` is in
    [0, number of alive negative weights]."""
    if set(start) != set(masks.weights):
        raise ValueError(f"start must name the masked weights {sorted(masks.weights)}, got {sorted(start)}")
    end, alive = _flat({n: w for n, w in masks.weights.items()}, masks)
    begin, _ = _flat(start, masks)
    negative = alive & (end < 0)
    _check_count(count, int(negative.sum()), "alive weights below zero")
    return _unflat(_remove_smallest((end - begin).abs(), negative, alive, count), masks)


# ------------------------------------------------------------------------------------------------ IMP and AP


@dataclass
class PruneRound:
    """One round of :func:`iterative_prune`: the network trained at this sparsity and what it measured."""

    round: int
    sparsity: float  # pruned fraction of the masked weights during this round's training
    alive: int
    dnr: float  # dynamic DNR over this round's training (all tracked layers)
    dnr_by_layer: dict[str, float]
    ap_removed: int  # weights AP removed before this round (0 for IMP and for round 0)
    metrics: dict  # what ``evaluate`` returned


def _check_rates(rounds: int, rate: float, ap_rate: float) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    if not 0 <= ap_rate <= rate:
        raise ValueError(f"ap_rate must be in [0, rate={rate}], got {ap_rate!r}")


def iterative_prune(model: nn.Module, masks: Masks, train: Callable[[nn.Module, Masks], None],
                    evaluate: Callable[[nn.Module], dict], rounds: int, rate: float = 0.2, ap_rate: float = 0.0,
                    on_round: Callable[[PruneRound], None] | None = None) -> list[PruneRound]:
    """Iterative magnitude pruning with rewinding to initialisation (Frankle & Carbin's lottery-ticket loop), and
    AP when ``ap_rate`` > 0. Returns ``rounds + 1`` :class:`PruneRound` (round 0 is the dense network).

    ``masks``: the starting masks over weights of ``model`` (e.g. :meth:`Masks.of`; each round makes new ones);
    ``train(model, masks)`` trains the model in place and must keep the masks applied (:meth:`Masks.enforce` on
    its optimizer);
    ``evaluate(model)`` returns the metrics to record. Each round: train from the rewind point while a
    :class:`DeadNeuronTracker` counts the DNR, evaluate, then (unless it was the last round) remove
    ``round(rate x alive)`` weights, ``round(ap_rate x alive)`` of them by :func:`ap_prune` and the rest by
    :func:`magnitude_prune`, and rewind every parameter and buffer of the model to its initial value (the
    pruned weights to 0). The model ends as trained in the last round.
    """
    _check_rates(rounds, rate, ap_rate)
    initial = copy.deepcopy(model.state_dict())
    masks.apply()
    start = {name: w.detach().clone() for name, w in masks.weights.items()}
    history, ap_removed = [], 0
    for r in range(rounds + 1):
        with DeadNeuronTracker(model) as tracker:
            train(model, masks)
        history.append(PruneRound(r, masks.sparsity(), masks.alive(), tracker.rate(), tracker.rates(), ap_removed,
                                  evaluate(model)))
        if on_round is not None:
            on_round(history[-1])
        if r == rounds:
            break
        alive = masks.alive()
        total, ap_removed = round(rate * alive), round(ap_rate * alive)
        masks = magnitude_prune(masks, total - ap_removed)
        if ap_removed:
            negative = sum(int((m & (w < 0)).sum()) for m, w in zip(masks.masks.values(), masks.weights.values()))
            shortfall = max(ap_removed - negative, 0)  # too few negative survivors: the rest by magnitude
            ap_removed -= shortfall
            masks = magnitude_prune(ap_prune(masks, start, ap_removed), shortfall)
        model.load_state_dict(initial)
        masks.apply()
        start = {name: w.detach().clone() for name, w in masks.weights.items()}
    return history
