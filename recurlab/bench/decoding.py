"""``recurlab bench decoding``: speculative decoding (chain, RSD-C, RSD-S) against plain decoding, on trained models.

Targets are language-model presets (default lm-attention, lm-gla, lm-samba-gmu) and the draft is a small
model of the same family (default: the lm-mingru preset cut to 2 blocks of width 128); all are trained
by the benchmark itself on the default corpus (or ``data``) into ``OUT/models/NAME`` and reused from
there (an interrupted training continues). Each decoding job then takes one target at one temperature
and decodes ``prompts`` held-out prompts with plain decoding (``CausalLM.generate``) and with every
method, **interleaved prompt by prompt in one process**, so the speed-ups are ratios measured side by
side. Per method it reports:

- draft shape: ``chain:k`` (k drafted tokens), ``rsd-c:b1x..xbL`` (branching per level),
  ``rsd-s:WxL`` (beam width x depth); the tree's nodes (the draft budget the RSD paper compares at),
  leaves, and the token positions one verification call runs (leaves x (depth + 1): trees are scored
  path by path, see recurlab/decoding/verify.py);
- mean accepted draft tokens per target call, and target calls per generated token (re-runs of a
  partly accepted draft count as calls of their own);
- wall-clock tokens/s and the speed-up over plain decoding (median over prompts of the per-prompt
  ratio);
- quality: bits per byte of the generated text under the target. Every method samples exactly the
  target's distribution, so this should equal plain decoding's within sampling noise (at temperature
  0 the text itself is identical to greedy decoding, which the benchmark checks).

Files: results.json, results.md, decoding.png (speed-up against the draft budget, one panel per
target and temperature) and the trained models under ``models/``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..configs import check_fields, param
from ..train.lm import PRESETS, DataSource, LMSetup
from .harness import Benchmark, Context, Finished, Report, settings
from .lm import train_in_folder
from .report import markdown_table

DEFAULT_TARGETS = ("lm-attention", "lm-gla", "lm-samba-gmu")
# draft length 2 and 4 (the same depth for every method), and about 6 draft tokens per round (the same budget)
DEFAULT_METHODS = ("chain:2", "rsd-c:2x2", "rsd-s:2x2",
                   "chain:4", "rsd-c:2x2x1x1", "rsd-s:3x4",
                   "chain:6", "rsd-c:2x1x1", "rsd-s:2x3")
DRAFT = "draft"


def _presets() -> list[str]:
    return list(PRESETS)


def _check_methods(value) -> None:
    from ..decoding.methods import parse_method

    for spec in value:
        parse_method(spec)


def _prefix_mixers() -> list[str]:
    from .. import layers

    return [name for name in layers.names("token") if layers.info(name).cls.prefix_states]


@dataclass
class DecodingBenchConfig:
    targets: tuple[str, ...] = param(DEFAULT_TARGETS, axis=True, choices=_presets)
    temperatures: tuple[float, ...] = param((0.0, 1.0), axis=True, ge=0)
    methods: tuple[str, ...] = param(DEFAULT_METHODS)  # NAME:SHAPE, see recurlab.decoding.methods
    draft_preset: str = param("lm-mingru", choices=_presets)
    draft_layers: int = param(2, ge=1)
    draft_width: int = param(128, ge=8)
    steps: int | None = param(None, ge=1)  # training steps of every model (None: the presets' own)
    prompts: int = param(6, ge=1)  # held-out prompts per target and temperature
    prompt_len: int = param(64, ge=2)  # tokens
    new_tokens: int = param(128, ge=1)
    top_k: int | None = param(None, ge=1)
    seed: int = param(0, ge=0)
    data: dict[str, Any] = param(factory=dict, schema=DataSource)  # default: the default corpus
    # Lexical Unit Decoding: targets LUD-tunes, on the text corpus and on Python code (the stdlib's own files)
    lud_targets: tuple[str, ...] = param(("lm-attention", "lm-gla"), choices=_presets)
    lud_data: tuple[str, ...] = param(("text", "code"), choices=("text", "code"))
    lud_alpha: float = param(0.9, gt=0, lt=1)  # marking: a token is in a unit when the base gives it p > alpha
    lud_steps: int = param(300, ge=1)  # fine-tuning steps (batch 16 x 64 tokens)
    lud_tokens: int = param(200_000, ge=1000)  # training tokens marked and fine-tuned on
    lud_betas: tuple[float, ...] = param((0.95, 0.9, 0.7), gt=0)
    lud_max_parallel: int = param(4, ge=1)
    lud_prompts: int = param(8, ge=1)
    lud_prompt_len: int = param(24, ge=2)
    lud_new_tokens: int = param(32, ge=1)  # prompt + output stay inside the fine-tune's 64-token windows
    code_bytes: int = param(2_000_000, ge=10_000)  # Python source for the code base models and LUD
    code_steps: int | None = param(None, ge=1)  # training steps of the code base models (None: as steps)
    # rolling a recurrent target back, per mixer: prefix states kept by the verification call vs a re-run
    rollback_mixers: tuple[str, ...] = param(("mingru", "minlstm", "gla", "liger_gla"), choices=_prefix_mixers)

    def __post_init__(self):
        check_fields(self)
        _check_methods(self.methods)

    @classmethod
    def quick(cls, **overrides) -> "DecodingBenchConfig":
        """Two targets, a few methods, 30 training steps: minutes, for the table's shape rather than its numbers."""
        return cls(**{"targets": ("lm-attention", "lm-gla"), "methods": ("chain:2", "rsd-c:2x2", "rsd-s:2x2"),
                      "steps": 30, "prompts": 2, "new_tokens": 24, "lud_steps": 30, "lud_tokens": 20_000,
                      "lud_prompts": 2, "code_bytes": 300_000, **overrides})

    def setup(self, name: str) -> LMSetup:
        """The training setup of a target preset, or of the draft (``DRAFT``)."""
        setup = LMSetup.preset(self.draft_preset if name == DRAFT else name)
        if name == DRAFT:
            setup.model.update(n_layers=self.draft_layers, d_model=self.draft_width)
        if self.steps is not None:
            setup.train["steps"] = self.steps
        return dataclasses.replace(setup, data=dict(self.data))


