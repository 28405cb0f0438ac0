"""``recurlab bench layers``: every token mixer at one size, side by side.

For each registered token mixer at d_model (default 256), batch B (default 8)
and length T (default 2048) it reports the parameter count, forward+backward
time of the layer (a dense random gradient into its output), and the time of
one decoding ``step`` after a prefill of T tokens (so attention pays for a
T-token KV cache, recurrent mixers for their fixed state). The gmu layer reads
a random memory of width d_model, cross_attention a random T-token KV cache. Mixers are timed round-robin; every mixer is
first checked to give the same output from its step loop as from its parallel
form, and the benchmark refuses to report otherwise. ``profile`` also splits the
forward+backward time of the named mixers into op categories (torch profiler),
to show where a layer spends its time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import layers, perf
from ..configs import check_fields, param
from .harness import Benchmark, Context, Finished, Report
from .report import markdown_table
from .memory import markdown as memory_markdown
from .memory import peak_memory_vs_length
from .timing import measure_interleaved


def _token_mixers() -> list[str]:
    return layers.names("token")


@dataclass
class LayersBenchConfig:
    mixers: tuple[str, ...] = param((), choices=_token_mixers)  # empty: every registered token mixer
    d_model: int = param(256, ge=1)
    batch: int = param(8, ge=1)
    seq_len: int = param(2048, ge=1)
    repeats: int = param(5, ge=1)
    decode_steps: int = param(20, ge=1)
    budget_s: float = param(20.0, gt=0)
    profile: tuple[str, ...] = param(("mingru",), choices=_token_mixers)
    mixer_kwargs: dict[str, dict] = field(default_factory=dict)
    # peak memory of a prefill (batch 1) against T: sliding windows must grow linearly (issue 13)
    memory_mixers: tuple[str, ...] = param(("swa", "liger"), choices=_token_mixers)
    memory_lengths: tuple[int, ...] = param((2048, 8192, 32768), ge=1)

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def quick(cls, **overrides) -> "LayersBenchConfig":
        """T = 512, 2 repeats, 5 decode steps, memory up to T = 8192: a minute or two on 2 cores."""
        return cls(**{"seq_len": 512, "repeats": 2, "decode_steps": 5, "memory_lengths": (1024, 2048, 8192),
                      **overrides})

    def names(self) -> list[str]:
        return list(self.mixers) or layers.names("token")


def _build(name: str, cfg: LayersBenchConfig, dtype=torch.float32):
    kwargs = dict(cfg.mixer_kwargs.get(name, {}))
    if name in ("hyena", "baseconv") and "l_max" not in kwargs and layers.accepts(name, "l_max"):
        kwargs["l_max"] = cfg.seq_len
    torch.manual_seed(0)
    return layers.build(name, cfg.d_model, kind="token", **kwargs).to(dtype)


def _memory(mixer, x):
    """What a mixer that reads another layer's output takes beside x (B, T, d): a random memory read-out (gmu), or
    a random KV cache of the T tokens (cross_attention); nothing for the others."""
    if mixer.reads_memory:
        return {"memory": torch.randn(*x.shape[:-1], mixer.memory_dim, dtype=x.dtype)}
    if mixer.reads_kv:
        from ..ops import KVCache

        B, T = x.shape[:2]
        k, v = (torch.randn(B, T, mixer.n_kv_heads, mixer.head_dim, dtype=x.dtype) for _ in range(2))
        return {"kv": KVCache().append(k, v)}
    return {}


def _at(mem: dict, t: int) -> dict:
    """The side inputs of token t alone (a step): its memory read-out, or the cache up to and including it."""
    if "memory" in mem:
        return {"memory": mem["memory"][:, t]}
    if "kv" in mem:
        return {"kv": mem["kv"].without_last(mem["kv"].length - 1 - t)}
    return {}


def check_step_equals_forward(name: str, cfg: LayersBenchConfig) -> str | None:
    """None if the step loop reproduces the parallel forward in float64, else a message."""
    mixer = _build(name, cfg, torch.float64)
    x = torch.randn(2, 24, cfg.d_model, dtype=torch.float64)
    mem = _memory(mixer, x)
    with torch.no_grad():
        y, _ = mixer(x, **mem)
        state, outs = None, []
        for t in range(24):
            y_t, state = mixer.step(x[:, t], state, **_at(mem, t))
            outs.append(y_t)
    err = (torch.stack(outs, 1) - y).abs().max().item()
    return None if err < 1e-8 else f"{name}: step loop differs from forward by {err:.2e}"


def _profile_categories(fn) -> dict[str, float]:
    """Share of self CPU time in matmuls, recurlab's kernels and everything else."""
    from torch.profiler import profile

    fn()
    with profile() as prof:
        fn()
    shares = {"matmul": 0.0, "recurlab scans": 0.0, "other": 0.0}
    for event in prof.key_averages():
        name, t = event.key, event.self_cpu_time_total
        if name.startswith("recurlab::"):
            shares["recurlab scans"] += t
        elif any(k in name for k in ("mm", "matmul", "linear", "addmm", "gru")):
            shares["matmul"] += t
        else:
            shares["other"] += t
    total = sum(shares.values()) or 1.0
    return {k: v / total for k, v in shares.items()}


