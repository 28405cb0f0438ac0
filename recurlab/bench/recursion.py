"""``recurlab bench recursion``: what reusing one block over depth buys, at equal compute and equal parameters.

Every variant is a :class:`recurlab.recursion.DepthLM` of the same width around blocks of one token
mixer (attention and gla by default), trained the same way:

    stack-N           N distinct blocks (the vanilla model: N block applications per token)
    stack-K           K distinct blocks (as many parameters as the looped variants' shared blocks)
    recursive         K shared blocks looped N/K times, SReT's per-application residual scales
    recursive-sliced  the same with SReT's sliced group attention (attention only): loop l attends within
                      causal groups of seq_len / 2^(loops-1-l) tokens (the last loop over the whole sequence)
    relaxed           the same loop with a rank-r LoRA delta per loop on every linear layer
    mor-expert        Mixture-of-Recursions, expert-choice: unique first and last block, K shared blocks
                      recursed up to N_r = (N - 2) / K times (at most N applications per token)
    mor-token         Mixture-of-Recursions, token-choice routing
    recurrent-depth   prelude 1 / a 1-block core looped N - 2 times on average (sampled) / coda 1 (Huginn)
    rmoe              N blocks with MoE channel mixers routed by a GRU over layers (RMoE); rmoe-plain beside it

Parts of the benchmark (each appends its finished measurements to ``runs.jsonl`` in the output
folder and is skipped when rerun with the same settings, so an interrupted run continues):

    lm          bits per byte on the default corpus, parameters, block applications per token,
                training tokens/s (side by side, after training) and decoding tokens/s
    structural  exact-match accuracy on the structural-recursion tasks (binary successor):
                in distribution, on edge cases (long carry chains) and on longer inputs
    iterations  RecurrentDepth: bits per byte vs the number of test-time iterations
    sampler     RecurrentDepth: the diffusion-forcing parallel sampler vs sequential decoding
                (forward passes, wall time, agreement of the output)
    relaxed     Relaxed initialised from the trained stack-N (stepwise / average / lower), quality
                recovered by the LoRA rank, before and after a short uptraining
    batching    continuous depth-wise batching, simulated with the exit depths measured by
                Relaxed's early exit

Writes results.json, results.md and recursion.png.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .report import markdown_table

PARTS = ("lm", "structural", "iterations", "sampler", "relaxed", "batching")
VARIANTS = ("stack-N", "stack-K", "recursive", "recursive-sliced", "relaxed", "mor-expert", "mor-token",
            "recurrent-depth", "rmoe", "rmoe-plain")
SLICED_MIXERS = ("attention", "swa")  # recursive-sliced needs SReT's group attention


@dataclass
class RecursionBenchConfig:
    """Sizes of every part. ``depth`` N is the vanilla model's number of blocks; looped variants
    share ``shared`` K blocks (N must be a multiple of K)."""

    mixers: list[str] = field(default_factory=lambda: ["attention", "gla"])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    d_model: int = 128
    depth: int = 6
    shared: int = 2
    lora_rank: int = 16
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 400
    lr: float = 2e-3
    eval_sequences: int = 256
    decode_prompt: int = 64
    decode_tokens: int = 128
    throughput_rounds: int = 3
    # structural recursion (binary successor)
    structural_d_model: int = 64
    structural_steps: int = 2500
    structural_train_examples: int = 10_000
    structural_test_examples: int = 512
    structural_max_bits: int = 16
    structural_long_bits: int = 20
    # recurrent depth
    rd_iterations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8, 12])
    sampler_prompts: int = 4
    sampler_new_tokens: int = 64
    sampler_iterations: int = 8
    sampler_inner_steps: int = 2
    # relaxed initialisation
    relaxed_ranks: list[int] = field(default_factory=lambda: [0, 8, 128])
    relaxed_schemes: list[str] = field(default_factory=lambda: ["stepwise", "average", "lower"])
    relaxed_uptrain_steps: int = 60
    early_exit_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9])
    structural_variants: list[str] = field(default_factory=lambda: ["stack-N", "stack-K", "recursive", "relaxed",
                                                                    "mor-expert", "recurrent-depth"])
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> "RecursionBenchConfig":
        """Minutes on 2 cores: tiny sizes, every part once, attention only."""
        base = dict(mixers=["attention"], d_model=64, depth=4, shared=2, lora_rank=8, seq_len=64, batch_size=8,
                    steps=40, eval_sequences=32, decode_prompt=16, decode_tokens=16, throughput_rounds=1,
                    structural_d_model=32, structural_steps=40, structural_train_examples=1000,
                    structural_test_examples=128,
                    structural_max_bits=12, structural_long_bits=14, rd_iterations=[1, 2, 4], sampler_prompts=1,
                    sampler_new_tokens=8, sampler_iterations=4, relaxed_ranks=[0, 8], relaxed_schemes=["stepwise", "average"],
                    relaxed_uptrain_steps=10, early_exit_thresholds=[0.5])
        base.update(overrides)
        return cls(**base)

    def __post_init__(self):
        if self.depth % self.shared:
            raise ValueError(f"depth={self.depth} must be a multiple of shared={self.shared} (the looped variants "
                             f"apply {self.shared} shared blocks depth/shared times)")
        for name in list(self.variants) + list(self.structural_variants):
            if name not in VARIANTS:
                raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}")
        for name in self.parts:
            if name not in PARTS:
                raise ValueError(f"unknown part {name!r}; valid: {', '.join(PARTS)}")

    @property
    def loops(self) -> int:
        return self.depth // self.shared

    def fingerprint(self, part: str) -> str:
        """The settings a part's measurements depend on: a rerun with other settings does not reuse them."""
        model = ["d_model", "depth", "shared", "lora_rank", "batch_size", "seed"]
        fields = {"lm": model + ["seq_len", "steps", "lr", "eval_sequences", "decode_prompt", "decode_tokens"],
                  "structural": model + [f for f in dataclasses.asdict(self) if f.startswith("structural_")
                                         and f != "structural_variants"],
                  "relaxed": model + ["seq_len", "steps", "lr", "eval_sequences", "relaxed_uptrain_steps"]}[part]
        d = {f: getattr(self, f) for f in fields}
        return hashlib.sha1(json.dumps([part, d], sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------- variants


def applicable_variants(variants, mixer: str) -> list[str]:
    """The variants that can be built around ``mixer`` (recursive-sliced needs attention)."""
    return [v for v in variants if v != "recursive-sliced" or mixer in SLICED_MIXERS]


def build_variant(name: str, mixer: str, cfg: RecursionBenchConfig, d_model: int | None = None,
                  vocab_size: int = 256):
    """The DepthLM of variant ``name`` around ``mixer`` blocks (see the module docstring)."""
    from .. import recursion as R

    d = d_model or cfg.d_model
    N, K, loops = cfg.depth, cfg.shared, cfg.loops
    blocks = lambda n: [R.make_block(mixer, d) for _ in range(n)]  # noqa: E731
    if name == "stack-N":
        depth = R.Stack(blocks(N))
    elif name == "stack-K":
        depth = R.Stack(blocks(K))
    elif name == "recursive":
        depth = R.Recursive(blocks(K), loops, loop_scales=True)
    elif name == "recursive-sliced":
        if mixer not in SLICED_MIXERS:
            raise ValueError(f"recursive-sliced needs sliced group attention, which {mixer!r} has not; "
                             f"use one of {SLICED_MIXERS}")
        sizes, offsets = R.sliced_group_schedule(max(1, cfg.seq_len // 2 ** (loops - 1)), loops, kind="grow")
        depth = R.Recursive(blocks(K), loops, loop_scales=True, group_sizes=sizes, group_offsets=offsets)
    elif name == "relaxed":
        depth = R.Relaxed(blocks(K), loops, rank=cfg.lora_rank)
    elif name in ("mor-expert", "mor-token"):
        # middle-cycle sharing: one unique first and last block, K shared blocks recursed up to N_r times,
        # N_r chosen so that a token taking every recursion costs N block applications
        n_rec = (N - 2) // K
        depth = R.MixtureOfRecursions(blocks(K), n_rec, router=name.split("-")[1], first=blocks(1), last=blocks(1))
    elif name == "recurrent-depth":
        # prelude 1, a core of 1 block, coda 1; mean iterations N - 2, so that the mean cost is N applications
        # (test-time initial latents seeded by position, so evaluations and decoders see the same s_0)
        depth = R.RecurrentDepth(blocks(1), blocks(1), blocks(1), mean_iterations=max(1, N - 2), init_seed=cfg.seed)
    elif name in ("rmoe", "rmoe-plain"):
        depth = R.RMoEStack(d, N, mixer=mixer, router="recurrent" if name == "rmoe" else "plain")
    else:
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}")
    return R.DepthLM(vocab_size, depth)


# ---------------------------------------------------------------------------------------------- machinery


def lm_data(cfg: RecursionBenchConfig, text: str | None = None):
    """(train task, validation task of cfg.eval_sequences sequences) of bytes of the default corpus."""
    from ..tasks.text import ByteTokenizer, default_corpus, language_modelling_task, split_text

    text = default_corpus() if text is None else text
    train_text, val_text = split_text(text, 0.05)
    tok = ByteTokenizer()
    train = language_modelling_task(tok.encode(train_text), cfg.seq_len, 256)
    val = language_modelling_task(tok.encode(val_text), cfg.seq_len, 256)
    return train, val.subset(slice(0, cfg.eval_sequences))


def train_model(model, train, val, cfg: RecursionBenchConfig, steps: int, lr: float | None = None,
                progress: bool = False) -> dict:
    """Train with recurlab's Trainer (AdamW, warmup + cosine); returns the trainer's summary and eval."""
    from ..train import Trainer, TrainConfig

    tc = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=lr or cfg.lr, warmup_steps=min(50, steps // 10),
                     eval_every=steps, eval_batch_size=64, seed=cfg.seed, precision="fp32", progress=progress)
    trainer = Trainer(model, train, val, tc)
    start = time.perf_counter()
    summary = trainer.fit()
    summary["train_seconds"] = time.perf_counter() - start
    return summary


@torch.no_grad()
def eval_bits(model, task, batch_size: int = 32) -> float:
    """Mean loss per labelled token in bits (for bytes: bits per byte), in eval mode."""
    from ..tasks import IGNORE

    was = model.training
    model.eval()
    total, count = 0.0, 0
    for lo in range(0, len(task), batch_size):
        logits, _ = model(task.inputs[lo:lo + batch_size])
        labels = task.labels[lo:lo + batch_size]
        mask = labels != IGNORE
        total += F.cross_entropy(logits[mask].float(), labels[mask], reduction="sum").item()
        count += int(mask.sum())
    model.train(was)
    return total / max(count, 1) / math.log(2)


@torch.no_grad()
def decode_tokens_per_s(model, prompt_len: int, new_tokens: int, vocab_size: int = 256, seed: int = 0) -> float:
    """Greedy decoding speed (batch 1): a parallel prefill of the prompt, then ``step`` per new token."""
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (1, prompt_len), generator=gen)
    _, state = model(ids)
    token = ids[:, -1]
    start = time.perf_counter()
    for _ in range(new_tokens):
        logits, state = model.step(token, state)
        token = logits.argmax(-1)
    model.train(was)
    return new_tokens / (time.perf_counter() - start)


def side_by_side_decode_speed(models: dict[str, torch.nn.Module], prompt_len: int, new_tokens: int,
                              rounds: int = 3, vocab_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Greedy decoding tokens/s (batch 1) of each trained model, interleaved round by round (median)."""
    samples: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for key, model in models.items():
            samples[key].append(decode_tokens_per_s(model, prompt_len, new_tokens, vocab_size, seed))
    return {k: statistics.median(v) for k, v in samples.items()}


def side_by_side_training_speed(models: dict[str, torch.nn.Module], batch_size: int, seq_len: int,
                                rounds: int = 3, vocab_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Training tokens/s of each model, interleaved round by round in this process (median of rounds)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch_size, seq_len + 1), generator=gen)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-5) for k, m in models.items()}

    def one_step(key):
        model = models[key]
        model.train()
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        if getattr(model, "aux_loss", None) is not None:
            loss = loss + model.aux_loss
        opts[key].zero_grad(set_to_none=True)
        loss.backward()
        opts[key].step()

    for key in models:
        one_step(key)  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for key in models:
            start = time.perf_counter()
            one_step(key)
            samples[key].append(batch_size * seq_len / (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in samples.items()}


class RunLog:
    """Finished measurements, one JSON object per line in ``runs.jsonl``; a rerun reuses those whose key matches."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[row["key"]] = row

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def add(self, key: str, row: dict) -> dict:
        row = {"key": key, **row}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows[key] = row
        return row


def compute_per_token(model) -> float:
    """Block applications per token of ``model``'s last forward (MoR: routed; RecurrentDepth: its iterations)."""
    from .. import recursion as R

    depth = model.depth
    if isinstance(depth, R.MixtureOfRecursions):
        return float(depth.applications_per_token())
    if isinstance(depth, R.RecurrentDepth):
        return float(depth.blocks_per_token())
    if isinstance(depth, R.Recursive):  # Relaxed too
        return float(depth.n_applications)
    if isinstance(depth, R.RMoEStack):
        return float(depth.n_layers)
    if isinstance(depth, R.Stack):
        return float(len(depth.blocks))
    raise ValueError(f"unknown depth module {type(depth).__name__}")


def _save_model(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)


def _trained(cfg, out: Path, log: RunLog, mixer: str, variant: str, train, val, d_model=None, vocab_size=256,
             steps=None, tag="lm"):
    """The trained model of (mixer, variant) for part ``tag``: loaded from out/models when its run is logged."""
    key = f"{tag}/{mixer}/{variant}/{cfg.fingerprint(tag)}"
    path = out / "models" / f"{tag}-{mixer}-{variant}.pt"
    torch.manual_seed(cfg.seed)
    model = build_variant(variant, mixer, cfg, d_model, vocab_size)
    row = log.get(key)
    if row is not None and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model, row, True
    tqdm.write(f"[{tag}] training {variant} ({mixer}) ...")
    summary = train_model(model, train, val, cfg, steps or cfg.steps)
    _save_model(model, path)
    return model, {"key": key, "train_seconds": summary["train_seconds"], "steps": summary["step"]}, False


# ---------------------------------------------------------------------------------------------- parts


def part_lm(cfg: RecursionBenchConfig, out: Path, log: RunLog, text: str | None = None) -> list[dict]:
    train, val = lm_data(cfg, text)
    rows = []
    for mixer in cfg.mixers:
        variants = applicable_variants(cfg.variants, mixer)
        for variant in variants:
            model, info, cached = _trained(cfg, out, log, mixer, variant, train, val)
            if cached:
                rows.append(info)
                continue
            bits = eval_bits(model, val)
            compute = compute_per_token(model)  # after eval_bits' forward: routed depth in eval mode
            row = {"part": "lm", "mixer": mixer, "variant": variant, "params": model.num_parameters()["total"],
                   "bits_per_byte": bits, "block_applications": compute,
                   "train_seconds": info["train_seconds"], "steps": info["steps"]}
            rows.append(log.add(info["key"], row))
            tqdm.write(f"  {mixer} {variant}: {bits:.3f} bits/byte, {compute:.2f} blocks/token, "
                       f"{row['params']:,} params")
        key = f"lm-speed/{mixer}/{'+'.join(variants)}/{cfg.fingerprint('lm')}"
        if log.get(key) is None:
            tqdm.write(f"[lm] training speed side by side ({mixer}) ...")
            models = {}
            for variant in variants:
                torch.manual_seed(cfg.seed)
                models[variant] = build_variant(variant, mixer, cfg)
            speeds = side_by_side_training_speed(models, cfg.batch_size, cfg.seq_len, cfg.throughput_rounds,
                                                 seed=cfg.seed)
            log.add(key, {"part": "lm-speed", "mixer": mixer, "tokens_per_s": speeds})
        speeds = log.get(key)["tokens_per_s"]
        key = f"lm-decode/{mixer}/{'+'.join(variants)}/{cfg.fingerprint('lm')}"
        if log.get(key) is None:
            tqdm.write(f"[lm] decoding speed side by side ({mixer}) ...")
            models = {v: _trained(cfg, out, log, mixer, v, train, val)[0] for v in variants}
            decode = side_by_side_decode_speed(models, cfg.decode_prompt, cfg.decode_tokens, cfg.throughput_rounds,
                                               seed=cfg.seed)
            log.add(key, {"part": "lm-decode", "mixer": mixer, "tokens_per_s": decode})
        decode = log.get(key)["tokens_per_s"]
        for r in rows:
            if r["mixer"] == mixer and r["variant"] in speeds:
                r["train_tokens_per_s"] = speeds[r["variant"]]
            if r["mixer"] == mixer and r["variant"] in decode:
                r["decode_tokens_per_s"] = decode[r["variant"]]
    return rows


def part_structural(cfg: RecursionBenchConfig, out: Path, log: RunLog) -> list[dict]:
    from ..tasks.structural import SUCCESSOR_VOCAB, exact_match_accuracy, successor_splits, traversal_splits

    tasks = {
        "successor": successor_splits(cfg.structural_train_examples, cfg.structural_test_examples, cfg.structural_max_bits,
                                      cfg.structural_long_bits, seed=cfg.seed),
        "traversal-pre": traversal_splits("pre", cfg.structural_train_examples, cfg.structural_test_examples, train_depth=4,
                                          test_depth=5,
                                          seed=cfg.seed),
    }
    scfg = dataclasses.replace(cfg, lr=1e-3)
    rows = []
    for task_name, splits in tasks.items():
        vocab = SUCCESSOR_VOCAB if task_name == "successor" else int(splits["train"].vocab_size)
        for mixer in cfg.mixers:
            for variant in applicable_variants(cfg.structural_variants, mixer):
                key = f"structural/{task_name}/{mixer}/{variant}/{cfg.fingerprint('structural')}"
                row = log.get(key)
                if row is None:
                    torch.manual_seed(cfg.seed)
                    model = build_variant(variant, mixer, cfg, cfg.structural_d_model, vocab)
                    tqdm.write(f"[structural] {task_name}: training {variant} ({mixer}) ...")
                    summary = train_model(model, splits["train"], splits["test_iid"], scfg, cfg.structural_steps)
                    acc = exact_match_accuracy(model, {k: v for k, v in splits.items() if k != "train"})
                    row = log.add(key, {"part": "structural", "task": task_name, "mixer": mixer, "variant": variant,
                                        "params": model.num_parameters()["total"], **acc,
                                        "train_seconds": summary["train_seconds"]})
                    tqdm.write(f"  {task_name} {mixer} {variant}: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
                rows.append(row)
    return rows


def _lm_model(cfg, out, log, mixer, variant, text=None):
    """The model trained by the lm part (trained now if the lm part did not run)."""
    key = f"lm/{mixer}/{variant}/{cfg.fingerprint('lm')}"
    if log.get(key) is None or not (out / "models" / f"lm-{mixer}-{variant}.pt").exists():
        raise ValueError(f"this part needs the trained {variant} ({mixer}) of the lm part: run with --parts lm "
                         f"(and the same settings) first, or include lm in --parts")
    train, val = lm_data(cfg, text)
    model, _, _ = _trained(cfg, out, log, mixer, variant, train, val)
    return model, train, val


def part_iterations(cfg: RecursionBenchConfig, out: Path, log: RunLog, text: str | None = None) -> list[dict]:
    """RecurrentDepth: validation bits per byte vs the number of test-time iterations."""
    rows = []
    for mixer in cfg.mixers:
        key = f"iterations/{mixer}/{cfg.rd_iterations}/{cfg.fingerprint('lm')}"
        row = log.get(key)
        if row is None:
            model, _, val = _lm_model(cfg, out, log, mixer, "recurrent-depth", text)
            bits = {}
            for r in cfg.rd_iterations:
                model.depth.num_iterations = r
                bits[str(r)] = eval_bits(model, val)
                tqdm.write(f"  recurrent-depth ({mixer}) {r} iterations: {bits[str(r)]:.3f} bits/byte")
            row = log.add(key, {"part": "iterations", "mixer": mixer, "train_mean_iterations":
                                model.depth.mean_iterations, "bits_per_byte": bits})
        rows.append(row)
    return rows


def part_sampler(cfg: RecursionBenchConfig, out: Path, log: RunLog, text: str | None = None) -> list[dict]:
    """The diffusion-forcing parallel sampler against sequential decoding, greedy, same model and prompts."""
    from ..recursion.parallel_sampler import parallel_generate, sequential_generate

    rows = []
    for mixer in cfg.mixers:
        key = f"sampler/{mixer}/{cfg.sampler_prompts}x{cfg.sampler_new_tokens}/{cfg.fingerprint('lm')}"
        row = log.get(key)
        if row is None:
            model, _, val = _lm_model(cfg, out, log, mixer, "recurrent-depth", text)
            model.eval()
            iters = cfg.sampler_iterations
            model.depth.num_iterations = iters
            per = []
            for i in range(cfg.sampler_prompts):
                prompt = val.inputs[i:i + 1, : cfg.decode_prompt]
                seq, s_stats = sequential_generate(model, prompt, cfg.sampler_new_tokens, num_iterations=iters)
                for threshold in (0.0, 0.03, 0.1):
                    par, p_stats = parallel_generate(model, prompt, cfg.sampler_new_tokens, threshold=threshold,
                                                     inner_steps=cfg.sampler_inner_steps, num_iterations=iters,
                                                     seed=cfg.seed)
                    new_s, new_p = seq[0, prompt.shape[1]:], par[0, prompt.shape[1]:]
                    first_diff = int((new_s != new_p).nonzero()[0]) if bool((new_s != new_p).any()) else len(new_s)
                    per.append({"prompt": i, "threshold": threshold,
                                "sequential_s": s_stats.wall_time_s, "parallel_s": p_stats.wall_time_s,
                                "sequential_passes": s_stats.forward_passes, "parallel_passes": p_stats.forward_passes,
                                "sequential_core_calls": s_stats.core_calls, "parallel_core_calls": p_stats.core_calls,
                                "sequential_core_iterations": s_stats.core_iterations,
                                "parallel_core_iterations": p_stats.core_iterations + p_stats.commit_block_applications,
                                "token_agreement": float((new_s == new_p).float().mean()),
                                "identical_prefix": first_diff})
            summary = {}
            for threshold in (0.0, 0.03, 0.1):
                sel = [p for p in per if p["threshold"] == threshold]
                med = lambda k: statistics.median(p[k] for p in sel)  # noqa: E731
                summary[str(threshold)] = {
                    "core_call_speedup": med("sequential_core_calls") / max(med("parallel_core_calls"), 1),
                    "wall_speedup": med("sequential_s") / med("parallel_s"),
                    "pass_speedup": med("sequential_passes") / max(med("parallel_passes"), 1),
                    "token_agreement": statistics.mean(p["token_agreement"] for p in sel),
                    "work_ratio": med("parallel_core_iterations") / max(med("sequential_core_iterations"), 1)}
                tqdm.write(f"  sampler ({mixer}) threshold {threshold}: " +
                           ", ".join(f"{k} {v:.2f}" for k, v in summary[str(threshold)].items()))
            row = log.add(key, {"part": "sampler", "mixer": mixer, "iterations": iters, "runs": per,
                                "summary": summary})
        rows.append(row)
    return rows


def part_relaxed(cfg: RecursionBenchConfig, out: Path, log: RunLog, text: str | None = None) -> list[dict]:
    """Relaxed from the trained stack-N: bits per byte by scheme and LoRA rank, before and after uptraining."""
    from ..recursion import DepthLM, Relaxed

    rows = []
    for mixer in cfg.mixers:
        stack_model, train, val = _lm_model(cfg, out, log, mixer, "stack-N", text)
        stack_bits = None
        for scheme in cfg.relaxed_schemes:
            for rank in cfg.relaxed_ranks:
                key = f"relaxed/{mixer}/{scheme}/{rank}/{cfg.fingerprint('relaxed')}"
                row = log.get(key)
                if row is None:
                    if stack_bits is None:
                        stack_bits = eval_bits(stack_model, val)
                    torch.manual_seed(cfg.seed)
                    depth = Relaxed.from_stack(stack_model.depth, cfg.loops, max(rank, 1), scheme,
                                               svd_init=rank > 0, loop_norms=True)
                    model = DepthLM(256, depth)
                    model.embedding.load_state_dict(stack_model.embedding.state_dict())
                    model.final_norm.load_state_dict(stack_model.final_norm.state_dict())
                    before = eval_bits(model, val)
                    train_model(model, train, val, cfg, cfg.relaxed_uptrain_steps, lr=cfg.lr / 4)
                    after = eval_bits(model, val)
                    lora = sum(p.numel() for n, p in depth.named_parameters() if "lora_" in n) if rank > 0 else 0
                    row = log.add(key, {"part": "relaxed", "mixer": mixer, "scheme": scheme, "rank": rank,
                                        "stack_bits": stack_bits, "bits_before": before, "bits_after": after,
                                        "params": model.num_parameters()["total"] - (0 if rank > 0 else lora),
                                        "lora_params": lora})
                    tqdm.write(f"  relaxed ({mixer}) {scheme} rank {rank}: {before:.3f} -> {after:.3f} bits/byte "
                               f"(stack {stack_bits:.3f})")
                rows.append(row)
    return rows


def part_batching(cfg: RecursionBenchConfig, out: Path, log: RunLog, text: str | None = None) -> list[dict]:
    """Relaxed's early-exit depths on validation text, and depth-wise batching simulated with them."""
    from ..recursion.depthwise_batching import simulate_depthwise_batching
    from ..recursion.relaxed import early_exit_forward

    rows = []
    for mixer in cfg.mixers:
        for threshold in cfg.early_exit_thresholds:
            key = f"batching/{mixer}/{threshold}/{cfg.fingerprint('lm')}"
            row = log.get(key)
            if row is None:
                model, _, val = _lm_model(cfg, out, log, mixer, "relaxed", text)
                model.eval()
                with torch.no_grad():
                    logits, exits, _ = early_exit_forward(model, val.inputs, threshold)
                    full_bits = eval_bits(model, val)
                    mask = val.labels != -100
                    exit_bits = F.cross_entropy(logits[mask].float(), val.labels[mask]).item() / math.log(2)
                hist = torch.bincount(exits.flatten(), minlength=cfg.loops + 1)[1:].tolist()
                sims = {}
                for batch in (8, 32, 128):
                    c = simulate_depthwise_batching(exits.flatten(), batch, cfg.loops)
                    sims[str(batch)] = {"speedup": c.speedup, "speedup_over_static_exit": c.speedup_over_static_exit,
                                        "tokens_per_call": c.depthwise_tokens_per_call}
                row = log.add(key, {"part": "batching", "mixer": mixer, "threshold": threshold,
                                    "exit_histogram": hist, "mean_loops": float(exits.float().mean()),
                                    "bits_full_depth": full_bits, "bits_early_exit": exit_bits, "simulation": sims})
                tqdm.write(f"  early exit ({mixer}, threshold {threshold}): mean loops {row['mean_loops']:.2f}/"
                           f"{cfg.loops}, {full_bits:.3f} -> {exit_bits:.3f} bits/byte; batching speed-up "
                           + ", ".join(f"B={b}: {x['speedup']:.2f}x" for b, x in sims.items()))
            rows.append(row)
    return rows


PART_FUNCTIONS = {"lm": part_lm, "structural": part_structural, "iterations": part_iterations,
                  "sampler": part_sampler, "relaxed": part_relaxed, "batching": part_batching}


def run_recursion_bench(cfg: RecursionBenchConfig, out_dir: Path, text: str | None = None) -> dict:
    """Run the configured parts (resuming from out_dir/runs.jsonl) and write results.json/.md and the plot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(out_dir / "runs.jsonl")
    result = {"config": dataclasses.asdict(cfg), "environment": {"torch": torch.__version__,
                                                                "threads": torch.get_num_threads()}}
    for part in cfg.parts:
        tqdm.write(f"== part {part}")
        fn = PART_FUNCTIONS[part]
        result[part] = fn(cfg, out_dir, log) if part == "structural" else fn(cfg, out_dir, log, text)
    (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "results.md").write_text(render_markdown(result))
    plot_recursion(result, out_dir / "recursion.png")
    return result


# ---------------------------------------------------------------------------------------------- report


def render_markdown(result: dict) -> str:
    cfg = result["config"]
    lines = ["# Recursion over depth", "",
             f"d_model {cfg['d_model']}, vanilla depth N = {cfg['depth']}, K = {cfg['shared']} shared blocks looped "
             f"{cfg['depth'] // cfg['shared']} times; {cfg['steps']} steps of {cfg['batch_size']} x {cfg['seq_len']} "
             "bytes of the default corpus per model. Block applications per token: the compute per token "
             "(MoR: routed, measured in eval mode; recurrent-depth: at its mean training iterations). Training and "
             "decoding tokens/s are measured side by side in one process after training (medians of interleaved "
             "rounds); decoding at batch 1, greedy, after a "
             f"{cfg['decode_prompt']}-byte prompt.", ""]
    if result.get("lm"):
        rows = [[r["mixer"], r["variant"], f"{r['params']:,}", f"{r['block_applications']:.2f}",
                 f"{r['bits_per_byte']:.3f}", f"{r.get('train_tokens_per_s', float('nan')):,.0f}",
                 f"{r['decode_tokens_per_s']:,.0f}"] for r in result["lm"]]
        lines += ["## Language modelling (bits per byte, lower is better)", "",
                  markdown_table(["mixer", "variant", "params", "blocks/token", "val bits/byte", "train tokens/s",
                                  "decode tokens/s"], rows), ""]
    if result.get("structural"):
        rows = [[r["task"], r["mixer"], r["variant"], f"{r['params']:,}", f"{r['test_iid']:.3f}",
                 f"{r['test_edge']:.3f}", f"{r['test_longer']:.3f}"] for r in result["structural"]]
        lines += ["## Structural recursion (exact match)", "",
                  f"Binary successor: trained on 1..{cfg['structural_max_bits']} bits, longer = "
                  f"{cfg['structural_max_bits'] + 1}..{cfg['structural_long_bits']} bits, edge = long carry chains; "
                  "pre-order traversal: trained on depth 1..4, longer = depth 5, edge = path-shaped trees. "
                  f"d_model {cfg['structural_d_model']}, {cfg['structural_steps']} steps.", "",
                  markdown_table(["task", "mixer", "variant", "params", "in distribution", "edge cases",
                                  "longer"], rows), ""]
    if result.get("iterations"):
        lines += ["## Recurrent depth: quality vs test-time iterations", ""]
        for r in result["iterations"]:
            its = list(r["bits_per_byte"])
            lines += [f"{r['mixer']} (trained with mean {r['train_mean_iterations']} iterations):", "",
                      markdown_table(["iterations"] + its, [["bits/byte"] + [f"{r['bits_per_byte'][i]:.3f}"
                                                                           for i in its]]), ""]
    if result.get("sampler"):
        lines += ["## Diffusion-forcing parallel sampler vs sequential decoding (greedy)", "",
                  "core calls: sequential calls of the core (the latency on hardware with spare parallelism); "
                  "work ratio: single-position core iterations of the sampler / sequential's.", ""]
        rows = []
        for r in result["sampler"]:
            for th, s in r["summary"].items():
                rows.append([r["mixer"], r["iterations"], th, f"{s['core_call_speedup']:.2f}x",
                             f"{s['pass_speedup']:.2f}x", f"{s['wall_speedup']:.2f}x", f"{s['token_agreement']:.3f}",
                             f"{s['work_ratio']:.2f}"])
        lines += [markdown_table(["mixer", "iterations", "threshold", "core-call speed-up", "forward-pass speed-up",
                                  "wall speed-up (CPU)", "tokens equal to sequential", "work ratio"], rows), ""]
    if result.get("relaxed"):
        rows = [[r["mixer"], r["scheme"], "strict (no LoRA)" if r["rank"] == 0 else r["rank"],
                 f"{r['lora_params']:,}", f"{r['stack_bits']:.3f}", f"{r['bits_before']:.3f}", f"{r['bits_after']:.3f}"]
                for r in result["relaxed"]]
        lines += ["## Relaxed recursion initialised from the trained stack-N", "",
                  f"Before: right after conversion (SVD-initialised LoRA); after: {cfg['relaxed_uptrain_steps']} "
                  "steps of uptraining.", "",
                  markdown_table(["mixer", "init", "LoRA rank", "LoRA params", "stack-N bits/byte", "before",
                                  "after uptraining"], rows), ""]
    if result.get("batching"):
        rows = []
        for r in result["batching"]:
            for b, s in r["simulation"].items():
                rows.append([r["mixer"], r["threshold"], f"{r['mean_loops']:.2f}", str(r["exit_histogram"]),
                             f"{r['bits_full_depth']:.3f}", f"{r['bits_early_exit']:.3f}", b, f"{s['speedup']:.2f}x",
                             f"{s['speedup_over_static_exit']:.2f}x"])
        lines += ["## Early exit and continuous depth-wise batching (simulated)", "",
                  markdown_table(["mixer", "threshold", "mean loops", "exits per loop", "bits full depth",
                                  "bits with exit", "batch", "speed-up vs full depth", "vs static exit"], rows), ""]
    return "\n".join(lines)


def plot_recursion(result: dict, path: Path) -> Path:
    """Six panels: LM quality vs parameters and vs compute, recurrent depth vs iterations, structural
    exact match, relaxed conversion by LoRA rank, and early exit's quality/compute trade-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    markers = {"attention": "o", "gla": "s"}
    lm = result.get("lm", [])
    for ax, x_key, x_label in ((axes[0, 0], "params", "parameters (log)"),
                               (axes[0, 1], "block_applications", "block applications per token")):
        for mixer in dict.fromkeys(r["mixer"] for r in lm):
            rows = [r for r in lm if r["mixer"] == mixer]
            ax.scatter([r[x_key] for r in rows], [r["bits_per_byte"] for r in rows], label=mixer,
                       marker=markers.get(mixer, "^"))
            for r in rows:
                ax.annotate(r["variant"], (r[x_key], r["bits_per_byte"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        if x_key == "params":
            ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel("validation bits per byte")
        ax.set_title("language modelling")
        ax.grid(True, alpha=0.3)
        if lm:
            ax.legend(fontsize=8)
    ax = axes[0, 2]
    for r in result.get("iterations", []):
        its = [int(i) for i in r["bits_per_byte"]]
        ax.plot(its, [r["bits_per_byte"][str(i)] for i in its], marker=markers.get(r["mixer"], "^"),
                label=f"recurrent-depth ({r['mixer']})")
        ax.axvline(r["train_mean_iterations"], color="gray", linestyle=":")
    ax.set_xlabel("test-time iterations (dotted: training mean)")
    ax.set_ylabel("validation bits per byte")
    ax.set_title("recurrent depth: quality vs iterations")
    ax.grid(True, alpha=0.3)
    if result.get("iterations"):
        ax.legend(fontsize=8)
    ax = axes[1, 0]
    structural = result.get("structural", [])
    labels = [f"{r['task'].split('-')[0][:5]} {r['mixer'][:4]} {r['variant']}" for r in structural]
    xs = range(len(structural))
    for j, split in enumerate(("test_iid", "test_edge", "test_longer")):
        ax.bar([i + 0.27 * (j - 1) for i in xs], [r[split] for r in structural], width=0.27,
               label=split.replace("test_", "").replace("iid", "in distribution"))
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_ylabel("exact match")
    ax.set_title("structural recursion")
    if structural:
        ax.legend(fontsize=8)
    ax = axes[1, 1]
    relaxed = result.get("relaxed", [])
    for mixer in dict.fromkeys(r["mixer"] for r in relaxed):
        for scheme in dict.fromkeys(r["scheme"] for r in relaxed):
            rows = sorted((r for r in relaxed if r["mixer"] == mixer and r["scheme"] == scheme), key=lambda r: r["rank"])
            ranks = [max(r["rank"], 0.5) for r in rows]
            ax.plot(ranks, [r["bits_after"] for r in rows], marker=markers.get(mixer, "^"), label=f"{mixer} {scheme}")
        stack = [r["stack_bits"] for r in relaxed if r["mixer"] == mixer][0]
        ax.axhline(stack, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("LoRA rank (0.5 = strict tying, no LoRA)")
    ax.set_ylabel("bits per byte after uptraining (dotted: stack-N)")
    ax.set_title("relaxed: converted from the trained stack")
    ax.grid(True, alpha=0.3)
    if relaxed:
        ax.legend(fontsize=7)
    ax = axes[1, 2]
    batching = result.get("batching", [])
    for mixer in dict.fromkeys(r["mixer"] for r in batching):
        rows = sorted((r for r in batching if r["mixer"] == mixer), key=lambda r: r["mean_loops"])
        ax.plot([r["mean_loops"] for r in rows], [r["bits_early_exit"] for r in rows], marker=markers.get(mixer, "^"),
                label=f"{mixer} early exit")
        for r in rows:
            ax.annotate(f"p>={r['threshold']}", (r["mean_loops"], r["bits_early_exit"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.scatter([result["config"]["depth"] // result["config"]["shared"]], [rows[-1]["bits_full_depth"]],
                   marker="*", s=80, label=f"{mixer} full depth")
    ax.set_xlabel("mean loops per token")
    ax.set_ylabel("validation bits per byte")
    ax.set_title("relaxed: confidence-based early exit")
    ax.grid(True, alpha=0.3)
    if batching:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