LUD_FIELDS = ("lud_targets", "lud_data", "lud_alpha", "lud_steps", "lud_tokens", "lud_betas", "lud_max_parallel",
              "lud_prompts", "lud_prompt_len", "lud_new_tokens", "code_bytes", "code_steps")


def jobs(cfg: DecodingBenchConfig) -> list[dict]:
    """Train each model (one job each), then one decoding job per (target, temperature), which names the
    training jobs it uses: a retrained model is measured again. Then LUD: a base model per (target, data)
    (the text one is the target's training), LUD-tuned and measured in one job each."""
    trainings = {name: {"train": name, "setup": dataclasses.asdict(cfg.setup(name))}
                 for name in (*cfg.targets, *cfg.lud_targets, DRAFT)}
    own = ("steps", "data", "draft_preset", "draft_layers", "draft_width", "rollback_mixers", *LUD_FIELDS)
    shared = {k: v for k, v in settings(cfg).items() if k not in own}
    decoding = [{"decode": target, "temperature": t, "target": trainings[target], "draft": trainings[DRAFT],
                 "settings": shared} for t in cfg.temperatures for target in cfg.targets]
    code_bases = {}
    if "code" in cfg.lud_data:
        for target in cfg.lud_targets:
            setup = dataclasses.asdict(cfg.setup(target))
            setup["data"] = {}  # measure() points it at the code corpus it writes (CODE_FILE)
            if cfg.code_steps is not None:
                setup["train"]["steps"] = cfg.code_steps
            code_bases[target] = {"train": f"{target}-code", "code_bytes": cfg.code_bytes, "setup": setup}
    lud_settings = {k: getattr(cfg, k) for k in LUD_FIELDS if k not in ("lud_targets", "lud_data")}
    lud = [{"lud": target, "data": data, "base": trainings[target] if data == "text" else code_bases[target],
            "settings": {**lud_settings, "seed": cfg.seed}} for data in cfg.lud_data for target in cfg.lud_targets]
    rollback = [{"rollback": list(cfg.rollback_mixers), "model": PRESETS[cfg.targets[0]]["model"], "drafted": 4,
                 "repeats": 15, "seed": cfg.seed}] if cfg.rollback_mixers else []
    return list(trainings.values()) + decoding + list(code_bases.values()) + lud + rollback


