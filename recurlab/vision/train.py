"""Training an image classifier: ``recurlab train --task vision`` and the recipe ``recurlab bench vision`` shares.

    recurlab train --task vision --set model=hornet dataset=mnist5k epochs=30 --out runs/hornet
    recurlab train --task vision --out runs/hornet --resume              # after an interruption

    from recurlab.vision.train import VisionTraining, train_vision
    summary = train_vision(VisionTraining(model="sret", dataset="relations", image_size=16), "runs/sret")

The recipe (the bench's, docs/vision-bench.md): the model of :mod:`recurlab.vision.zoo` at about
``params_target`` parameters; AdamW (β 0.9/0.999, weight decay on weight matrices and conv kernels only), linear
warm-up then cosine to ``min_lr_ratio`` x ``lr``, label smoothing, the data set's augmentation
(:func:`recurlab.vision.data.augment`), inputs normalised by the training split's mean and std. The bar advances
every step with the loss; after every epoch the test split's top-1 is measured and logged (never used to pick
weights).

Files in ``out`` (a :class:`recurlab.train.run_folder.RunFolder`: locked, no accidental restart):
``train_config.json``; ``metrics.jsonl`` (one row per epoch: loss, top-1, learning rate, images/s);
``checkpoint.pt`` after every epoch (atomic, plain data: model, optimizer, the data generator's and torch's random
states), so ``resume`` continues from the last finished epoch bit for bit; ``curves.png`` (loss and top-1 per
epoch); at the end ``model/`` (:mod:`recurlab.vision.saved`: ``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import check_fields, param
from ..files import append_jsonl, atomic_path, read_jsonl, write_json, write_text
from . import data as vision_data
from .zoo import MODELS, build_from_spec, count_parameters, flops_per_image, model_spec

# ------------------------------------------------------------------------------------------------------ data


def load_data(name: str, size: int, max_train: int | None, max_test: int | None) -> dict:
    """Train and test tensors of one set (images in [0, 1]), the training split's mean and std, the number of
    classes and their names. ``max_train`` / ``max_test``: a random subset drawn with a fixed seed (relations:
    the relations sets: only that many are generated)."""
    out = {}
    for split, limit in (("train", max_train), ("test", max_test)):
        if name in vision_data.RELATION_SETS:
            default = vision_data.RELATIONS_DEFAULT_N[split]
            d = vision_data.load(name, split, size=size, n=default if limit is None else min(limit, default))
        else:
            d = vision_data.load(name, split, size=size)
        images, labels = d.images, d.labels
        if limit is not None and limit < len(labels):
            # a fixed random subset (the real sets' splits are sorted by class, so the first N would not do), the
            # same for every model and seed
            keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:limit]
            images, labels = images[keep], labels[keep]
        out[split] = (images.contiguous(), labels.contiguous())
        out["classes"] = len(d.classes)
        out["class_names"] = list(d.classes)
    out["mean"] = float(out["train"][0].mean())
    out["std"] = float(out["train"][0].std())
    return out


class AugmentedBatches:
    """Shuffled mini-batches of the training split, each augmented (``vision.data.augment``) and normalised; one
    generator for the order and the augmentation, so a run repeats given its seed."""

    def __init__(self, images, labels, name: str, batch_size: int, mean: float, std: float,
                 generator: torch.Generator):
        self.images, self.labels, self.name = images, labels, name
        self.batch_size, self.mean, self.std, self.generator = batch_size, mean, std, generator

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.labels), generator=self.generator)
        for idx in order.split(self.batch_size):
            x, y = vision_data.augment(self.images[idx], self.labels[idx], self.name, generator=self.generator)
            yield (x - self.mean) / self.std, y


def accuracy(model: nn.Module, images, labels, mean: float, std: float, batch_size: int = 256) -> float:
    """Top-1 of ``model`` (put in eval mode) on ``images`` normalised by ``mean`` and ``std``."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            x = (images[start:start + batch_size] - mean) / std
            correct += int((model(x).argmax(-1) == labels[start:start + batch_size]).sum())
    return correct / len(labels)


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and conv kernels only (not on biases, norms, layer scales or
    position embeddings), as in the ConvNeXt / HorNet / timm recipes."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "pos_embed" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999))


