"""``recurlab bench reasoning``: ParaThinker's parallel paths and MinD's multi-turn decoding against plain CoT.

ParaThinker (Wen et al. 2025) claims +12.3% (1.5B) / +7.5% (7B) accuracy with 8 parallel paths and a summary
over them, at a 7.1% latency overhead, where more sequential thinking stops helping. MinD (Zeng et al. 2025)
claims up to ~70% fewer output tokens at competitive accuracy by rewriting a reasoning model's chains of thought
as turns (a thinking unit and the answer it reaches each; later units verify), fine-tuning on that format, then
GRPO to prefer correct answers in fewer turns. Here, per token mixer (an
attention model and a recurrent one by default), byte-level models of one architecture are trained from scratch
on seeded arithmetic problems of :mod:`recurlab.tasks.reasoning`:

    cot           prompt -> one chain of thought and the answer (``format_trace(problem, "cot")``)
    long-cot      prompt -> the solution and 0-2 checks that re-derive it, in one thinking block
                  (``"long_cot"``; the number of checks drawn per problem): MinD's baseline, a reasoning
                  model's trace with its redundant units
    parathinker   prompt -> P_train paths (the problem's valid solution orders) and a summary with the answer,
                  in ParaThinker's layout (recurlab/reasoning/parathinker.py: path embeddings, paths forked from
                  the prompt's state and decoded as one batch, a summary that reads them through the state)
    mind          prompt -> the same units as MinD's turns, each with its answer (``"multi_turn"``), supervised
    mind-grpo     the mind model, then GRPO (recurlab/train/grpo.py) with the reward
                  1[correct] + 0.1 * 1[an answer] - length_penalty * tokens (MinD's exact reward is not verified)

and evaluated on held-out problems: the CoT model greedily (one trace) and by majority vote over k sampled traces
(decoded as one batch of k rows forked from the prompt's state), the ParaThinker model with P = 1, 2, 4 paths
(sampled, summary greedy), the long-CoT and MinD models greedily. Per setting: exact-match accuracy (``check_answer``),
generated tokens, tokens until the first ``</answer>`` and wall-clock ms per problem (one problem at a time,
one thread). Writes results.json, results.md and reasoning.png.

The scale is far from the papers' (a ~1M-parameter byte model trained for minutes, 1-digit operands): what is
measured is whether each mechanism, at equal data and architecture, beats the baselines, and what it costs.
"""

from __future__ import annotations

from functools import partial
import random
import time
from collections import Counter
from dataclasses import dataclass

import torch

from ..configs import check_fields, param
from ..train.schedule import warmup_cosine
from .harness import Benchmark, Context, Finished, Report, settings
from .report import markdown_table

METHODS = ("cot", "parathinker", "long-cot", "mind", "mind-grpo")
FORMATS = {"cot": "cot", "long-cot": "long_cot", "mind": "multi_turn", "mind-grpo": "multi_turn"}  # SFT text format
GRPO_FIELDS = ("grpo_steps", "grpo_group", "grpo_prompts", "grpo_lr", "grpo_beta", "grpo_temperature",
               "length_penalty")  # settings of the mind-grpo jobs only (the other jobs' keys do not hold them)
# byte ids of the layout's markers: the reasoning tasks' text is printable ASCII, PAD is 0 and EOS is 4
PATH_START, PATH_END, SUMMARY_START = 1, 2, 3
CLAIM = "+12.3% (1.5B) / +7.5% (7B) accuracy with 8 paths at 7.1% latency overhead"
MIND_CLAIM = "up to ~70% fewer output tokens at competitive accuracy (MinD: multi-turn SFT, then GRPO)"