CODE_FILE = "data/python-stdlib-train.txt"  # under OUT: the code base models' training text


def measure(job: dict, ctx: Context) -> dict:
    if "train" in job:
        if "code_bytes" in job:  # a code base model: train on the stdlib's training files only
            job = {**job, "setup": {**job["setup"], "data": {"path": str(write_code_corpus(ctx.out_dir, job["code_bytes"]))}}}
        return train_in_folder(job, ctx.out_dir / "models" / job["train"], job["train"], ctx.progress)
    if "lud" in job:
        return measure_lud(job, ctx.out_dir, ctx.progress)
    if "rollback" in job:
        return measure_prefix_states(job)
    return measure_decoding(job, ctx.out_dir / "models", ctx.progress)


def write_code_corpus(out_dir: Path, code_bytes: int) -> Path:
    """The training split (by file) of the standard library's Python source, written once under out_dir."""
    from ..files import write_text
    from ..tasks.code import stdlib_code

    path = out_dir / CODE_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, stdlib_code(code_bytes)[0])
    return path


def lud_texts(job: dict) -> tuple[str, str]:
    """(training text, held-out text) of an LUD job: the corpus split of the target's setup, or the stdlib
    split by file (held-out files the code base model never saw)."""
    from ..tasks.code import stdlib_code
    from ..tasks.text import split_text

    if job["data"] == "code":
        return stdlib_code(job["settings"]["code_bytes"])
    setup = LMSetup(**job["base"]["setup"])
    return split_text(setup.load_text(), setup.val_fraction)


