"""``recurlab bench recursion``: what reusing one block over depth buys, at equal compute and equal parameters.

Every variant is a language model of the same width around blocks of one token mixer (attention
and gla by default), trained the same way (``recursion_parts.DEPTHS`` says how each is built):

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

Parts (``parts``), each with its settings in the config's section of the same name:

    lm          bits per byte on the default corpus, parameters, block applications per token,
                training tokens/s (side by side, after training) and decoding tokens/s (``speed``)
    structural  exact-match accuracy on the structural-recursion tasks (binary successor, pre-order
                traversal): in distribution, on edge cases and on longer inputs
    iterations  RecurrentDepth: bits per byte vs the number of test-time iterations
    sampler     RecurrentDepth: the diffusion-forcing parallel sampler vs sequential decoding
    relaxed     Relaxed initialised from the trained stack-N (stepwise / average / lower), quality
                recovered by the LoRA rank, before and after a short uptraining
    batching    continuous depth-wise batching, simulated with Relaxed's early-exit depths

It is a declaration on the harness (:mod:`recurlab.bench.harness`): every training or measurement
is a job of the run log (an interrupted run continues), and the trained models stay in
``OUT/models`` for the parts that reuse them. The measurements are in :mod:`.recursion_parts`, the
tables and the plot in :mod:`.recursion_report`. Writes results.json, results.md and recursion.png.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .. import layers
from ..configs import check_fields, param
from .harness import Benchmark, Finished, Report, settings
from .recursion_parts import (DEPTHS, SLICED_MIXERS, applicable_variants, build_variant, compute_per_token,  # noqa: F401
                              eval_bits, measure)
from .recursion_report import plot_recursion, render_markdown

PARTS = ("lm", "structural", "iterations", "sampler", "relaxed", "batching")
VARIANTS = tuple(DEPTHS)


def _token_mixers() -> list[str]:
    return layers.names("token")


def _checked(cls):
    """A dataclass whose fields are checked on construction (types, bounds, choices)."""
    cls.__post_init__ = check_fields
    return dataclass(cls)


@_checked
class Shape:
    depth: int = param(6, ge=1)  # N: blocks of the vanilla model
    shared: int = param(2, ge=1)  # K: shared blocks of the looped variants (N must be a multiple)
    lora_rank: int = param(16, ge=1)


@_checked
class LMPart:
    d_model: int = param(128, ge=1)
    seq_len: int = param(128, ge=2)
    batch_size: int = param(16, ge=1)
    steps: int = param(400, ge=1)
    lr: float = param(2e-3, gt=0)
    eval_sequences: int = param(256, ge=1)
    corpus: str | None = None  # a .txt file or folder; None: the default corpus


@_checked
class SpeedPart:
    decode_prompt: int = param(64, ge=1)
    decode_tokens: int = param(128, ge=1)
    rounds: int = param(3, ge=1)


@_checked
class StructuralPart:
    variants: list[str] = param(factory=lambda: ["stack-N", "stack-K", "recursive", "relaxed", "mor-expert",
                                                 "recurrent-depth"], axis=True, choices=VARIANTS)
    d_model: int = param(64, ge=1)
    steps: int = param(2500, ge=1)
    lr: float = param(1e-3, gt=0)
    batch_size: int = param(16, ge=1)
    train_examples: int = param(10_000, ge=1)
    test_examples: int = param(512, ge=1)
    max_bits: int = param(16, ge=1)
    long_bits: int = param(20, ge=2)


@_checked
class SamplerPart:
    prompts: int = param(4, ge=1)
    prompt_len: int = param(64, ge=1)
    new_tokens: int = param(64, ge=1)
    iterations: int = param(8, ge=1)
    inner_steps: int = param(2, ge=1)
    thresholds: list[float] = param(factory=lambda: [0.0, 0.03, 0.1], ge=0)


@_checked
class RelaxedPart:
    ranks: list[int] = param(factory=lambda: [0, 8, 128], axis=True, ge=0)
    schemes: list[str] = param(factory=lambda: ["stepwise", "average", "lower"], axis=True,
                               choices=("stepwise", "average", "lower"))
    uptrain_steps: int = param(60, ge=1)


@_checked
class BatchingPart:
    thresholds: list[float] = param(factory=lambda: [0.5, 0.7, 0.9], axis=True, ge=0, le=1)
    batch_sizes: list[int] = param(factory=lambda: [8, 32, 128], ge=1)


@dataclass
class RecursionBenchConfig:
    mixers: list[str] = param(factory=lambda: ["attention", "gla"], axis=True, choices=_token_mixers)
    variants: list[str] = param(factory=lambda: list(VARIANTS), axis=True, choices=VARIANTS)
    parts: list[str] = param(factory=lambda: list(PARTS), axis=True, choices=PARTS)
    shape: Shape = field(default_factory=Shape)
    lm: LMPart = field(default_factory=LMPart)
    speed: SpeedPart = field(default_factory=SpeedPart)
    structural: StructuralPart = field(default_factory=StructuralPart)
    iterations: list[int] = param(factory=lambda: [1, 2, 3, 4, 6, 8, 12], ge=1)  # RecurrentDepth's test-time iterations
    sampler: SamplerPart = field(default_factory=SamplerPart)
    relaxed: RelaxedPart = field(default_factory=RelaxedPart)
    batching: BatchingPart = field(default_factory=BatchingPart)
    seed: int = param(0, ge=0)

    def __post_init__(self):
        check_fields(self)
        if self.shape.depth % self.shape.shared:
            raise ValueError(f"shape.depth={self.shape.depth} must be a multiple of shape.shared={self.shape.shared} "
                             "(the looped variants apply the shared blocks depth/shared times)")

    @classmethod
    def quick(cls) -> "RecursionBenchConfig":
        """Minutes on 2 cores: tiny sizes, every part once, attention only."""
        return cls(mixers=["attention"], shape=Shape(4, 2, 8), lm=LMPart(64, 64, 8, 40, eval_sequences=32),
                   speed=SpeedPart(16, 16, 1), iterations=[1, 2, 4],
                   structural=replace(StructuralPart(), d_model=32, steps=40, batch_size=8, train_examples=1000,
                                      test_examples=128, max_bits=12, long_bits=14),
                   sampler=SamplerPart(prompts=1, prompt_len=16, new_tokens=8, iterations=4),
                   relaxed=RelaxedPart([0, 8], ["stepwise", "average"], 10), batching=BatchingPart([0.5]))


def jobs(cfg: RecursionBenchConfig) -> list[dict]:
    """The jobs of every part in order; a later part's job holds the lm job of the model it uses."""
    base = {"shape": asdict(cfg.shape), "seed": cfg.seed}
    lm = lambda mixer, variant: {"part": "lm", "mixer": mixer, "variant": variant, **base, "lm": asdict(cfg.lm)}  # noqa: E731
    out = []
    for part in cfg.parts:
        for mixer in cfg.mixers:
            if part == "lm":
                variants = applicable_variants(cfg.variants, mixer)
                out += [lm(mixer, v) for v in variants]
                out.append({"part": "lm-speed", "mixer": mixer, "variants": variants, **base, "lm": asdict(cfg.lm),
                            "speed": asdict(cfg.speed)})
                out.append({"part": "lm-decode", "models": [lm(mixer, v) for v in variants], "speed": asdict(cfg.speed)})
            elif part == "iterations":
                out.append({"part": part, "model": lm(mixer, "recurrent-depth"), "iterations": cfg.iterations})
            elif part == "sampler":
                out.append({"part": part, "model": lm(mixer, "recurrent-depth"), "sampler": asdict(cfg.sampler)})
            elif part == "relaxed":
                out += [{"part": part, "model": lm(mixer, "stack-N"), "scheme": s, "rank": r, **settings(cfg.relaxed)}
                        for s in cfg.relaxed.schemes for r in cfg.relaxed.ranks]
            elif part == "batching":
                out += [{"part": part, "model": lm(mixer, "relaxed"), "threshold": t, **settings(cfg.batching)}
                        for t in cfg.batching.thresholds]
        if part == "structural":
            out += [{"part": part, "task": task, "mixer": m, "variant": v, **base, "structural": settings(cfg.structural)}
                    for task in ("successor", "traversal-pre") for m in cfg.mixers
                    for v in applicable_variants(cfg.structural.variants, m)]
    return out