@dataclass
class ReasoningBenchConfig:
    mixers: tuple[str, ...] = param(("attention", "gla"), axis=True)
    methods: tuple[str, ...] = param(METHODS, axis=True, choices=METHODS)
    family: str = param("arithmetic", choices=("arithmetic", "modular", "equation"))
    steps: int = param(2, ge=1)  # operations per problem
    digits: int = param(1, ge=1)
    n_train: int = param(4000, ge=1)
    n_test: int = param(100, ge=1)
    train_paths: int = param(4, ge=1)  # P of the ParaThinker training layout
    eval_paths: tuple[int, ...] = param((1, 2, 4), ge=1)  # P at inference; the CoT model votes over as many samples
    temperature: float = param(0.7, ge=0)  # sampling of paths and voted traces (the single CoT trace is greedy)
    d_model: int = param(128, ge=8)
    n_layers: int = param(4, ge=1)
    train_steps: int = param(1500, ge=1)
    batch_size: int = param(16, ge=1)
    lr: float = param(3e-3, gt=0)
    # budgets in bytes: a 2-step path is ~48 bytes and a summary ("<summary>all 4 paths give 43</summary>" and
    # the answer) ~57, so 48 truncated every summary before its answer (a first run scored 0 that way)
    max_path_tokens: int = param(80, ge=1)
    max_summary_tokens: int = param(80, ge=1)
    seed: int = param(0, ge=0)
    # MinD's second stage (mind-grpo): GRPO from the multi-turn SFT model (recurlab/train/grpo.py)
    grpo_steps: int = param(120, ge=1)
    grpo_group: int = param(8, ge=2)
    grpo_prompts: int = param(4, ge=1)  # prompts per GRPO step
    # 1e-4 with 2 prompts per step (a first run, with one-step-per-turn traces) lowered greedy accuracy (gla 0.41
    # -> 0.27) while the sampled reward only wandered: too large a step for so noisy a gradient
    grpo_lr: float = param(3e-5, gt=0)
    grpo_beta: float = param(0.04, ge=0)
    grpo_temperature: float = param(1.0, gt=0)
    length_penalty: float = param(0.002, ge=0)  # reward: 1[correct] + 0.1 * 1[an answer] - length_penalty * tokens

    def __post_init__(self):
        check_fields(self)
        from .. import layers

        unknown = [m for m in self.mixers if m not in layers.names("token") or layers.info(m).cls.reads_memory
                   or layers.info(m).cls.reads_kv]
        if unknown or not self.mixers:
            raise ValueError(f"mixers must be self-contained registered token mixers, got {self.mixers}")
        if max(self.eval_paths) > 8:
            raise ValueError(f"eval_paths must be at most 8, got {self.eval_paths}")
        if "parathinker" in self.methods and max(self.eval_paths) > self.train_paths:
            raise ValueError(f"eval_paths must be at most train_paths={self.train_paths} (a path beyond those trained "
                             f"has an untrained path embedding), got {self.eval_paths}")

    @classmethod
    def quick(cls, **overrides) -> "ReasoningBenchConfig":
        return cls(**{"mixers": ("gla",), "n_train": 300, "n_test": 20, "train_steps": 60, "d_model": 32,
                      "n_layers": 2, "eval_paths": (1, 2), "train_paths": 2, "grpo_steps": 5, **overrides})

    @property
    def max_tokens(self) -> int:
        """The longest single CoT trace: a path's and a summary's budgets together."""
        return self.max_path_tokens + self.max_summary_tokens

    def budget(self, method: str) -> int:
        """The generation budget of one trace: max_tokens for CoT; one path's more for the traces with checks
        (long-cot, mind, mind-grpo), whose longest is a solution and two checks."""
        return self.max_tokens + (self.max_path_tokens if method in ("long-cot", "mind", "mind-grpo") else 0)


def jobs(cfg: ReasoningBenchConfig) -> list[dict]:
    shared = settings(cfg)
    own = lambda meth: shared if meth == "mind-grpo" else {k: v for k, v in shared.items() if k not in GRPO_FIELDS}  # noqa: E731
    return [{"mixer": m, "method": meth, **own(meth)} for m in cfg.mixers for meth in cfg.methods]


# --------------------------------------------------------------------------------------------------- data


def _problems(cfg: ReasoningBenchConfig, split: str):
    from ..tasks import reasoning

    n, seed = (cfg.n_train, cfg.seed) if split == "train" else (cfg.n_test, cfg.seed + 10_000)
    return reasoning.generate(cfg.family, n, seed=seed, steps=cfg.steps, digits=cfg.digits)


def _marks():
    from ..reasoning import Markers
    from ..tasks import reasoning

    return Markers(PATH_START, PATH_END, SUMMARY_START, reasoning.EOS)