def measure_lud(job: dict, out_dir: Path, progress: bool = True) -> dict:
    """LUD-tune the base model, then decode held-out prompts greedily with the base model and with LUD at
    each beta, interleaved prompt by prompt; speed-up, tokens per pass and quality against base greedy."""
    from ..decoding.lud import continuation_bits_per_byte, lud_generate, train_lud
    from ..models import CausalLM
    from ..models.pretrained import load_tokenizer

    s = job["settings"]
    base_dir = out_dir / "models" / job["base"]["train"] / "model"
    base, tokenizer = CausalLM.from_pretrained(base_dir).eval(), load_tokenizer(base_dir)
    train_text, held_out = lud_texts(job)
    train_ids = tokenizer.encode(train_text)[: s["lud_tokens"]]
    run = out_dir / "models" / f"{job['lud']}-lud-{job['data']}"
    model, report = train_lud(base, train_ids, run, steps=s["lud_steps"], alpha=s["lud_alpha"],
                              max_unit=s["lud_max_parallel"], seed=s["seed"], progress=progress,
                              resume=(run / "checkpoint.pt").exists())
    model.save_pretrained(run / "model", tokenizer)  # with the tokenizer: recurlab generate --method lud
    ids = tokenizer.encode(held_out)
    n, length = s["lud_prompts"], s["lud_prompt_len"]
    prompts = [ids[i:i + length].unsqueeze(0) for i in
               (round(j * (len(ids) - length - s["lud_new_tokens"]) / n) for j in range(n))]
    new = s["lud_new_tokens"]
    names = ["greedy"] + [f"beta={b:g}" for b in s["lud_betas"]]

    def decode(name, prompt, tokens):
        start = time.perf_counter()
        if name == "greedy":
            out, stats = base.generate(prompt, tokens, temperature=0), None
        else:
            out, stats = lud_generate(model, prompt, tokens, s["lud_max_parallel"], float(name[5:]))
        return out[:, prompt.shape[1]:], stats, time.perf_counter() - start

    for name in names:
        decode(name, prompts[0], 4)  # warm-up
    records: dict[str, list[dict]] = {name: [] for name in names}
    for i, prompt in enumerate(prompts):
        for name in names[i % len(names):] + names[:i % len(names)]:
            out, stats, seconds = decode(name, prompt, new)
            rec = {"seconds": seconds, "ids": out[0].tolist(),
                   "bits": continuation_bits_per_byte(base, prompt, out)}
            if stats is not None:
                rec.update(passes=stats.target_calls, reruns=stats.target_reruns, rewinds=stats.target_rewinds)
            records[name].append(rec)
    greedy = records["greedy"]
    rows = []
    for name in names[1:]:
        recs = records[name]
        prefix = [next((k for k, (a, b) in enumerate(zip(r["ids"], g["ids"])) if a != b), new) for r, g in
                  zip(recs, greedy)]
        rows.append({"target": job["lud"], "data": job["data"], "beta": float(name[5:]),
                     "tokens_per_pass": new * len(recs) / sum(r["passes"] for r in recs),
                     "calls_per_token": sum(r["passes"] + r["reruns"] for r in recs) / (new * len(recs)),
                     "tokens_per_s": new * len(recs) / sum(r["seconds"] for r in recs),
                     "speedup": statistics.median(g["seconds"] / r["seconds"] for g, r in zip(greedy, recs)),
                     "exact_match": statistics.fmean(float(r["ids"] == g["ids"]) for r, g in zip(recs, greedy)),
                     "prefix_match": statistics.fmean(k / new for k in prefix),
                     "bits_per_byte": statistics.fmean(r["bits"] for r in recs),
                     "greedy_bits_per_byte": statistics.fmean(g["bits"] for g in greedy)})
    return {"rows": rows, "marking": report["marking"], "train": {k: report["train"].get(k) for k in
                                                                   ("step", "seconds", "eval_loss")}}


def _prompts(setup: LMSetup, tokenizer, n: int, length: int) -> list[torch.Tensor]:
    """n prompts of ``length`` tokens, evenly spaced through the validation text."""
    from ..tasks.text import split_text

    _, val_text = split_text(setup.load_text(), setup.val_fraction)
    ids = tokenizer.encode(val_text)
    if len(ids) < length + 1:
        raise ValueError(f"the validation text has {len(ids)} tokens, fewer than prompt_len={length}")
    starts = [round(i * (len(ids) - length) / max(n, 1)) for i in range(n)]
    return [ids[s:s + length].unsqueeze(0) for s in starts]


def bits_per_token(model, ids: torch.Tensor, prompt_len: int) -> float:
    """Mean bits per token of ids[:, prompt_len:] under ``model`` (teacher-forced; bytes tokenizer: per byte)."""
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    nll = torch.nn.functional.cross_entropy(logits[0, prompt_len - 1:].double(), ids[0, prompt_len:], reduction="mean")
    return float(nll) / math.log(2)


def measure_rollback(model, prompt: torch.Tensor, drafted: int = 4, repeats: int = 7) -> dict:
    """The three ways to the state after m of ``drafted`` verified tokens (m = 1 .. drafted - 1), in ms
    (median over ``repeats`` rounds, mean over m): ``rewind`` (drop the rejected tokens from the end
    state: KV caches only, else None), ``rerun`` (the m tokens in one parallel call from the kept
    state, what verify does otherwise) and ``step_rerun`` (the m tokens one ``step`` at a time)."""
    from ..decoding import verify
    from ..decoding.rewind import can_keep_prefix_states, rewind

    with torch.no_grad():
        _, state = model(prompt[:, :-1])
        tokens = prompt[:, -drafted:].flip(1)  # any tokens: the cost does not depend on them
        end = verify(model, state, tokens).end_state

        def timed(fn) -> float:
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - start)
            return 1e3 * statistics.median(runs)

        def step_rerun(m):
            s = state
            for i in range(m):
                _, s = model.step(tokens[:, i], s)

        can_rewind = rewind(end, 1) is not None
        ms = range(1, drafted)
        result = {"rerun": statistics.fmean(timed(lambda m=m: model(tokens[:, :m], state)) for m in ms),
                  "step_rerun": statistics.fmean(timed(lambda m=m: step_rerun(m)) for m in ms),
                  "rewind": statistics.fmean(timed(lambda m=m: rewind(end, drafted - m)) for m in ms) if can_rewind
                  else None}
    return {"drafted": drafted, **{f"{k}_ms": v for k, v in result.items()}, "prefix": can_keep_prefix_states(model)}