def check(cfg: LayersBenchConfig) -> list[str]:
    """Every mixer's step loop against its parallel forward: speeds are reported only if they agree."""
    return [m for m in (check_step_equals_forward(n, cfg) for n in cfg.names()) if m]


def jobs(cfg: LayersBenchConfig) -> list[dict]:
    """One job: the mixers are timed side by side, so they are measured together."""
    return [{**asdict(cfg), "mixers": cfg.names()}]


def measure(job: dict, ctx: Context) -> dict:
    cfg = LayersBenchConfig(**job)
    names = cfg.names()
    ctx.echo(f"correctness: step loop == forward for {', '.join(names)}")
    B, T, d = cfg.batch, cfg.seq_len, cfg.d_model
    train_fns, decode_fns, rows = {}, {}, {}
    for name in names:
        mixer = _build(name, cfg)
        x = torch.randn(B, T, d)
        x_grad = x.clone().requires_grad_(True)
        grad_y = torch.randn(B, T, d)
        mem = _memory(mixer, x)

        def fwd_bwd(mixer=mixer, x_grad=x_grad, grad_y=grad_y, mem=mem):
            mixer.zero_grad(set_to_none=True)
            x_grad.grad = None
            mixer(x_grad, **mem)[0].backward(grad_y)

        with torch.no_grad():
            _, state = mixer(x, **mem)
        x_t = torch.randn(B, d)
        mem_t = _at(mem, T - 1)  # cross_attention: the step reads a T-token cache, as attention's does
        holder = {"state": state}

        def decode(mixer=mixer, holder=holder, x_t=x_t, mem_t=mem_t):
            with torch.no_grad():
                _, holder["state"] = mixer.step(x_t, holder["state"], **mem_t)

        train_fns[name], decode_fns[name] = fwd_bwd, decode
        rows[name] = {"mixer": name, "params": sum(p.numel() for p in mixer.parameters()),
                      "paper": layers.info(name).paper, "state": layers.info(name).state}
    ctx.echo(f"timing forward+backward of {len(names)} mixers side by side (B={B}, T={T}, d_model={d})")
    t_train = measure_interleaved(train_fns, repeats=cfg.repeats, budget_s=cfg.budget_s, device=torch.device("cpu"))
    ctx.echo(f"timing decode steps after a {T}-token prefill")
    t_decode = measure_interleaved(decode_fns, repeats=cfg.decode_steps, budget_s=cfg.budget_s,
                                   device=torch.device("cpu"), warmup={n: 2 for n in names})
    for name in names:
        rows[name].update(fwd_bwd_ms=t_train[name].ms, fwd_bwd_runs=len(t_train[name].runs_s),
                          decode_step_ms=t_decode[name].ms, tokens_per_s=B * T / t_train[name].median_s)
    if "gru" in rows:
        for row in rows.values():
            row["speedup_vs_gru"] = rows["gru"]["fwd_bwd_ms"] / row["fwd_bwd_ms"]
    profiles = {name: _profile_categories(train_fns[name]) for name in cfg.profile if name in train_fns}
    ctx.echo(f"peak memory of a prefill of {', '.join(cfg.memory_mixers)} at T = "
             f"{', '.join(map(str, cfg.memory_lengths))}")
    memory = peak_memory_vs_length(cfg.memory_mixers, cfg.memory_lengths, d, mixer_kwargs=cfg.mixer_kwargs)
    return {"rows": list(rows.values()), "profiles": profiles, "memory": memory}


