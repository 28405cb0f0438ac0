"""The trainer: one loop for every experiment, exact to resume, the same under torchrun.

    trainer = Trainer(model, train_task, eval_task, TrainConfig(steps=2000, lr=3e-3), out_dir="runs/x")
    summary = trainer.fit()              # or fit(resume=True) after an interruption

The model must offer ``features(input_ids) -> (hidden, state)`` and ``logits(hidden)``
(as :class:`recurlab.models.CausalLM` does): the loss projects to the vocabulary
only at labelled positions. A model with an ``aux_loss`` attribute (a scalar set by its
forward, e.g. the routers of :mod:`recurlab.recursion`) has it added to the mean loss. Batches are fixed functions of the step number
(epoch e visits a permutation seeded by (seed, e)), so a resumed run replays
exactly the batches the interrupted one would have seen, and with the model,
optimizer, schedule and random states restored it continues bit for bit.

Files in ``out_dir``: ``checkpoint.pt`` (atomic: temp file + rename; plain data, loaded with
``weights_only=True``), ``metrics.jsonl`` (one JSON object per log or evaluation),
``train_config.json``, and ``.lock`` (held by the running process: one run per folder; a fresh
start over an existing checkpoint needs ``overwrite``; see :mod:`recurlab.train.run_folder`).

``fit`` reads as its steps: ``_start`` (restore, write the config), then ``train_step`` per step and
``log_and_evaluate`` + ``save_checkpoint`` every ``eval_every`` steps.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..files import read_jsonl, write_text
from ..tasks import IGNORE, SequenceTask
from . import checkpoint, distributed
from .run_folder import RunFolder
from .config import TrainConfig
from .loss import masked_cross_entropy
from .schedule import epoch_cosine, warmup_cosine


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def labelled_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the cross-entropies at labelled positions, plus the model's aux_loss scaled to a sum; number
    labelled) of ``model`` on one batch: inputs (B, T) ids, labels (B, T) with IGNORE where unlabelled."""
    hidden, _ = model.features(inputs)
    mask = labels != IGNORE
    loss = masked_cross_entropy(model.logits(hidden[mask]), labels[mask], reduction="sum")
    aux = getattr(model, "aux_loss", None)  # router losses of recursion models, per batch
    if aux is not None:
        loss = loss + aux.float() * mask.sum()  # the loss is a sum over labels: scale the mean-like aux term
    return loss, mask.sum()