def measure_prefix_states(job: dict) -> dict:
    """Per mixer of ``job["rollback"]``: a verification call of ``drafted`` tokens followed by the state after m
    of them (m = 1 .. drafted - 1), with the call keeping every prefix's state (``prefix``) or without it and a
    parallel re-run of the m tokens (``rerun``), and the verification call alone (``verify``); ms per
    verification (mean over m), median of ``repeats`` interleaved rounds. Random weights of the target preset's
    shape (``job["model"]`` with the mixer swapped): the cost does not depend on them."""
    from ..decoding import verify
    from ..models import CausalLM, ModelConfig
    from .timing import measure_interleaved

    rows, drafted = [], job["drafted"]
    for mixer in job["rollback"]:
        torch.manual_seed(job["seed"])
        model = CausalLM(ModelConfig.from_dict({**job["model"], "mixer": mixer})).eval()
        g = torch.Generator().manual_seed(job["seed"])
        prompt, tokens = (torch.randint(0, model.config.vocab_size, (1, n), generator=g) for n in (64, drafted))
        with torch.no_grad():
            state = model(prompt)[1]

        @torch.no_grad()
        def rounds(prefix: bool | None) -> None:
            for m in range(1, drafted):
                v = verify(model, state, tokens, prefix_states=bool(prefix))
                if prefix is not None:
                    v.state_after(m)

        t = measure_interleaved({"prefix": lambda: rounds(True), "rerun": lambda: rounds(False),
                                 "verify": lambda: rounds(None)}, repeats=job["repeats"], budget_s=math.inf,
                                device=torch.device("cpu"))
        ms = {k: v.ms / (drafted - 1) for k, v in t.items()}
        rows.append({"mixer": mixer, "prefix_ms": ms["prefix"], "rerun_ms": ms["rerun"], "verify_ms": ms["verify"],
                     "used": "prefix states" if ms["prefix"] <= ms["rerun"] else "re-run"})
    return {"rows": rows, "threads": torch.get_num_threads()}


