"""The measurements of ``recurlab bench recursion`` (:mod:`recurlab.bench.recursion` declares the benchmark).

:data:`DEPTHS` is the one place that knows how each variant is built from recursion's depth modules;
a ``measure_<part>`` function per kind of job, each reading its settings from the job alone (so the
run log's key covers them), and the helpers they share: the corpus, training, bits per byte.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from .. import recursion as R
from ..models import CausalLM, ModelConfig, Stack
from ..files import atomic_path
from ..train import Trainer, TrainConfig
from ..train.loss import masked_cross_entropy
from .harness import Context, job_key
from .timing import measure_interleaved

SLICED_MIXERS = ("attention", "swa")  # recursive-sliced needs SReT's group attention


@dataclass
class _Shape:
    """What :data:`DEPTHS` builds from: the vanilla depth N, the shared blocks K, the LoRA rank, the sequence."""

    depth: int
    shared: int
    lora_rank: int
    seq_len: int
    seed: int

    @property
    def loops(self) -> int:
        return self.depth // self.shared

    def sliced_groups(self) -> dict:
        sizes, offsets = R.sliced_group_schedule(max(1, self.seq_len // 2 ** (self.loops - 1)), self.loops, kind="grow")
        return {"group_sizes": sizes, "group_offsets": offsets}


# variant -> the ModelConfig fields of its depth module (n_layers: distinct blocks); the one place that knows
# how each variant is built
DEPTHS = {
    "stack-N": lambda p: dict(n_layers=p.depth),
    "stack-K": lambda p: dict(n_layers=p.shared),
    "recursive": lambda p: dict(n_layers=p.shared, depth="recursive", depth_kwargs={"n_loops": p.loops, "loop_scales": True}),
    "recursive-sliced": lambda p: dict(n_layers=p.shared, depth="recursive", depth_kwargs={
        "n_loops": p.loops, "loop_scales": True, **p.sliced_groups()}),
    "relaxed": lambda p: dict(n_layers=p.shared, depth="relaxed", depth_kwargs={"n_loops": p.loops, "rank": p.lora_rank}),
    # middle-cycle sharing: unique first and last block, N_r recursions so that taking all costs N applications
    "mor-expert": lambda p: dict(n_layers=p.shared + 2, depth="mor", depth_kwargs={
        "n_recursions": (p.depth - 2) // p.shared, "router": "expert", "first": 1, "last": 1}),
    "mor-token": lambda p: dict(n_layers=p.shared + 2, depth="mor", depth_kwargs={
        "n_recursions": (p.depth - 2) // p.shared, "router": "token", "first": 1, "last": 1}),
    # prelude 1, core 1, coda 1, mean iterations N - 2 (mean cost N); test-time latents seeded by position
    "recurrent-depth": lambda p: dict(n_layers=3, depth="recurrent_depth", depth_kwargs={
        "prelude": 1, "coda": 1, "mean_iterations": max(1, p.depth - 2), "init_seed": p.seed}),
    "rmoe": lambda p: dict(n_layers=p.depth, channel_mixer="moe", depth="rmoe", depth_kwargs={"router": "recurrent"}),
    "rmoe-plain": lambda p: dict(n_layers=p.depth, channel_mixer="moe", depth="rmoe", depth_kwargs={"router": "plain"}),
}
VARIANTS = tuple(DEPTHS)


def applicable_variants(variants, mixer: str) -> list[str]:
    """The variants that can be built around ``mixer`` (recursive-sliced needs attention)."""
    return [v for v in variants if v != "recursive-sliced" or mixer in SLICED_MIXERS]


def build_variant(name: str, mixer: str, shape, d_model: int, vocab_size: int = 256, seq_len: int = 128,
                  seed: int = 0) -> CausalLM:
    """The language model of variant ``name`` around ``mixer`` blocks; ``shape`` has depth, shared, lora_rank.
    recursive-sliced replaces attention by its sliced form (sliced_attention), whose groups change per loop."""
    if name not in DEPTHS:
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}")
    if name == "recursive-sliced" and mixer not in SLICED_MIXERS:
        raise ValueError(f"recursive-sliced needs sliced group attention, which {mixer!r} has not; "
                         f"use one of {SLICED_MIXERS}")
    fields = DEPTHS[name](_Shape(shape.depth, shape.shared, shape.lora_rank, seq_len, seed))
    block_mixer = "sliced_attention" if name == "recursive-sliced" else mixer
    mixer_kwargs = {"sliced_attention": {"window": 128}} if name == "recursive-sliced" and mixer == "swa" else {}
    return CausalLM(ModelConfig(vocab_size=vocab_size, d_model=d_model, mixer=block_mixer, mixer_kwargs=mixer_kwargs,
                                **fields))


def relaxed_from_stack(stack: CausalLM, loops: int, rank: int, scheme: str) -> CausalLM:
    """Relaxed recursion initialised from a trained stack-N language model (rank 0: strict tying, no LoRA)."""
    return R.relax(stack, loops, max(rank, 1), scheme, svd_init=rank > 0, loop_norms=True)


def compute_per_token(model) -> float:
    """Block applications per token of ``model``'s last forward (MoR: routed; RecurrentDepth: its iterations)."""
    depth = model.depth
    for kind, count in ((R.MixtureOfRecursions, lambda: depth.applications_per_token()),
                        (R.RecurrentDepth, lambda: depth.blocks_per_token()),
                        (R.Recursive, lambda: depth.n_applications),  # Relaxed too
                        (R.RMoEStack, lambda: depth.n_layers), (Stack, lambda: len(depth.blocks))):
        if isinstance(depth, kind):
            return float(count())
    raise ValueError(f"unknown depth module {type(depth).__name__}")