def report(cfg: RecursionBenchConfig, finished: Finished) -> Report:
    """The rows of each part (lm rows with the side-by-side speeds of their mixer), as the report reads them."""
    result = {"config": asdict(cfg), **{part: [] for part in cfg.parts}}
    speeds = {}
    for job, row in finished:
        if job["part"] in ("lm-speed", "lm-decode"):
            mixer = job.get("mixer") or job["models"][0]["mixer"]
            speeds[mixer, "train" if job["part"] == "lm-speed" else "decode"] = row["tokens_per_s"]
        else:
            result[job["part"]].append(dict(row))
    for row in result.get("lm", []):
        for kind in ("train", "decode"):
            if row["variant"] in speeds.get((row["mixer"], kind), {}):
                row[f"{kind}_tokens_per_s"] = speeds[row["mixer"], kind][row["variant"]]
    return Report(render_markdown(result), {p: result[p] for p in cfg.parts}, lambda path: plot_recursion(result, path))


def label(job: dict) -> str:
    inner = job.get("model") or job
    return " ".join(str(x) for x in (job["part"], job.get("task"), inner.get("mixer"), inner.get("variant"),
                                     job.get("scheme"), job.get("rank"), job.get("threshold")) if x is not None)


BENCHMARK = Benchmark("recursion", RecursionBenchConfig, jobs, measure, report, plot_file="recursion.png", label=label)