# ------------------------------------------------------------------------------------------------ the command


@dataclass
class VisionTraining:
    """``recurlab train --task vision``: one backbone on one image set (keys: ``--set KEY=VALUE``)."""

    model: str = param("hornet", choices=MODELS)
    dataset: str = param("mnist5k", choices=vision_data.NAMES)
    image_size: int = param(32, ge=8)  # a multiple of 8: patchify models cut an 8 x 8 grid (patch = size // 8)
    params_target: int = param(500_000, ge=1000)
    max_train: int | None = param(None, ge=1)  # a fixed random N of the training images (None: all)
    max_test: int | None = param(None, ge=1)
    epochs: int = param(30, ge=1)
    batch_size: int = param(128, ge=1)
    lr: float = param(2e-3, gt=0)
    weight_decay: float = param(0.05, ge=0)
    warmup: float = param(0.05, ge=0, lt=1)  # fraction of the steps spent in the linear warm-up
    min_lr_ratio: float = param(0.01, ge=0, le=1)
    label_smoothing: float = param(0.1, ge=0, lt=1)
    drop_path: float = param(0.0, ge=0, lt=1)
    seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)
        if self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 (patch = image_size // 8), got {self.image_size}")
        if self.dataset in vision_data.RELATION_SETS and self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 for {self.dataset} (its canvas), got {self.image_size}")

    def to_dict(self) -> dict:
        return asdict(self)


def train_vision(cfg: VisionTraining, out: str | Path | None, resume: bool = False, overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Train ``cfg``'s model (module docstring); returns the summary (also ``out/summary.json``). ``out`` None:
    nothing is written (no checkpoint, no model)."""
    from ..train import checkpoint
    from ..train.run_folder import RunFolder
    from ..train.schedule import warmup_cosine
    from .saved import save_classifier

    out = Path(out) if out is not None else None
    if out is None and resume:
        raise ValueError("resume needs out, the folder of the run to continue")
    folder = RunFolder(out, resume, overwrite) if out is not None else None
    if folder is not None:
        folder.check()  # refuse before the data and the width search
    data = load_data(cfg.dataset, cfg.image_size, cfg.max_train, cfg.max_test)
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    if len(y_train) < cfg.batch_size:
        raise ValueError(f"the training split has {len(y_train)} images, fewer than batch_size={cfg.batch_size}")
    torch.manual_seed(cfg.seed)
    spec = model_spec(cfg.model, classes=data["classes"], size=cfg.image_size, target=cfg.params_target,
                      drop_path=cfg.drop_path)
    model = build_from_spec(spec)
    flops = flops_per_image(model, cfg.image_size)
    optimizer = adamw(model, cfg.lr, cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = AugmentedBatches(x_train, y_train, cfg.dataset, cfg.batch_size, data["mean"], data["std"], generator)
    total = cfg.epochs * len(batches)
    schedule = partial(warmup_cosine, total=total, warmup=round(cfg.warmup * total), min_ratio=cfg.min_lr_ratio)
    loss_fn = partial(F.cross_entropy, label_smoothing=cfg.label_smoothing)
    if out is None:
        print("no --out: nothing is written (no checkpoint, no model)", file=sys.stderr, flush=True)
    epoch, elapsed, top1 = 0, 0.0, None
    with folder if folder is not None else contextlib.nullcontext():
        if resume:
            state = checkpoint.load(out / "checkpoint.pt")
            _check_same_config(state["config"], cfg)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            epoch, elapsed = state["epoch"], state["elapsed"]
            _drop_rows_after(out / "metrics.jsonl", epoch)
        if out is not None:
            print(f"{'continuing' if resume else 'writing'} the run in {out} (epoch {epoch} of {cfg.epochs})",
                  file=sys.stderr, flush=True)
            write_json(out / "train_config.json", cfg.to_dict())
        bar_desc = f"{cfg.model} on {cfg.dataset}"
        while epoch < cfg.epochs:
            start, first_step = time.perf_counter(), epoch * len(batches)
            history = _one_epoch(model, optimizer, loss_fn, batches, lambda s: schedule(first_step + s), progress,
                                 f"{bar_desc}, epoch {epoch + 1}/{cfg.epochs}")
            seconds = time.perf_counter() - start
            elapsed += seconds
            epoch += 1
            top1 = accuracy(model, x_test, y_test, data["mean"], data["std"])
            row = {"epoch": epoch, "step": epoch * len(batches), "loss": history.window_loss[0], "top1": top1,
                   "lr": history.lr[-1], "images_per_s": len(y_train) / seconds, "elapsed_s": elapsed}
            if progress:
                print(f"epoch {epoch}/{cfg.epochs}: loss {row['loss']:.4f}, test top-1 {100 * top1:.1f}%",
                      file=sys.stderr, flush=True)
            if out is not None:
                append_jsonl(out / "metrics.jsonl", row)
                checkpoint.save_atomic({"epoch": epoch, "elapsed": elapsed, "config": cfg.to_dict(),
                                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "generator": generator.get_state(), "torch_rng": torch.get_rng_state()},
                                       out / "checkpoint.pt")
                plot_curves(read_jsonl(out / "metrics.jsonl"), out / "curves.png", bar_desc)
        # the last epoch's row (a resumed finished run trains nothing; SReT's eval draws permutations, so a
        # second measurement would differ)
        last = read_jsonl(out / "metrics.jsonl")[-1] if out is not None else {"top1": top1, "loss": row["loss"]}
        summary = {"model": cfg.model, "dataset": cfg.dataset, "params": count_parameters(model),
                   "mflops_per_image": flops / 1e6, "epochs": epoch, "top1": last["top1"],
                   "final_loss": last["loss"], "train_seconds": elapsed}
        if out is not None:
            save_classifier(model, spec, out / "model", mean=data["mean"], std=data["std"],
                            classes=data["class_names"])
            write_json(out / "summary.json", summary)
    return summary


def _one_epoch(model, optimizer, loss_fn, batches, lr_factor, progress: bool, desc: str):
    from ..train.loop import train_epochs

    return train_epochs(model, optimizer, loss_fn, batches, 1, lr_factor=lr_factor, progress=progress, desc=desc)


def _check_same_config(saved: dict, cfg: VisionTraining) -> None:
    now = cfg.to_dict()
    differ = [k for k in now if saved.get(k) != now[k]]
    if differ:
        raise ValueError(f"cannot resume: the checkpoint was trained with different {', '.join(differ)} ("
                         + ", ".join(f"{k}={saved.get(k)!r}, now {now[k]!r}" for k in differ) + ")")


def _drop_rows_after(path: Path, epoch: int) -> None:
    """Metrics rows an interrupted run wrote after its last checkpoint are not part of the resumed run."""
    if path.exists():
        write_text(path, "".join(json.dumps(r) + "\n" for r in read_jsonl(path) if r["epoch"] <= epoch))


def plot_curves(rows: list[dict], path: Path, title: str) -> None:
    """Training loss and test top-1 per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["loss"] for r in rows], marker="o")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (label-smoothed)")
    right.plot(epochs, [100 * r["top1"] for r in rows], marker="o", color="tab:red")
    right.set_xlabel("epoch")
    right.set_ylabel("test top-1 (%)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def run_from_cli(config_file: str | None, overrides: list[str], out: str | None, resume: bool, overwrite: bool,
                 progress: bool) -> dict:
    """``recurlab train --task vision``: VisionTraining from ``--config`` (JSON) and ``--set`` key=value settings,
    into ``out`` (default ``runs/MODEL-DATASET``); prints the summary as JSON."""
    from ..configs import merge, override

    cfg = VisionTraining()
    if config_file is not None:
        try:
            cfg = merge(cfg, json.loads(Path(config_file).read_text()))
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_file} is not JSON: {error}") from None
    cfg = override(cfg, overrides)
    folder = Path(out or f"runs/{cfg.model}-{cfg.dataset}")
    summary = train_vision(cfg, folder, resume=resume, overwrite=overwrite, progress=progress)
    print(json.dumps(summary))
    print(f"saved the classifier to {folder / 'model'} (recurlab.vision.saved.load_classifier)", file=sys.stderr)
    return summary