def settings_of(section: dict) -> SimpleNamespace:
    """A job's settings section with attribute access (``lm.steps``)."""
    return SimpleNamespace(**section)


def lm_data(lm, ctx: Context | None = None):
    """(train task, validation task of lm.eval_sequences sequences) of bytes of the corpus."""
    from ..tasks.text import ByteTokenizer, default_corpus, language_modelling_task, load_text, split_text

    def build():
        train_text, val_text = split_text(load_text(lm.corpus) if lm.corpus else default_corpus(), 0.05)
        tok = ByteTokenizer()
        val = language_modelling_task(tok.encode(val_text), lm.seq_len, 256)
        return language_modelling_task(tok.encode(train_text), lm.seq_len, 256), val.subset(slice(0, lm.eval_sequences))

    return ctx.cached(("lm data", lm.corpus, lm.seq_len, lm.eval_sequences), build) if ctx else build()


def train_model(model, train, val, steps: int, batch_size: int, lr: float, seed: int, progress: bool = False) -> dict:
    """recurlab's Trainer (AdamW, warmup + cosine), evaluating once at the end; returns its summary."""
    tc = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(50, steps // 10), eval_every=steps,
                     eval_batch_size=64, seed=seed, precision="fp32", progress=progress)
    return Trainer(model, train, val, tc).fit()