def measure_decoding(job: dict, models: Path, progress: bool = True) -> dict:
    """Plain decoding and every method on the same prompts, interleaved; per-method rows."""
    from tqdm.auto import tqdm

    from ..decoding.methods import generate_with, parse_method, tree_size
    from ..models import CausalLM
    from ..models.pretrained import load_tokenizer

    s, temperature = job["settings"], job["temperature"]
    target_dir, draft_dir = models / job["decode"] / "model", models / DRAFT / "model"
    target, draft = CausalLM.from_pretrained(target_dir).eval(), CausalLM.from_pretrained(draft_dir).eval()
    tokenizer = load_tokenizer(target_dir)
    prompts = _prompts(LMSetup(**job["target"]["setup"]), tokenizer, s["prompts"], s["prompt_len"])
    methods = [parse_method(m) for m in s["methods"]]
    n = s["new_tokens"]

    def run(name, prompt, seed, new_tokens):
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        if name == "plain":
            ids, stats = target.generate(prompt, new_tokens, temperature, s["top_k"], seed=seed), None
        else:
            ids, stats = generate_with(name, target, draft, prompt, new_tokens, temperature, s["top_k"], gen)
        return ids, stats, time.perf_counter() - start

    names = ["plain"] + [m.spec for m in methods]
    for name in names:  # warm-up: first calls pay for allocation and lazy initialisation
        run(name, prompts[0], 0, 4)
    records: dict[str, list[dict]] = {name: [] for name in names}
    bar = tqdm(total=len(prompts) * len(names), desc=f"{job['decode']} T={temperature:g}", unit="decode",
               disable=not progress, leave=False, dynamic_ncols=True)
    for i, prompt in enumerate(prompts):
        order = names[i % len(names):] + names[:i % len(names)]  # rotate who goes first
        for name in order:
            seed = s["seed"] * 1000 + i
            ids, stats, seconds = run(name, prompt, seed, n)
            rec = {"seconds": seconds, "bits": bits_per_token(target, ids, prompt.shape[1]),
                   "ids": ids[0, prompt.shape[1]:].tolist()}
            if stats is not None:
                rec.update(calls=stats.target_calls, accepted=sum(stats.accepted), rounds=len(stats.accepted),
                           rerun_tokens=stats.target_rerun_tokens, reruns=stats.target_reruns,
                           rewinds=stats.target_rewinds, prefix_states=stats.target_prefix_states,
                           draft_calls=stats.draft_calls)
            records[name].append(rec)
            bar.update(1)
    bar.close()
    plain = records["plain"]
    rows = []
    for name in names:
        recs = records[name]
        row = {"target": job["decode"], "temperature": temperature, "method": name,
               "tokens_per_s": n * len(recs) / sum(r["seconds"] for r in recs),
               "speedup": statistics.median(p["seconds"] / r["seconds"] for p, r in zip(plain, recs)),
               "bits_per_token": statistics.fmean(r["bits"] for r in recs)}
        if name == "plain":
            row.update(depth=0, nodes=0, leaves=0, positions=1, mean_accepted=0.0, calls_per_token=1.0)
        else:
            rounds = sum(r["rounds"] for r in recs)
            calls = sum(r["calls"] + r["reruns"] for r in recs)  # a re-run of a partly accepted draft is a call too
            method = parse_method(name)
            row.update(depth=method.depth, **tree_size(method), mean_accepted=sum(r["accepted"] for r in recs) / rounds,
                       calls_per_token=calls / (n * len(recs)), rerun_tokens=sum(r["rerun_tokens"] for r in recs),
                       rewinds=sum(r["rewinds"] for r in recs),
                       prefix_states=sum(r["prefix_states"] for r in recs),
                       draft_calls_per_token=sum(r["draft_calls"] for r in recs) / (n * len(recs)))
        if temperature == 0:
            row["equals_greedy"] = all(r["ids"] == p["ids"] for p, r in zip(plain, recs))
        rows.append(row)
    return {"rows": rows, "rollback": measure_rollback(target, prompts[0]), "threads": torch.get_num_threads(),
            "params": {"target": target.num_parameters()["total"], "draft": draft.num_parameters()["total"]}}


def report(cfg: DecodingBenchConfig, finished: Finished) -> Report:
    models = {job["train"]: {k: result[k] for k in ("params", "val_bits_per_byte", "steps", "train_seconds")}
              for job, result in finished if "train" in job}
    rows = [row for job, result in finished if "decode" in job for row in result["rows"]]
    lud = [row for job, result in finished if "lud" in job for row in result["rows"]]
    threads = sorted({result["threads"] for job, result in finished if "decode" in job})
    rollback = {job["decode"]: result["rollback"] for job, result in finished if "decode" in job}
    prefix = [row for job, result in finished if "rollback" in job for row in result["rows"]]
    data = {"models": models, "rows": rows, "rollback": rollback, "lud": lud, "threads": threads,
            "prefix_states": prefix}
    return Report(render_markdown(cfg, data), data, lambda path: plot_speedup(data, path))


