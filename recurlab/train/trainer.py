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

Files in ``out_dir``: ``checkpoint.pt`` (atomic: temp file + rename),
``metrics.jsonl`` (one JSON object per log or evaluation), ``train_config.json``.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..files import read_jsonl, write_text
from ..tasks import IGNORE, SequenceTask
from . import checkpoint, distributed
from .config import TrainConfig
from .loss import masked_cross_entropy
from .schedule import warmup_cosine


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _LabelledLoss(nn.Module):
    """Wraps the model so DDP sees one forward: (inputs, labels) -> (sum of losses, number labelled)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs, labels):
        hidden, _ = self.model.features(inputs)
        mask = labels != IGNORE
        loss = masked_cross_entropy(self.model.logits(hidden[mask]), labels[mask], reduction="sum")
        aux = getattr(self.model, "aux_loss", None)  # router losses of recursion models, per batch
        if aux is not None:
            loss = loss + aux.float() * mask.sum()  # the loss is a sum over labels: scale the mean-like aux term
        return loss, mask.sum()


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
        exempt = lambda p: p.dim() < 2 or getattr(p, "no_weight_decay", False)  # noqa: E731
        decay = [p for p in self.model.parameters() if not exempt(p)]
        no_decay = [p for p in self.model.parameters() if exempt(p)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, total=config.steps, warmup=config.warmup_steps,
                                                    min_ratio=config.min_lr_ratio))
        self.amp, self.precision = _autocast(self.runtime.device, config.precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.step = 0
        self.best_accuracy = None
        self.elapsed = 0.0

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
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "best_accuracy": self.best_accuracy,
            "elapsed": self.elapsed,
            "train_config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        saved = dict(state["train_config"])
        now = self.config.to_dict()
        differ = [k for k in now if k != "progress" and _jsonable(saved.get(k)) != _jsonable(now[k])]
        if differ:
            raise ValueError(f"cannot resume: the checkpoint was trained with different {', '.join(differ)} "
                             f"({', '.join(f'{k}={saved.get(k)!r}' for k in differ)})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        self.step, self.best_accuracy, self.elapsed = state["step"], state["best_accuracy"], state["elapsed"]

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is not None and self.runtime.is_main:
            checkpoint.save_atomic(self.state_dict(), self.checkpoint_path)

    # ------------------------------------------------------------------ loop

    def fit(self, resume: bool = False) -> dict:
        cfg, rt = self.config, self.runtime
        metrics_path = self.out_dir / "metrics.jsonl" if self.out_dir else None
        if resume:
            if self.checkpoint_path is None or not self.checkpoint_path.exists():
                raise FileNotFoundError(f"cannot resume: no checkpoint at {self.checkpoint_path}")
            self.load_state_dict(checkpoint.load(self.checkpoint_path))
            if metrics_path is not None and rt.is_main:
                _truncate_metrics(metrics_path, self.step)  # drop lines the interrupted run wrote after it
        if self.out_dir is not None and rt.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        W, r = rt.world_size, rt.rank
        local = cfg.batch_size // W
        tokens_per_step = cfg.batch_size * self.train_task.seq_len
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not (cfg.progress and rt.is_main), dynamic_ncols=True)
        last_eval: dict = {}
        stopped_early = False
        window_start, window_steps = time.perf_counter(), 0
        self.loss_module.train()
        while self.step < cfg.steps:
            t0 = time.perf_counter()
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
            window_steps += 1
            done = self.step == cfg.steps
            if self.step % cfg.eval_every == 0 or done:
                local_loss = distributed.sum_over_processes(loss.detach() / W, rt)  # the global batch's mean
                now = time.perf_counter()
                tps = window_steps * tokens_per_step / (now - window_start)
                record = {"step": self.step, "loss": local_loss, "lr": self.scheduler.get_last_lr()[0],
                          "tokens_per_s": tps, "elapsed_s": self.elapsed}
                stop = False
                if self.eval_task is not None and rt.is_main:
                    last_eval = evaluate(self.model, self.eval_task, cfg.eval_batch_size, rt.device, self.precision)
                    record.update(eval_loss=last_eval["loss"], eval_accuracy=last_eval["accuracy"])
                    self.best_accuracy = max(self.best_accuracy or 0.0, last_eval["accuracy"])
                    stop = cfg.early_stop_accuracy is not None and last_eval["accuracy"] >= cfg.early_stop_accuracy
                stopped_early = distributed.broadcast_flag(stop, rt)
                if rt.is_main and metrics_path is not None:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(record) + "\n")
                self.save_checkpoint()
                window_start, window_steps = time.perf_counter(), 0
                bar.set_postfix(loss=f"{local_loss:.3f}", acc=f"{last_eval.get('accuracy', float('nan')):.3f}",
                                tok_s=f"{tps:,.0f}")
                if stopped_early:
                    bar.update(1)
                    break
            elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            bar.update(1)
        bar.close()
        return {"step": self.step, "stopped_early": stopped_early, "seconds": self.elapsed,
                "eval_accuracy": last_eval.get("accuracy"), "eval_loss": last_eval.get("loss"),
                "best_accuracy": self.best_accuracy}


def _jsonable(value):
    return json.loads(json.dumps(value))


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = [row for row in read_jsonl(path) if row["step"] <= step]
    write_text(path, "".join(json.dumps(row) + "\n" for row in keep))