@torch.no_grad()
def eval_bits(model, task, batch_size: int = 32) -> float:
    """Mean loss per labelled token in bits (for bytes: bits per byte), in eval mode."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for lo in range(0, len(task), batch_size):
        labels = task.labels[lo:lo + batch_size]
        total += masked_cross_entropy(model(task.inputs[lo:lo + batch_size])[0], labels, "sum").item()
        count += int((labels != -100).sum())
    model.train(was)
    return total / max(count, 1) / math.log(2)


def _model_path(ctx: Context, job: dict):
    return ctx.out_dir / "models" / f"lm-{job['mixer']}-{job['variant']}-{job_key(job)}.pt"


def _trained(job: dict, ctx: Context):
    """The model trained by lm job ``job`` (built, then its weights loaded)."""
    path = _model_path(ctx, job)
    if ctx.log.get(job) is None or not path.exists():
        raise ValueError(f"this part needs the trained {job['variant']} ({job['mixer']}) of the lm part, with the same "
                         "settings: include lm in parts (it runs first)")
    model = _build(job)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model


def _build(job: dict, vocab_size: int = 256, d_model: int | None = None, seq_len: int | None = None):
    torch.manual_seed(job["seed"])
    return build_variant(job["variant"], job["mixer"], settings_of(job["shape"]), d_model or job["lm"]["d_model"],
                         vocab_size, seq_len or job["lm"]["seq_len"], job["seed"])


# ---------------------------------------------------------------------------------------------- measurements


def measure_lm(job: dict, ctx: Context) -> dict:
    lm = settings_of(job["lm"])
    train, val = lm_data(lm, ctx)
    model = _build(job)
    summary = train_model(model, train, val, lm.steps, lm.batch_size, lm.lr, job["seed"], ctx.progress)
    with atomic_path(_model_path(ctx, job)) as tmp:
        torch.save(model.state_dict(), tmp)
    bits = eval_bits(model, val)
    return {"mixer": job["mixer"], "variant": job["variant"], "params": model.num_parameters()["total"],
            "bits_per_byte": bits, "block_applications": compute_per_token(model),  # after eval_bits: routed, eval
            "train_seconds": summary["seconds"], "steps": summary["step"]}


def measure_training_speed(job: dict, ctx: Context) -> dict:
    """Training tokens/s of every variant, freshly built, side by side (interleaved rounds, medians)."""
    lm, speed = settings_of(job["lm"]), settings_of(job["speed"])
    ids = torch.randint(0, 256, (lm.batch_size, lm.seq_len + 1), generator=torch.Generator().manual_seed(job["seed"]))
    steps = {}
    for variant in job["variants"]:
        model = _build({**job, "variant": variant}).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def step(model=model, optimizer=optimizer):
            logits, _ = model(ids[:, :-1])
            loss = masked_cross_entropy(logits, ids[:, 1:])
            loss = loss + model.aux_loss if model.aux_loss is not None else loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[variant] = step
    timings = measure_interleaved(steps, repeats=speed.rounds, budget_s=math.inf, device=torch.device("cpu"))
    return {"tokens_per_s": {v: lm.batch_size * lm.seq_len / t.median_s for v, t in timings.items()}}


def measure_decoding_speed(job: dict, ctx: Context) -> dict:
    """Greedy decoding tokens/s (batch 1) of the trained models side by side; the prefill is not timed."""
    speed, models = settings_of(job["speed"]), {m["variant"]: _trained(m, ctx).eval() for m in job["models"]}
    seed = job["models"][0]["seed"]

    def prefill(model):
        ids = torch.randint(0, 256, (1, speed.decode_prompt), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return model(ids)[1], ids[:, -1]

    @torch.no_grad()
    def decode(prepared, model):
        state, token = prepared
        for _ in range(speed.decode_tokens):
            logits, state = model.step(token, state)
            token = logits.argmax(-1)

    fns = {v: (lambda p, m=m: decode(p, m)) for v, m in models.items()}
    timings = measure_interleaved(fns, repeats=speed.rounds, budget_s=math.inf, device=torch.device("cpu"),
                                  warmup={v: 0 for v in models}, setup={v: (lambda m=m: prefill(m)) for v, m in models.items()})
    return {"tokens_per_s": {v: speed.decode_tokens / t.median_s for v, t in timings.items()}}


def measure_structural(job: dict, ctx: Context) -> dict:
    from ..tasks.structural import SUCCESSOR_VOCAB, exact_match_accuracy, successor_splits, traversal_splits

    s, seed = settings_of(job["structural"]), job["seed"]
    splits = ctx.cached(("structural", job["task"], job_key(job["structural"]), seed), lambda: (
        successor_splits(s.train_examples, s.test_examples, s.max_bits, s.long_bits, seed=seed)
        if job["task"] == "successor" else
        traversal_splits("pre", s.train_examples, s.test_examples, train_depth=4, test_depth=5, seed=seed)))
    vocab = SUCCESSOR_VOCAB if job["task"] == "successor" else int(splits["train"].vocab_size)
    model = _build(job, vocab, s.d_model, splits["train"].seq_len)
    summary = train_model(model, splits["train"], splits["test_iid"], s.steps, s.batch_size, s.lr, seed, ctx.progress)
    accuracy = exact_match_accuracy(model, {k: v for k, v in splits.items() if k != "train"})
    return {"task": job["task"], "mixer": job["mixer"], "variant": job["variant"],
            "params": model.num_parameters()["total"], **accuracy, "train_seconds": summary["seconds"]}


def measure_iterations(job: dict, ctx: Context) -> dict:
    """RecurrentDepth: validation bits per byte vs the number of test-time iterations."""
    model, (_, val) = _trained(job["model"], ctx), lm_data(settings_of(job["model"]["lm"]), ctx)
    bits = {}
    for r in job["iterations"]:
        model.depth.num_iterations = r
        bits[str(r)] = eval_bits(model, val)
    return {"mixer": job["model"]["mixer"], "train_mean_iterations": model.depth.mean_iterations, "bits_per_byte": bits}


def measure_sampler(job: dict, ctx: Context) -> dict:
    """The diffusion-forcing parallel sampler against sequential decoding, greedy, same model and prompts."""
    s, seed = settings_of(job["sampler"]), job["model"]["seed"]
    model, (_, val) = _trained(job["model"], ctx).eval(), lm_data(settings_of(job["model"]["lm"]), ctx)
    model.depth.num_iterations = s.iterations
    runs = []
    for i in range(s.prompts):
        prompt = val.inputs[i:i + 1, :s.prompt_len]
        seq, seq_stats = R.sequential_generate(model, prompt, s.new_tokens, num_iterations=s.iterations)
        for threshold in s.thresholds:
            par, par_stats = R.parallel_generate(model, prompt, s.new_tokens, threshold=threshold,
                                                 inner_steps=s.inner_steps, num_iterations=s.iterations, seed=seed)
            new_s, new_p = seq[0, prompt.shape[1]:], par[0, prompt.shape[1]:]
            differ = (new_s != new_p).nonzero()
            runs.append({"prompt": i, "threshold": threshold, "sequential_s": seq_stats.wall_time_s,
                         "parallel_s": par_stats.wall_time_s, "sequential_passes": seq_stats.forward_passes,
                         "parallel_passes": par_stats.forward_passes, "sequential_core_calls": seq_stats.core_calls,
                         "parallel_core_calls": par_stats.core_calls,
                         "sequential_core_iterations": seq_stats.core_iterations,
                         "parallel_core_iterations": par_stats.core_iterations + par_stats.commit_block_applications,
                         "token_agreement": float((new_s == new_p).float().mean()),
                         "identical_prefix": int(differ[0]) if len(differ) else len(new_s)})
    summary = {}
    for threshold in s.thresholds:
        sel = [r for r in runs if r["threshold"] == threshold]
        med = lambda k: statistics.median(r[k] for r in sel)  # noqa: E731
        summary[str(threshold)] = {
            "core_call_speedup": med("sequential_core_calls") / max(med("parallel_core_calls"), 1),
            "wall_speedup": med("sequential_s") / med("parallel_s"),
            "pass_speedup": med("sequential_passes") / max(med("parallel_passes"), 1),
            "token_agreement": statistics.mean(r["token_agreement"] for r in sel),
            "work_ratio": med("parallel_core_iterations") / max(med("sequential_core_iterations"), 1)}
    return {"mixer": job["model"]["mixer"], "iterations": s.iterations, "runs": runs, "summary": summary}


def measure_relaxed(job: dict, ctx: Context) -> dict:
    """Relaxed from the trained stack-N: bits per byte before and after a short uptraining."""
    stack_job, rank = job["model"], job["rank"]
    lm, stack = settings_of(stack_job["lm"]), _trained(stack_job, ctx)
    train, val = lm_data(lm, ctx)
    stack_bits = ctx.cached(("stack bits", job_key(stack_job)), lambda: eval_bits(stack, val))
    torch.manual_seed(stack_job["seed"])
    shape = settings_of(stack_job["shape"])
    model = relaxed_from_stack(stack, shape.depth // shape.shared, rank, job["scheme"])
    before = eval_bits(model, val)
    train_model(model, train, val, job["uptrain_steps"], lm.batch_size, lm.lr / 4, stack_job["seed"], ctx.progress)
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) if rank > 0 else 0
    return {"mixer": stack_job["mixer"], "scheme": job["scheme"], "rank": rank, "stack_bits": stack_bits,
            "bits_before": before, "bits_after": eval_bits(model, val), "lora_params": lora,
            "params": model.num_parameters()["total"] - (0 if rank > 0 else lora)}


def measure_batching(job: dict, ctx: Context) -> dict:
    """Relaxed's early-exit depths on validation text, and depth-wise batching simulated with them."""
    from ..recursion.depthwise_batching import simulate_depthwise_batching

    model, (_, val) = _trained(job["model"], ctx).eval(), lm_data(settings_of(job["model"]["lm"]), ctx)
    loops = job["model"]["shape"]["depth"] // job["model"]["shape"]["shared"]
    with torch.no_grad():
        logits, exits, _ = R.early_exit_forward(model, val.inputs, job["threshold"])
        full_bits = eval_bits(model, val)
        exit_bits = masked_cross_entropy(logits, val.labels).item() / math.log(2)
    sims = {}
    for batch in job["batch_sizes"]:
        c = simulate_depthwise_batching(exits.flatten(), batch, loops)
        sims[str(batch)] = {"speedup": c.speedup, "speedup_over_static_exit": c.speedup_over_static_exit,
                            "tokens_per_call": c.depthwise_tokens_per_call}
    return {"mixer": job["model"]["mixer"], "threshold": job["threshold"], "mean_loops": float(exits.float().mean()),
            "exit_histogram": torch.bincount(exits.flatten(), minlength=loops + 1)[1:].tolist(),
            "bits_full_depth": full_bits, "bits_early_exit": exit_bits, "simulation": sims}


MEASURES = {"lm": measure_lm, "lm-speed": measure_training_speed, "lm-decode": measure_decoding_speed,
            "structural": measure_structural, "iterations": measure_iterations, "sampler": measure_sampler,
            "relaxed": measure_relaxed, "batching": measure_batching}


def measure(job: dict, ctx: Context) -> dict:
    return MEASURES[job["part"]](job, ctx)