def summary(job: dict, result: dict) -> str:
    if "train" in job:
        return f"{job['train']}: {result['val_bits_per_byte']:.3f} bits per byte after {result['steps']} steps"
    if "rollback" in job:
        return "; ".join(f"{r['mixer']}: prefix {r['prefix_ms']:.2f} ms, re-run {r['rerun_ms']:.2f} ms" for r in result["rows"])
    if "lud" in job:
        return "; ".join(f"LUD {r['target']} {r['data']} beta {r['beta']:g}: {r['tokens_per_pass']:.2f} tokens/pass, "
                         f"{r['speedup']:.2f}x, exact {r['exact_match']:.2f}" for r in result["rows"])
    best = max(result["rows"], key=lambda r: r["speedup"])
    return (f"{job['decode']} T={job['temperature']:g}: best {best['method']} at {best['speedup']:.2f}x plain "
            f"({best['mean_accepted']:.2f} drafts accepted per call)")


def _label(job: dict) -> str:
    if "rollback" in job:
        return "prefix states vs re-run"
    if "lud" in job:
        return f"LUD {job['lud']} on {job['data']}"
    return f"train {job['train']}" if "train" in job else f"decode {job['decode']} T={job['temperature']:g}"


BENCHMARK = Benchmark("decoding", DecodingBenchConfig, jobs, measure, report, plot_file="decoding.png",
                      label=_label, summary=summary)