class _LabelledLoss(nn.Module):
    """Wraps the model so DDP sees one forward: (inputs, labels) -> (sum of losses, number labelled). A model
    with its own ``labelled_loss(inputs, labels)`` method (e.g. SortedNet's, which averages sampled sub-models,
    recurlab/compress/sorted.py) computes it; any other gets :func:`labelled_loss`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs, labels):
        own = getattr(self.model, "labelled_loss", None)
        return own(inputs, labels) if own is not None else labelled_loss(self.model, inputs, labels)


def _autocast(device: torch.device, precision: str):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), precision


@torch.no_grad()
def evaluate(model: nn.Module, task: SequenceTask, batch_size: int = 256, device: str | torch.device = "cpu",
             precision: str = "fp32") -> dict:
    """Loss per labelled position and accuracy: per example, the fraction of its labelled positions
    predicted right, averaged over examples (Zoology's MQAR metric)."""
    device = torch.device(device)
    amp, _ = _autocast(device, precision)
    was_training = model.training
    model.eval()
    loss_sum, count, acc_sum, n_examples = 0.0, 0, 0.0, 0
    for lo in range(0, len(task), batch_size):
        inputs = task.inputs[lo : lo + batch_size].to(device)
        labels = task.labels[lo : lo + batch_size].to(device)
        with amp:
            hidden, _ = model.features(inputs)
        mask = labels != IGNORE
        logits = model.logits(hidden[mask]).float()
        loss_sum += masked_cross_entropy(logits, labels[mask], reduction="sum").item()
        count += int(mask.sum())
        correct = torch.zeros_like(labels, dtype=torch.float32)
        correct[mask] = (logits.argmax(-1) == labels[mask]).float()
        per_example = correct.sum(1) / mask.sum(1).clamp_min(1)
        has_labels = mask.any(1)
        acc_sum += per_example[has_labels].sum().item()
        n_examples += int(has_labels.sum())
    model.train(was_training)
    return {"loss": loss_sum / max(count, 1), "accuracy": acc_sum / max(n_examples, 1)}


class Trainer:
    def __init__(self, model: nn.Module, train: SequenceTask, eval: SequenceTask | None, config: TrainConfig,
                 out_dir: str | Path | None = None, device: str | torch.device | None = None):
        self.config = config
        self.runtime = distributed.setup(device)
        W = self.runtime.world_size
        if config.batch_size % W:
            raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of processes ({W})")
        if len(train) < config.batch_size:
            raise ValueError(f"the training set has {len(train)} examples, fewer than batch_size={config.batch_size}")
        self.train_task, self.eval_task = train, eval
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.model = model.to(self.runtime.device)
        self.loss_module = _LabelledLoss(self.model)
        if self.runtime.distributed:
            ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            self.loss_module = nn.parallel.DistributedDataParallel(self.loss_module, device_ids=ids)
        # weight decay on matrices only; biases, norms and parameters marked no_weight_decay (e.g. SReT's
        # residual scalars, stored as one tensor) are not decayed
        # (with decay="all", every parameter is decayed, as Zoology's trainer does)
        exempt = lambda p: config.decay == "matrices" and (p.dim() < 2 or getattr(p, "no_weight_decay", False))  # noqa: E731
        decay = [p for p in self.model.parameters() if not exempt(p)]
        no_decay = [p for p in self.model.parameters() if exempt(p)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_multiplier)
        self.amp, self.precision = _autocast(self.runtime.device, config.precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.step = 0
        self.best_accuracy = None
        self.elapsed = 0.0

    def lr_multiplier(self, step: int) -> float:
        """The schedule's multiplier of the peak learning rate at ``step`` (config.schedule)."""
        cfg = self.config
        if cfg.schedule == "epoch_cosine":
            per_epoch = len(self.train_task) // cfg.batch_size
            return epoch_cosine(step, steps_per_epoch=per_epoch, epochs=max(1, round(cfg.steps / per_epoch)))
        return warmup_cosine(step, total=cfg.steps, warmup=cfg.warmup_steps, min_ratio=cfg.min_lr_ratio)

    # ------------------------------------------------------------------ data

    def batch_indices(self, step: int) -> torch.Tensor:
        """The global batch of ``step``: a slice of epoch e's permutation, seeded by (seed, e)."""
        bs, n = self.config.batch_size, len(self.train_task)
        per_epoch = n // bs
        epoch, within = divmod(step, per_epoch)
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=gen)[within * bs : (within + 1) * bs]

    # ------------------------------------------------------------------ state

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / "checkpoint.pt" if self.out_dir else None

    def state_dict(self) -> dict:
        """Everything a resumed run needs, as plain data (tensors, numbers, strings, lists, dicts), so that
        the checkpoint loads with ``weights_only=True``."""
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                              "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)}},
            "best_accuracy": self.best_accuracy,
            "elapsed": self.elapsed,
            "train_config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        saved = dict(state["train_config"])
        now = self.config.to_dict()
        defaults = TrainConfig().to_dict()  # a checkpoint written before a field existed had its default
        differ = [k for k in now if k != "progress" and _jsonable(saved.get(k, defaults[k])) != _jsonable(now[k])]
        if differ:
            raise ValueError(f"cannot resume: the checkpoint was trained with different {', '.join(differ)} "
                             f"({', '.join(f'{k}={saved.get(k)!r}' for k in differ)})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        numpy_rng = rng["numpy"]
        np.random.set_state((numpy_rng["name"], numpy_rng["keys"].numpy().astype(np.uint32), numpy_rng["pos"],
                             numpy_rng["has_gauss"], numpy_rng["cached_gaussian"]))
        random.setstate(_as_tuples(rng["python"]))
        self.step, self.best_accuracy, self.elapsed = state["step"], state["best_accuracy"], state["elapsed"]

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is not None and self.runtime.is_main:
            checkpoint.save_atomic(self.state_dict(), self.checkpoint_path)

    # ------------------------------------------------------------------ loop

    def fit(self, resume: bool = False, overwrite: bool = False) -> dict:
        """Train to ``config.steps`` (or early stop) and return a summary.

        resume: continue from ``out_dir/checkpoint.pt`` exactly where it stopped. overwrite: start again
        in an ``out_dir`` that holds a run (refused otherwise). With an ``out_dir``, rank 0 holds the
        folder's lock for the whole run (see :class:`recurlab.train.run_folder.RunFolder`).
        """
        folder = RunFolder(self.out_dir, resume, overwrite) if self.out_dir is not None and self.runtime.is_main \
            else contextlib.nullcontext()
        with folder:
            self._start(resume)
            return self._loop()

    def close(self) -> None:
        """Drop the DistributedDataParallel wrapper (the model stays as trained). Call it on every process
        before :func:`recurlab.train.distributed.teardown`: a DDP reducer freed after its process group was
        destroyed can hang the process at exit (seen with gloo: one rank stuck after training finished)."""
        if isinstance(self.loss_module, nn.parallel.DistributedDataParallel):
            self.loss_module = self.loss_module.module

    def _start(self, resume: bool) -> None:
        """Restore a checkpoint (and drop the metrics an interrupted run wrote after it), write the config."""
        if resume:
            if self.checkpoint_path is None or not self.checkpoint_path.exists():
                raise FileNotFoundError(f"cannot resume: no checkpoint at {self.checkpoint_path}")
            self.load_state_dict(checkpoint.load(self.checkpoint_path))
            if self.metrics_path is not None and self.runtime.is_main:
                _truncate_metrics(self.metrics_path, self.step)
        if self.out_dir is not None and self.runtime.is_main:
            print(f"{'continuing' if resume else 'writing'} the run in {self.out_dir}", file=sys.stderr, flush=True)
            (self.out_dir / "train_config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

    def _loop(self) -> dict:
        cfg, rt = self.config, self.runtime
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not (cfg.progress and rt.is_main), dynamic_ncols=True)
        last_eval: dict = {}
        stopped_early = False
        window = _Window(cfg.batch_size * self.train_task.seq_len)
        self.loss_module.train()
        while self.step < cfg.steps and not stopped_early:
            loss = self.train_step()
            window.steps += 1
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                record, last_eval, stopped_early = self.log_and_evaluate(loss, window, last_eval)
                self.save_checkpoint()
                window = _Window(window.tokens_per_step)
                bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{last_eval.get('accuracy', float('nan')):.3f}",
                                tok_s=f"{record['tokens_per_s']:,.0f}")
            elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            bar.update(1)
        bar.close()
        return {"step": self.step, "stopped_early": stopped_early, "seconds": self.elapsed,
                "eval_accuracy": last_eval.get("accuracy"), "eval_loss": last_eval.get("loss"),
                "best_accuracy": self.best_accuracy}

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the global batch of ``self.step`` (this process's slice of it); returns this
        process's share of the batch's mean loss (detached)."""
        cfg, rt = self.config, self.runtime
        t0 = time.perf_counter()
        W, r = rt.world_size, rt.rank
        local = cfg.batch_size // W
        index = self.batch_indices(self.step)
        inputs = self.train_task.inputs[index].to(rt.device)
        labels = self.train_task.labels[index].to(rt.device)
        global_count = int((labels != IGNORE).sum())
        with self.amp:
            loss_sum, _ = self.loss_module(inputs[r * local : (r + 1) * local], labels[r * local : (r + 1) * local])
        # DDP averages gradients over W processes: scale so the result is the global mean
        loss = loss_sum * W / max(global_count, 1)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.elapsed += time.perf_counter() - t0
        return loss.detach() / W

    def log_and_evaluate(self, loss: torch.Tensor, window: "_Window", last_eval: dict) -> tuple[dict, dict, bool]:
        """The metrics row of this step (training loss over the global batch, learning rate, throughput since the
        last row, evaluation on rank 0), appended to metrics.jsonl; returns (row, evaluation, stop early)."""
        cfg, rt = self.config, self.runtime
        record = {"step": self.step, "loss": distributed.sum_over_processes(loss, rt),
                  "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": window.tokens_per_s(),
                  "elapsed_s": self.elapsed}
        stop = False
        if self.eval_task is not None and rt.is_main:
            last_eval = evaluate(self.model, self.eval_task, cfg.eval_batch_size, rt.device, self.precision)
            record.update(eval_loss=last_eval["loss"], eval_accuracy=last_eval["accuracy"])
            self.best_accuracy = max(self.best_accuracy or 0.0, last_eval["accuracy"])
            stop = cfg.early_stop_accuracy is not None and last_eval["accuracy"] >= cfg.early_stop_accuracy
        if rt.is_main and self.metrics_path is not None:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return record, last_eval, distributed.broadcast_flag(stop, rt)

    @property
    def metrics_path(self) -> Path | None:
        return self.out_dir / "metrics.jsonl" if self.out_dir else None


class _Window:
    """Steps since the last metrics row, for its throughput."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step, self.steps, self.start = tokens_per_step, 0, time.perf_counter()

    def tokens_per_s(self) -> float:
        return self.steps * self.tokens_per_step / max(time.perf_counter() - self.start, 1e-9)


def _as_tuples(value):
    """Python's random state with its nested tuples back (a checkpoint may hold them as lists)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _jsonable(value):
    return json.loads(json.dumps(value))


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = [row for row in read_jsonl(path) if row["step"] <= step]
    write_text(path, "".join(json.dumps(row) + "\n" for row in keep))