def training_rows(cfg: ReasoningBenchConfig, method: str):
    """The method's supervised rows as :class:`recurlab.reasoning.Examples` (inputs, segments, labels)."""
    from ..reasoning import Examples, sft_examples
    from ..tasks import reasoning
    from ..tasks.base import IGNORE

    problems = _problems(cfg, "train")
    if method == "parathinker":
        triples = []
        for p in problems:
            paths, summary = reasoning.parallel_paths(p, cfg.train_paths)
            triples.append((reasoning.encode(reasoning.prompt_text(p)), [reasoning.encode(t) for t in paths],
                            reasoning.encode(summary)))
        return sft_examples(triples, _marks(), max_paths=max(cfg.eval_paths + (cfg.train_paths,)))
    rows = []
    checks = random.Random(cfg.seed + 7)  # checks per problem, 0..CHECKS: the same draws for long-cot and MinD
    for p in problems:  # prompt | trace end, labels on the trace and end
        n_checks = checks.randint(0, reasoning.CHECKS)
        trace = reasoning.format_trace(p, FORMATS[method], n_checks=n_checks)
        prompt, trace = reasoning.encode(reasoning.prompt_text(p)), reasoning.encode(trace)
        tokens = prompt + trace + [reasoning.EOS]
        rows.append((tokens[:-1], [IGNORE] * (len(prompt) - 1) + tokens[len(prompt):]))
    width = max(len(r[0]) for r in rows)
    inputs = torch.tensor([r[0] + [0] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [IGNORE] * (width - len(r[1])) for r in rows])
    return Examples(inputs, torch.zeros_like(inputs), labels)


# ----------------------------------------------------------------------------------------------- training