def render_markdown(cfg: DecodingBenchConfig, data: dict) -> str:
    lines = ["# Speculative decoding against plain decoding\n",
             f"Batch 1, float32 on CPU ({', '.join(map(str, data['threads'])) or '?'} threads), {cfg.prompts} held-out "
             f"prompts of {cfg.prompt_len} tokens, {cfg.new_tokens} new tokens each, top-k {cfg.top_k}; every method "
             "and plain decoding run interleaved prompt by prompt in one process. nodes: draft tokens per round "
             "(the draft budget); positions: token positions one verification call runs (leaves x (depth + 1)); "
             "accepted/call: mean accepted draft tokens per verification call; calls/token: target calls "
             "(verifications and re-runs) per generated token; speed-up: median over prompts of plain time / method "
             "time; bits/token: of the generated text under the target (bytes tokenizer: bits per byte).\n"]
    if data["models"]:
        lines.append(markdown_table(["model", "params", "val bits/byte", "steps", "train minutes"],
                                    [[name, f"{m['params']:,}", f"{m['val_bits_per_byte']:.3f}", str(m["steps"]),
                                      f"{m['train_seconds'] / 60:.1f}"] for name, m in data["models"].items()]) + "\n")
    if data["rollback"]:
        lines.append("## Rolling the target's state back after a partial acceptance\n")
        lines.append("The state after m of 4 verified tokens (mean over m = 1..3 of the median of 7 rounds): dropping "
                     "the rejected tokens from the KV caches (attention only), re-running the m tokens in one "
                     "parallel call (what verification does for states that can neither rewind nor keep prefix "
                     "states), or one `step` at a time.\n")
        lines.append(markdown_table(["target", "rewind ms", "parallel re-run ms", "step re-run ms", "used"], [
            [name, "-" if r["rewind_ms"] is None else f"{r['rewind_ms']:.3f}", f"{r['rerun_ms']:.2f}",
             f"{r['step_rerun_ms']:.2f}", "rewind" if r["rewind_ms"] is not None else
             "prefix states (below)" if r.get("prefix") else "parallel re-run"]
            for name, r in data["rollback"].items()]) + "\n")
    if data.get("prefix_states"):
        lines.append("## Prefix states against a re-run, per recurrent mixer\n")
        lines.append("A verification call of 4 tokens, then the state after m of them (m = 1..3): the call keeps "
                     "every prefix's state (diagonal scans: the scan's own h_t; gated linear attention: the states "
                     "from the parallel form, `ops.gla_prefix_states`), or it does not and the m tokens are re-run "
                     "in one parallel call. ms per verification, the call included (median of 15 interleaved "
                     "rounds); random weights of the first target's shape. faster: the cheaper way; verification keeps prefix "
                     "states for every mixer that can (`recurlab/decoding/verify.py`).\n")
        lines.append(markdown_table(["mixer", "verify alone ms", "verify + prefix state ms", "verify + re-run ms",
                                     "faster"], [
            [r["mixer"], f"{r['verify_ms']:.2f}", f"{r['prefix_ms']:.2f}", f"{r['rerun_ms']:.2f}", r["used"]]
            for r in data["prefix_states"]]) + "\n")
    for temperature in cfg.temperatures:
        sub = [r for r in data["rows"] if r["temperature"] == temperature]
        if not sub:
            continue
        greedy = temperature == 0
        lines.append(f"## Temperature {temperature:g}\n")
        header = ["target", "method", "depth", "nodes", "positions", "accepted/call", "calls/token", "tokens/s",
                  "speed-up", "bits/token"] + (["= greedy"] if greedy else [])
        body = [[r["target"], r["method"], str(r["depth"]), str(r["nodes"]), str(r["positions"]),
                 f"{r['mean_accepted']:.2f}", f"{r['calls_per_token']:.2f}", f"{r['tokens_per_s']:,.0f}",
                 f"{r['speedup']:.2f}x", f"{r['bits_per_token']:.3f}"]
                + ([("yes" if r["equals_greedy"] else "NO")] if greedy else []) for r in sub]
        lines.append(markdown_table(header, body) + "\n")
    if data.get("lud"):
        lines.append("## Lexical Unit Decoding\n")
        lines.append(f"Each target LUD-tuned ({cfg.lud_steps} steps on {cfg.lud_tokens:,} tokens, up to "
                     f"{cfg.lud_max_parallel} tokens per pass), then {cfg.lud_prompts} held-out prompts of "
                     f"{cfg.lud_prompt_len} tokens continued by {cfg.lud_new_tokens} tokens, greedy, interleaved with "
                     "greedy decoding of the base model. Code: the Python standard library, held-out files. "
                     "exact / prefix: continuations identical to base greedy / mean share before the first "
                     "difference. The paper (7B-13B models): 33% faster on text with no quality loss, 30% faster "
                     "on code with about 3% loss.\n")
        lines.append(markdown_table(
            ["target", "data", "beta", "tokens/pass", "calls/token", "tokens/s", "speed-up", "exact", "prefix",
             "bits/byte (LUD)", "bits/byte (greedy)"],
            [[r["target"], r["data"], f"{r['beta']:g}", f"{r['tokens_per_pass']:.2f}", f"{r['calls_per_token']:.2f}",
              f"{r['tokens_per_s']:,.0f}", f"{r['speedup']:.2f}x", f"{r['exact_match']:.2f}",
              f"{r['prefix_match']:.2f}", f"{r['bits_per_byte']:.3f}", f"{r['greedy_bits_per_byte']:.3f}"]
             for r in data["lud"]]) + "\n")
    return "\n".join(lines)


def plot_speedup(data: dict, path: Path) -> None:
    """Speed-up over plain decoding against the draft budget (nodes per round), a panel per (temperature, target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in data["rows"] if r["method"] != "plain"]
    temperatures = sorted({r["temperature"] for r in rows})
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = plt.subplots(max(len(temperatures), 1), max(len(targets), 1), squeeze=False,
                             figsize=(4 * max(len(targets), 1), 3.4 * max(len(temperatures), 1)), sharey=True)
    for i, t in enumerate(temperatures):
        for j, target in enumerate(targets):
            ax = axes[i][j]
            for family, marker in (("chain", "o"), ("rsd-c", "s"), ("rsd-s", "^")):
                pts = sorted((r["nodes"], r["speedup"]) for r in rows
                             if r["temperature"] == t and r["target"] == target and r["method"].startswith(family + ":"))
                if pts:
                    ax.plot(*zip(*pts), marker=marker, label=family)
            ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
            ax.set_title(f"{target}, T={t:g}", fontsize=9)
            ax.set_xlabel("draft tokens per round (nodes)")
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel("speed-up over plain decoding")
    if rows:
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
