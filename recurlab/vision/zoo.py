"""Every vision backbone of this package by name, built at a parameter budget, and rebuilt from a saved spec.

    model = build_model("hornet", classes=10, size=32, target=500_000)     # widths searched for the budget
    spec = model_spec("hornet", classes=10, size=32, target=500_000)       # what rebuilds it: plain JSON
    same = build_from_spec(spec)                                           # the same architecture, new weights

Names (:data:`MODELS`) and what each builds, for ``in_chans``-channel ``size`` x ``size`` images:

    hornet              HorNet, g^n Conv orders (2, 3, 4, 5) by stage (Rao et al. 2022)
    hornet-n1..n5       the order ablation: hornet's depths and widths, every stage at order n
    convnext            ConvNeXt (Liu et al. 2022) with hornet's depths: the block's spatial op is a 7x7
                        depthwise conv, so hornet vs convnext isolates g^n Conv
    resnet-conv         BottleneckResNet, 3x3 conv in every bottleneck (Han et al. 2022's baseline)
    resnet-dwconv       resnet-conv's widths, 3x3 depthwise conv
    resnet-maxpool      resnet-conv's widths, 3x3 max-pool (PfLayer: no parameters in the spatial op)
    resnet-avgpool      resnet-conv's widths, 3x3 average pool
    activator           Activator (Abdullah & Aydin 2024): ViT with the attention replaced by a GLU unit
    activator-light     Activator without the FFN
    vit                 a small ViT (4 heads, depth 4), the Activator's baseline
    sret                SReT (Shen, Liu & Xing 2022): SReT-T's heads (2, 4, 8), unique blocks (2, 5, 3) each
                        applied twice, the official slices, a non-shared projection after every application
    sret-n1             sret's widths and blocks applied once: no recursion (the projections of the
                        second loop are the only parameters that go away)

The patchify models (hornet, convnext, activator, vit, sret) cut the image to an 8 x 8 grid at their first stage
(patch or stem stride ``size // 8``); the ResNets keep PfLayer's CIFAR-style stem and see every pixel.

Widths (:func:`pick_widths`): each family has a grid, and the grid point whose parameter count is nearest to
``target`` on a log scale is built. The ablations (hornet-n*, resnet-* but conv, sret-n1) take their reference's
widths, so their counts differ by what the order, the spatial op or the recursion costs: that is the trade
being measured.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

HORNET_ORDERS = tuple(f"hornet-n{n}" for n in range(1, 6))
RESNETS = ("resnet-conv", "resnet-dwconv", "resnet-maxpool", "resnet-avgpool")
SRETS = ("sret", "sret-n1")
MODELS = ("hornet", *HORNET_ORDERS, "convnext", *RESNETS, "activator", "activator-light", "vit", *SRETS)

HORNET_BASES = (16, 32, 48, 64)  # every stage width divisible by 2^(5-1): hornet-n5 runs at the same widths
SRET_HEADS, SRET_DEPTHS = (2, 4, 8), (2, 5, 3)  # SReT-T's (official SReT.py)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def family(model: str) -> str:
    """The family whose width grid ``model`` uses: hornet, convnext, resnet, activator, activator-light, vit, sret."""
    for prefix in ("hornet", "resnet", "sret"):
        if model.startswith(prefix):
            return prefix
    return model


def check_model(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    return model


def _patch(size: int) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < 8 or size % 8:
        raise ValueError(f"size must be a multiple of 8 (patch = size // 8 gives an 8 x 8 grid), got {size!r}")
    return size // 8


def build(model: str, width, *, classes: int, size: int, in_chans: int = 1, drop_path: float = 0.0) -> nn.Module:
    """``model`` at an explicit ``width`` (a point of its family's grid, as :func:`pick_widths` returns it)."""
    from . import Activator, BottleneckResNet, ConvNeXt, HorNet, SReT, ViT

    check_model(model)
    patch = _patch(size)
    fam = family(model)
    if fam == "hornet":
        depths, base = width
        orders = (2, 3, 4, 5) if model == "hornet" else (int(model[-1]),) * 4
        return HorNet(in_chans, classes, tuple(depths), (base, 2 * base, 4 * base, 8 * base), orders,
                      patch_size=patch, drop_path_rate=drop_path)
    if fam == "convnext":
        depths, base = width
        return ConvNeXt(in_chans, classes, tuple(depths), (base, 2 * base, 4 * base, 8 * base), patch_size=patch,
                        drop_path_rate=drop_path)
    if fam == "resnet":
        return BottleneckResNet(classes, in_chans, (2, 2, 2), (width, 2 * width, 4 * width),
                                spatial=model.split("-", 1)[1])
    if fam in ("activator", "activator-light"):
        return Activator(size, patch, classes, width, 4, light=fam == "activator-light", in_chans=in_chans,
                         dropout=0.0)
    if fam == "vit":
        return ViT(size, patch, classes, width, 4, n_heads=4, in_chans=in_chans)
    # sret: the stem's stride-2 convs bring the image to 8 x 8
    if patch < 2 or patch & (patch - 1):
        raise ValueError(f"{model} needs size // 8 to be a power of two >= 2 (its stem is stride-2 convs), "
                         f"got size={size}")
    return SReT(size, classes, in_chans, stem_stride=patch, head_dim=width, heads=SRET_HEADS, depths=SRET_DEPTHS,
                n_loops=1 if model == "sret-n1" else 2, drop_path=drop_path)


def _grid(fam: str, hornet_depths=None) -> list[list]:
    """The search grid of a family, as runs of grid points whose parameter count grows along the run."""
    if fam == "hornet":
        return [[((a, a, c, a), b) for c in range(1, 10)] for b in HORNET_BASES for a in (1, 2)]
    if fam == "convnext":
        return [[(hornet_depths, b) for b in range(4, 257, 4)]]
    if fam == "resnet":
        return [list(range(4, 129, 2))]
    if fam == "sret":
        return [list(range(2, 65))]  # head_dim
    return [list(range(16, 513, 8))]  # activator, activator-light, vit (4 heads)


# the model of each family whose widths the search fits to the target
_REFERENCE = {"hornet": "hornet", "convnext": "convnext", "resnet": "resnet-conv", "activator": "activator",
              "activator-light": "activator-light", "vit": "vit", "sret": "sret"}


@functools.lru_cache(maxsize=None)
def pick_widths(fam: str, target: int, classes: int, size: int, in_chans: int = 1):
    """The grid point of family ``fam`` whose parameter count (as built for ``classes`` and ``size``) is nearest
    to ``target`` on a log scale (ties: the first found, the smaller model).

    hornet: (depths, base) with depths (a, a, c, a), a in 1..2, c in 1..9, stage widths base x (1, 2, 4, 8),
    base in 16, 32, 48, 64 (shared by hornet and hornet-n1..n5); convnext: base in 4..256 step 4 at hornet's
    depths; resnet: stages (2, 2, 2), widths w x (1, 2, 4), w in 4..128 step 2, picked for resnet-conv and shared
    by the other three spatial ops (the PfLayer comparison is at equal widths, as in the paper); activator,
    activator-light and vit: depth 4, dim in 16..512 step 8, each picked on its own; sret: head_dim in 2..64
    (stage widths head_dim x (2, 4, 8)), picked for sret and shared by sret-n1. Along each run of the grid
    the search stops at the first model above the target (the counts only grow from there).

    The search builds models, which draws initial weights: it runs on a fork of torch's random state, so the
    caller's random numbers are the same whether the answer was cached or not (a model built after
    ``torch.manual_seed`` gets the same weights on a first and on a later call).
    """
    if fam not in _REFERENCE:
        raise ValueError(f"unknown model family {fam!r}; valid: {', '.join(_REFERENCE)}")
    with torch.random.fork_rng(devices=[]):
        return _search(fam, target, classes, size, in_chans)


def _search(fam: str, target: int, classes: int, size: int, in_chans: int):
    hornet_depths = pick_widths("hornet", target, classes, size, in_chans)[0] if fam == "convnext" else None
    best, best_gap = None, math.inf
    for run in _grid(fam, hornet_depths):
        for width in run:
            count = count_parameters(build(_REFERENCE[fam], width, classes=classes, size=size, in_chans=in_chans))
            gap = abs(math.log(count / target))
            if gap < best_gap - 1e-12:
                best, best_gap = width, gap
            if count > target:
                break
    return best


def build_model(model: str, *, classes: int, size: int, target: int, in_chans: int = 1,
                drop_path: float = 0.0) -> nn.Module:
    """``model`` (one of :data:`MODELS`) for ``in_chans``-channel ``size`` x ``size`` images and ``classes``
    classes, at the widths :func:`pick_widths` gives its family for ``target`` parameters."""
    return build_from_spec(model_spec(model, classes=classes, size=size, target=target, in_chans=in_chans,
                                      drop_path=drop_path))


def model_spec(model: str, *, classes: int, size: int, target: int, in_chans: int = 1,
               drop_path: float = 0.0) -> dict:
    """Everything that rebuilds ``model`` at ``target`` parameters, as plain JSON data (the searched widths
    included, so a later change of the search grid does not change a saved model)."""
    check_model(model)
    _patch(size)
    width = pick_widths(family(model), target, classes, size, in_chans)
    return {"model": model, "width": _jsonable(width), "classes": classes, "image_size": size, "in_chans": in_chans,
            "drop_path": drop_path}


def build_from_spec(spec: dict) -> nn.Module:
    """The model a :func:`model_spec` describes (freshly initialised)."""
    missing = {"model", "width", "classes", "image_size", "in_chans", "drop_path"} - set(spec)
    if missing:
        raise ValueError(f"spec is missing {', '.join(sorted(missing))}")
    width = spec["width"]
    if family(spec["model"]) in ("hornet", "convnext"):
        width = (tuple(width[0]), width[1])
    return build(spec["model"], width, classes=spec["classes"], size=spec["image_size"], in_chans=spec["in_chans"],
                 drop_path=spec["drop_path"])


def _jsonable(width):
    return [list(width[0]), width[1]] if isinstance(width, tuple) else width


def describe_widths(spec: dict) -> str:
    """The widths of a spec in words, for tables."""
    fam, width, size = family(spec["model"]), spec["width"], spec["image_size"]
    if fam in ("hornet", "convnext"):
        depths, base = width
        return f"depths {tuple(depths)}, dims {(base, 2 * base, 4 * base, 8 * base)}, patch {size // 8}"
    if fam == "resnet":
        return f"stages (2, 2, 2), widths {(width, 2 * width, 4 * width)}, full resolution"
    if fam == "sret":
        loops = 1 if spec["model"] == "sret-n1" else 2
        return (f"dims {tuple(width * h for h in SRET_HEADS)}, heads {SRET_HEADS}, blocks {SRET_DEPTHS} x {loops} "
                f"loop{'s' if loops > 1 else ''}, stem stride {size // 8}")
    return f"dim {width}, depth 4, patch {size // 8}" + (", 4 heads" if fam == "vit" else "")


def flops_per_image(model: nn.Module, size: int, in_chans: int = 1) -> int:
    """Forward FLOPs of one ``in_chans`` x size x size image (torch's FlopCounterMode: 2 per multiply-add of convs
    and matmuls; norms, activations, softmax, pools and element-wise products count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, in_chans, size, size))
    model.train(was_training)
    return int(counter.get_total_flops())