def build(cfg: ReasoningBenchConfig, mixer: str):
    from .. import layers
    from ..models import CausalLM, ModelConfig
    from ..reasoning import ParaThinker

    torch.manual_seed(cfg.seed)
    kwargs = {mixer: {"n_heads": max(1, cfg.d_model // 32)}} if layers.accepts(mixer, "n_heads") else {}
    lm = CausalLM(ModelConfig(vocab_size=256, d_model=cfg.d_model, n_layers=cfg.n_layers, mixer=mixer,
                              mixer_kwargs=kwargs))
    return ParaThinker(lm, max_paths=max(cfg.eval_paths + (cfg.train_paths,)))


class _SFTLoss(torch.nn.Module):
    """model(inputs, segments, labels) -> the SFT loss: what :func:`recurlab.train.loop.train_steps` calls."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs, segments, labels):
        from ..reasoning import sft_loss

        return sft_loss(self.model, inputs, segments, labels)


def train(model, rows, cfg: ReasoningBenchConfig, progress: bool, desc: str):
    """AdamW (warm-up, then cosine to 10%) through recurlab's loop; every batch trimmed to its last label."""
    from ..tasks.base import IGNORE
    from ..train.loop import train_steps

    generator = torch.Generator().manual_seed(cfg.seed + 1)
    order = torch.randint(0, rows.inputs.shape[0], (cfg.train_steps, cfg.batch_size), generator=generator)

    def batch(step):
        idx = order[step]
        width = int((rows.labels[idx] != IGNORE).nonzero()[:, 1].max()) + 1
        # (*inputs, target): the loop calls _SFTLoss(inputs, segments, labels); the target only sizes the batch
        return rows.inputs[idx, :width], rows.segments[idx, :width], rows.labels[idx, :width], idx

    schedule = partial(warmup_cosine, total=cfg.train_steps, warmup=max(1, cfg.train_steps // 20), min_ratio=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    return train_steps(_SFTLoss(model), optimizer, lambda loss, _: loss, batch, cfg.train_steps,
                       max(1, cfg.train_steps // 5), lr_factor=schedule, grad_clip=1.0, progress=progress,
                       desc=desc)


def mind_reward(cfg: ReasoningBenchConfig, problems):
    """GRPO's reward for MinD: 1[correct final answer] + 0.1 * 1[any answer] - length_penalty * tokens."""
    from ..tasks import reasoning

    by_prompt = {tuple(reasoning.encode(reasoning.prompt_text(p))): p for p in problems}

    def reward(prompt_ids, completion_ids) -> float:
        problem = by_prompt[tuple(prompt_ids)]
        text = reasoning.decode(completion_ids)
        answered = reasoning.extract_answer(text) is not None
        return (float(reasoning.check_answer(text, problem)) + 0.1 * answered
                - cfg.length_penalty * len(completion_ids))

    return reward


def train_grpo(model, cfg: ReasoningBenchConfig, progress: bool) -> dict:
    """GRPO on the training prompts from the SFT model (its own frozen copy as the KL reference)."""
    from ..tasks import reasoning
    from ..train.grpo import GRPOConfig, grpo_train

    problems = _problems(cfg, "train")
    prompts = [reasoning.encode(reasoning.prompt_text(p)) for p in problems]
    config = GRPOConfig(group_size=cfg.grpo_group, beta=cfg.grpo_beta, lr=cfg.grpo_lr, steps=cfg.grpo_steps,
                        max_new_tokens=cfg.budget("mind-grpo"), temperature=cfg.grpo_temperature, eos_id=reasoning.EOS,
                        prompts_per_step=cfg.grpo_prompts, seed=cfg.seed + 3)
    return grpo_train(model.lm, None, prompts, mind_reward(cfg, problems), config, progress=progress)


# --------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _sample_traces(model, prompt: list[int], k: int, temperature: float, max_tokens: int, generator):
    """k traces of one prompt as one batch of k rows forked from the prompt's state (segment 0)."""
    from ..reasoning.parathinker import _decode
    from ..tasks import reasoning

    logits, state = model.prefill(torch.tensor([prompt]), 0)
    return _decode(model, logits.expand(k, -1), state.select([0] * k), torch.zeros(k, dtype=torch.long),
                   reasoning.EOS, max_tokens, temperature, generator)


def _vote(texts: list[str], problem) -> bool:
    """Whether the majority answer over texts (ties: the first seen) is correct."""
    from ..tasks import reasoning

    answers = [a for a in (reasoning.normalise_answer(reasoning.extract_answer(t) or "", problem.family)
                           for t in texts) if a]
    if not answers:
        return False
    best = Counter(answers).most_common(1)[0][0]
    return reasoning.check_answer(f"<answer>{best}</answer>", problem)


def _first_answer_tokens(text: str) -> int:
    """Tokens (bytes) up to and including the first ``</answer>``; the whole text when there is none."""
    end = text.find("</answer>")
    return len(text.encode()) if end < 0 else len(text[:end + len("</answer>")].encode())


def evaluate(model, cfg: ReasoningBenchConfig, method: str, ctx: Context) -> list[dict]:
    """One row per setting: (method, P or k) -> accuracy, generated tokens, tokens to the first answer and ms per
    problem (the time to the first answer is that share of the decoding time: every step costs about the same)."""
    from tqdm.auto import tqdm

    from ..reasoning import think
    from ..tasks import reasoning

    problems = _problems(cfg, "test")
    marks = _marks()
    generator = torch.Generator().manual_seed(cfg.seed + 2)
    if method == "cot":
        plan = [("greedy", 1)] + [("vote", k) for k in cfg.eval_paths if k > 1]
    elif method == "parathinker":
        plan = [("paths", p) for p in cfg.eval_paths]
    else:
        plan = [("greedy", 1)]
    rows = []
    for kind, n in plan:
        correct, tokens, first, seconds = 0, 0, 0, 0.0
        path_correct, path_vote = 0, 0  # ParaThinker's diagnostics: the paths' own answers, and their majority
        bar = tqdm(problems, desc=f"{method} {kind} {n}", disable=not ctx.progress, leave=False, dynamic_ncols=True)
        for done, problem in enumerate(bar, start=1):
            prompt = reasoning.encode(reasoning.prompt_text(problem))
            start = time.perf_counter()
            if kind == "paths":
                thought = think(model, prompt, n, marks, cfg.max_path_tokens, cfg.max_summary_tokens,
                                temperature=cfg.temperature, generator=generator)
                ok = reasoning.check_answer(reasoning.decode(thought.summary), problem)
                path_texts = [reasoning.decode(path) for path in thought.paths]
                path_correct += sum(reasoning.check_answer(t, problem) for t in path_texts) / n
                path_vote += int(_vote(path_texts, problem))
                used = sum(len(p) + 2 for p in thought.paths) + len(thought.summary) + 2
                to_first = used  # the answer comes with the summary, after every path
            else:
                temperature = 0.0 if kind == "greedy" else cfg.temperature
                traces = _sample_traces(model, prompt, n, temperature, cfg.budget(method), generator)
                texts = [reasoning.decode(t) for t in traces]
                ok = _vote(texts, problem)
                used = sum(len(t) + 1 for t in traces)
                to_first = _first_answer_tokens(texts[0]) if n == 1 else used
            seconds += time.perf_counter() - start
            correct, tokens, first = correct + int(ok), tokens + used, first + to_first
            bar.set_postfix(acc=f"{correct / done:.3f}")
        rows.append({"mixer": None, "method": method, "setting": kind, "n": n, "accuracy": correct / len(problems),
                     "tokens_per_problem": tokens / len(problems),
                     "first_answer_tokens": first / len(problems),
                     "seconds_per_problem": seconds / len(problems),
                     "first_answer_seconds": seconds / len(problems) * first / max(tokens, 1),
                     **({"path_accuracy": path_correct / len(problems), "path_vote_accuracy": path_vote / len(problems)}
                        if kind == "paths" else {})})
    return rows


def measure(job: dict, ctx: Context) -> dict:
    cfg = ReasoningBenchConfig(**{k: v for k, v in job.items() if k not in ("mixer", "method")},
                               mixers=(job["mixer"],), methods=(job["method"],))
    torch.set_num_threads(1)  # one problem at a time: latency on one thread, as the other jobs
    model = build(cfg, job["mixer"])
    rows = training_rows(cfg, job["method"])
    start = time.perf_counter()
    history = train(model, rows, cfg, ctx.progress, f"{job['mixer']} {job['method']}")
    extra = {}
    if job["method"] == "mind-grpo":
        grpo = train_grpo(model, cfg, ctx.progress)
        extra = {"grpo_reward_first": sum(grpo["reward"][:10]) / len(grpo["reward"][:10]),
                 "grpo_reward_last": sum(grpo["reward"][-10:]) / len(grpo["reward"][-10:]),
                 "grpo_length_last": sum(grpo["length"][-10:]) / len(grpo["length"][-10:])}
    train_seconds = time.perf_counter() - start
    results = evaluate(model, cfg, job["method"], ctx)
    for r in results:
        r["mixer"] = job["mixer"]
    return {"rows": results, "train_seconds": train_seconds, "final_loss": history.window_loss[-1],
            "params": sum(p.numel() for p in model.parameters()), "train_rows": int(rows.inputs.shape[0]), **extra}


# ------------------------------------------------------------------------------------------------- report


LABELS = {"greedy": "{method}, one greedy trace", "vote": "CoT, majority of {n} sampled traces",
          "paths": "ParaThinker, P = {n}"}
METHOD_NAMES = {"cot": "CoT", "long-cot": "long CoT (solution + checks)", "mind": "MinD SFT",
                "mind-grpo": "MinD SFT + GRPO", "parathinker": "ParaThinker"}


def render_markdown(cfg: ReasoningBenchConfig, finished: Finished) -> str:
    lines = ["# recurlab bench reasoning\n",
             f"{cfg.family} problems of {cfg.steps} operations on {cfg.digits}-digit operands: {cfg.n_train} to "
             f"train, {cfg.n_test} held out. Byte-level models (d_model {cfg.d_model}, {cfg.n_layers} blocks), "
             f"{cfg.train_steps} steps of batch {cfg.batch_size}. ParaThinker trained with {cfg.train_paths} paths; "
             f"paths and voted traces sampled at temperature {cfg.temperature}. ms: one problem at a time, one "
             f"thread; to the first answer: tokens up to the first `</answer>` (for ParaThinker and votes, all "
             f"generated tokens). Papers: ParaThinker {CLAIM}; MinD {MIND_CLAIM}.\n"]
    body = []
    for job, result in finished:
        for r in result["rows"]:
            label = LABELS[r["setting"]].format(method=METHOD_NAMES[r["method"]], n=r["n"])
            if r["setting"] == "paths" and "path_accuracy" in r:
                label += (f" (paths alone: {r['path_accuracy']:.3f} correct each, {r['path_vote_accuracy']:.3f} by "
                          f"their majority)")
            body.append([r["mixer"], label, f"{r['accuracy']:.3f}", f"{r['tokens_per_problem']:.0f}",
                         f"{r.get('first_answer_tokens', r['tokens_per_problem']):.0f}",
                         f"{1e3 * r['seconds_per_problem']:.0f}"])
    lines.append(markdown_table(["mixer", "method", "accuracy", "generated tokens / problem",
                                 "tokens to the first answer", "ms / problem"], body))
    lines.append("\nTraining: " + "; ".join(
        f"{job['mixer']} {job['method']}: {result['params']:,} parameters, {result['train_rows']:,} rows, final loss "
        f"{result['final_loss']:.3f}" + (f", GRPO reward {result['grpo_reward_first']:.3f} -> "
                                         f"{result['grpo_reward_last']:.3f} (first / last 10 steps)"
                                         if "grpo_reward_last" in result else "")
        + f", {result['train_seconds'] / 60:.1f} min" for job, result in finished) + ".")
    return "\n".join(lines) + "\n"


def report(cfg: ReasoningBenchConfig, finished: Finished) -> Report:
    rows = [r for _, result in finished for r in result["rows"]]
    training = [{"mixer": j["mixer"], "method": j["method"], **{k: v for k, v in r.items() if k != "rows"}}
                for j, r in finished]
    return Report(render_markdown(cfg, finished), {"rows": rows, "training": training},
                  lambda path: plot_reasoning(rows, path))


def plot_reasoning(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_mind = any(r["method"] in ("long-cot", "mind", "mind-grpo") for r in rows)
    fig, axes = plt.subplots(1, 3 if has_mind else 2, figsize=(17 if has_mind else 12, 4.5))
    mixers = list(dict.fromkeys(r["mixer"] for r in rows))
    for i, mixer in enumerate(mixers):
        for setting, style, name in (("paths", "-o", "ParaThinker, P paths"), ("vote", "--s", "CoT, majority of k")):
            pts = sorted((r["n"], r["accuracy"], r["seconds_per_problem"]) for r in rows
                         if r["mixer"] == mixer and r["setting"] == setting)
            cot = [r for r in rows if r["mixer"] == mixer and r["method"] == "cot" and r["setting"] == "greedy"]
            if setting == "vote" and cot:  # the vote curve starts at the single greedy trace
                pts = [(1, cot[0]["accuracy"], cot[0]["seconds_per_problem"])] + pts
            if pts:
                n, acc, sec = zip(*pts)
                axes[0].plot(n, acc, style, color=f"C{i}", label=f"{mixer}: {name}", markersize=7)
                axes[1].plot(n, [1e3 * s for s in sec], style, color=f"C{i}", label=f"{mixer}: {name}",
                             markersize=7)
        for r in rows if has_mind else []:  # MinD and CoT, single greedy traces: accuracy against tokens
            if r["mixer"] == mixer and r["setting"] == "greedy":
                marker = {"cot": "x", "long-cot": "s", "mind": "^", "mind-grpo": "*"}[r["method"]]
                axes[2].scatter(r["tokens_per_problem"], r["accuracy"], marker=marker, s=90, color=f"C{i}",
                                label=f"{mixer}: {METHOD_NAMES[r['method']]}")
    axes[0].set(xlabel="paths P / voted traces k", ylabel="exact-match accuracy", title="ParaThinker vs voting: accuracy")
    axes[1].set(xlabel="paths P / voted traces k", ylabel="ms per problem (one thread)", title="latency")
    if has_mind:
        axes[2].set(xlabel="generated tokens per problem", ylabel="exact-match accuracy", title="CoT vs MinD")
    for ax in axes[:2]:
        ax.set_xscale("log", base=2)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label(job: dict) -> str:
    return f"{job['mixer']} {job['method']}"


def summary(job: dict, result: dict) -> str:
    return f"{job['mixer']} {job['method']}: " + ", ".join(
        f"{r['setting']} {r['n']}: {r['accuracy']:.3f}" for r in result["rows"])


BENCHMARK = Benchmark("reasoning", ReasoningBenchConfig, jobs, measure, report, plot_file="reasoning.png",
                      label=label, summary=summary)