def report(cfg: LayersBenchConfig, finished: Finished) -> Report:
    measured = finished[0][1] if finished else {"rows": [], "profiles": {}, "memory": []}
    result = {"config": asdict(cfg), "environment": perf.environment(), **measured}
    return Report(render_markdown(result), {"rows": measured["rows"], "profiles": measured["profiles"],
                                            "memory": measured.get("memory", [])},
                  lambda path: plot_layers(result, path))


# timings are measured afresh on every run: a run after a code change must not report old numbers
BENCHMARK = Benchmark("layers", LayersBenchConfig, jobs, measure, report, plot_file="layers.png", check=check,
                      resume=False)


def render_markdown(result: dict) -> str:
    cfg, env = result["config"], result["environment"]
    lines = [
        "# recurlab bench layers\n",
        f"Token mixers at d_model={cfg['d_model']}, B={cfg['batch']}, T={cfg['seq_len']}, float32, CPU, "
        f"{env['threads']} threads, torch {env['torch']}, allocator tuned: {env['allocator_tuned']}. "
        "Forward+backward of the layer alone (median of the runs shown); decode step: one token after a "
        f"{cfg['seq_len']}-token prefill (median of {cfg['decode_steps']}). Timed side by side, round-robin.\n",
    ]
    has_gru = any("speedup_vs_gru" in r for r in result["rows"])
    header = ["mixer", "params", "fwd+bwd ms", "runs", "tokens/s (train)", "decode step ms"]
    header += ["x vs gru (fwd+bwd)"] if has_gru else []
    body = []
    for r in result["rows"]:
        row = [r["mixer"], f"{r['params']:,}", f"{r['fwd_bwd_ms']:.1f}", str(r["fwd_bwd_runs"]),
               f"{r['tokens_per_s']:,.0f}", f"{r['decode_step_ms']:.3f}"]
        if has_gru:
            row.append(f"{r['speedup_vs_gru']:.1f}")
        body.append(row)
    lines.append(markdown_table(header, body))
    if result["profiles"]:
        lines.append("\n## Where the time goes (forward+backward, share of self CPU time)\n")
        lines.append(markdown_table(["mixer", "matmul", "recurlab scans", "other"],
                                    [[n, *(f"{100 * p[k]:.0f}%" for k in ("matmul", "recurlab scans", "other"))]
                                     for n, p in result["profiles"].items()]))
    if result.get("memory"):
        lines.append("\n## Peak memory of a prefill (batch 1, no gradients) against the length\n")
        lines.append("Bytes torch allocates during one forward pass (the profiler's running total), above what was "
                     "allocated before it. Linear growth keeps bytes per token flat.\n")
        lines.append(memory_markdown(result["memory"]))
    return "\n".join(lines) + "\n"


def plot_layers(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["mixer"] for r in rows]
    memory = result.get("memory", [])
    fig, axes = plt.subplots(1, 3 if memory else 2, figsize=(18 if memory else 12, 4.5))
    for ax, key, title in ((axes[0], "fwd_bwd_ms", "forward + backward (ms)"),
                           (axes[1], "decode_step_ms", f"decode step after {result['config']['seq_len']} tokens (ms)")):
        ax.bar(names, [r[key] for r in rows], color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=60)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    if memory:
        ax = axes[2]
        for name in dict.fromkeys(r["mixer"] for r in memory):
            pts = sorted((r["seq_len"], r["peak_bytes"] / 2**20) for r in memory if r["mixer"] == name)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        lo = min(r["seq_len"] for r in memory)
        ref = min(r["peak_bytes"] for r in memory if r["seq_len"] == lo) / 2**20
        xs = sorted({r["seq_len"] for r in memory})
        ax.plot(xs, [ref * x / lo for x in xs], "k:", linewidth=1, label="linear")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_title("peak memory of a prefill (MiB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    cfg = result["config"]
    fig.suptitle(f"token mixers, d_model={cfg['d_model']}, B={cfg['batch']}, T={cfg['seq_len']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
