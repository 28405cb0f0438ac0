"""``recurlab bench ops``: speed of every op backend beside nn.GRU and softmax attention.

For each sequence length T it times the forward (inference, no autograd) and
forward+backward of

- ``diag_scan`` (B=8, D=256) with each backend, gates logsigmoid(N(0, 1));
- ``gla`` (B=8, H=4, K=V=64) with each backend, with GLA's gates
  logsigmoid(N(0, 1)) / 16 (64-step chunks); ``chunk`` once more with strong
  decay, logsigmoid(N(0, 1)) (short chunks), and with extreme decay,
  logsigmoid(N(0, 1)) - 6 (secondary chunking);
- ``torch.nn.GRU(256, 256)`` and causal softmax attention through SDPA
  (B=8, H=4, Dh=64): the baselines.

Forward+backward sends a dense random gradient into the output (as a network
would) with fresh parameter gradients each run. Before timing, every backend is checked against ``reference`` in value and
gradient; the benchmark refuses to report speeds when one disagrees. Times are
medians of repeats (with a per-measurement time budget for slow baselines).
The achieved bandwidth of the ``cpu`` diag_scan forward (3 tensors: read a,
read b, write h) is compared with ``copy_`` bandwidth measured in the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .. import ops, perf
from ..configs import check_fields, param
from .harness import Benchmark, Context, Finished, Report, settings
from .report import markdown_table, plot_time_vs_length
from .timing import measure_interleaved

COPY = "copy_ (256 MiB)"
COPY_BYTES = 1 << 28


@dataclass
class OpsBenchConfig:
    seq_lens: tuple[int, ...] = param((256, 1024, 4096, 16384), axis=True, ge=1)
    batch: int = param(8, ge=1)
    width: int = param(256, ge=1)  # D of diag_scan, hidden size of nn.GRU, model width of attention
    heads: int = param(4, ge=1)
    head_dim: int = param(64, ge=1)  # K = V of gla, Dh of attention
    repeats: int = param(5, ge=1)
    budget_s: float = param(20.0, gt=0)  # per measurement: stop repeating once spent (at least one run)
    max_reference_gla_len: int = param(4096, ge=1)  # its autograd graph keeps ~3 (B, H, K, V) tensors per step
    max_extreme_decay_gla_len: int = param(4096, ge=1)  # secondary chunking's (B, H, T, 16, K) temporaries grow past GBs
    device: str = param("cpu", choices=("cpu", "cuda"))
    dtype: str = param("float32", choices=("float32", "float64", "bfloat16", "float16"))

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def quick(cls, **overrides) -> "OpsBenchConfig":
        return cls(**{"seq_lens": (256, 1024, 4096), "repeats": 3, "budget_s": 5.0, **overrides})


@dataclass
class Case:
    op: str
    backend: str
    label: str
    build: Callable[[int], tuple[Callable[[], object], Callable[[], object]]]
    max_len: int | None = None
    skip_reason: str = ""
    slow: bool = False  # a Python loop over time: no warm-up run


@dataclass
class Row:
    op: str
    backend: str
    label: str
    T: int
    fwd_ms: float | None = None
    fwd_bwd_ms: float | None = None
    fwd_runs: int = 0
    fwd_bwd_runs: int = 0
    tokens_per_s: float | None = None
    skipped: str = ""
    ratios: dict = field(default_factory=dict)


def _cases(cfg: OpsBenchConfig) -> list[Case]:
    device, dtype = torch.device(cfg.device), getattr(torch, cfg.dtype)
    B, D, H, K = cfg.batch, cfg.width, cfg.heads, cfg.head_dim
    cases: list[Case] = []

    def diag_inputs(T):
        log_a = F.logsigmoid(torch.randn(B, T, D, device=device, dtype=dtype))
        b = torch.randn(B, T, D, device=device, dtype=dtype)
        return log_a, b

    for backend in ops.available_backends("diag_scan", device):
        def build(T, backend=backend):
            log_a, b = diag_inputs(T)
            la_g, b_g = log_a.clone().requires_grad_(True), b.clone().requires_grad_(True)

            def fwd():
                with torch.no_grad():
                    return ops.diag_scan(log_a, b, backend=backend)

            grad_h = torch.randn_like(b)

            def fwd_bwd():
                la_g.grad = b_g.grad = None
                h, _ = ops.diag_scan(la_g, b_g, backend=backend)
                h.backward(grad_h)

            return fwd, fwd_bwd
        cases.append(Case("diag_scan", backend, f"diag_scan/{backend}", build, slow=backend == "reference"))

    def gla_builder(backend, divisor, shift=0.0):
        def build(T):
            q, k = (torch.randn(B, T, H, K, device=device, dtype=dtype) for _ in range(2))
            v = torch.randn(B, T, H, K, device=device, dtype=dtype)
            g = F.logsigmoid(torch.randn(B, T, H, K, device=device, dtype=dtype)) / divisor + shift
            grads = [x.clone().requires_grad_(True) for x in (q, k, v, g)]

            def fwd():
                with torch.no_grad():
                    return ops.gla(q, k, v, g, backend=backend)

            grad_o = torch.randn_like(v)

            def fwd_bwd():
                for x in grads:
                    x.grad = None
                o, _ = ops.gla(*grads, backend=backend)
                o.backward(grad_o)

            return fwd, fwd_bwd
        return build

    for backend in ops.available_backends("gla", device):
        ref = backend == "reference"
        cases.append(Case("gla", backend, f"gla/{backend}", gla_builder(backend, 16.0), slow=ref,
                          max_len=cfg.max_reference_gla_len if ref else None,
                          skip_reason="the step loop's autograd graph keeps ~3 (B, H, K, V) tensors per step: "
                                      "about 25 GB at T=16384, past this machine's memory" if ref else ""))
    cases.append(Case("gla", "chunk", "gla/chunk (strong decay)", gla_builder("chunk", 1.0)))
    cases.append(Case("gla", "chunk", "gla/chunk (extreme decay)", gla_builder("chunk", 1.0, shift=-6.0),
                      max_len=cfg.max_extreme_decay_gla_len,
                      skip_reason="secondary chunking's (B, H, T, 16, K) temporaries exceed a few GB"))

    def gru_build(T):
        gru = torch.nn.GRU(D, D, batch_first=True, device=device, dtype=dtype)
        x = torch.randn(B, T, D, device=device, dtype=dtype)
        x_g = x.clone().requires_grad_(True)

        def fwd():
            with torch.no_grad():
                return gru(x)

        grad_y = torch.randn_like(x)

        def fwd_bwd():
            gru.zero_grad(set_to_none=True)
            x_g.grad = None
            gru(x_g)[0].backward(grad_y)

        return fwd, fwd_bwd
    cases.append(Case("baseline", "nn.GRU", "nn.GRU", gru_build))

    def attention_build(T):
        q, k, v = (torch.randn(B, T, D // K, K, device=device, dtype=dtype) for _ in range(3))
        grads = [x.clone().requires_grad_(True) for x in (q, k, v)]

        def fwd():
            with torch.no_grad():
                return ops.attention(q, k, v, backend="sdpa")

        grad_o = torch.randn_like(q)

        def fwd_bwd():
            for x in grads:
                x.grad = None
            ops.attention(*grads, backend="sdpa")[0].backward(grad_o)

        return fwd, fwd_bwd
    cases.append(Case("baseline", "sdpa", "attention (SDPA)", attention_build))
    return cases


def check_correctness(device: torch.device) -> list[str]:
    """Every backend against ``reference``, value and gradient, on small float32 inputs.

    Returns a list of failures (empty when all agree).
    """
    failures = []
    gen = torch.Generator().manual_seed(0)

    def rel(a, b):
        return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()

    def run(fn, inputs):
        xs = [x.clone().to(device).requires_grad_(True) for x in inputs]
        outs = fn(*xs)
        sum(o.double().sum() * (i + 1) for i, o in enumerate(outs) if o is not None).backward()
        return [o.detach().cpu() for o in outs if o is not None] + [x.grad.cpu() for x in xs]

    la = F.logsigmoid(torch.randn(2, 300, 32, generator=gen, dtype=torch.float64))
    b = torch.randn(2, 300, 32, generator=gen, dtype=torch.float64)
    expected = run(lambda x, y: ops.diag_scan(x, y, backend="reference"), (la, b))
    for backend in ops.available_backends("diag_scan", device):
        got = run(lambda x, y, be=backend: ops.diag_scan(x, y, backend=be), (la.float(), b.float()))
        errs = [rel(g, e) for g, e in zip(got, expected)]
        if max(errs) > 1e-5:
            failures.append(f"diag_scan/{backend}: relative error {max(errs):.2e}")
    for divisor in (16.0, 1.0):
        q, k, v = (torch.randn(2, 150, 2, 16, generator=gen, dtype=torch.float64) for _ in range(3))
        g = F.logsigmoid(torch.randn(2, 150, 2, 16, generator=gen, dtype=torch.float64)) / divisor
        expected = run(lambda *a: ops.gla(*a, backend="reference"), (q, k, v, g))
        for backend in ops.available_backends("gla", device):
            got = run(lambda *a, be=backend: ops.gla(*a, backend=be), (q.float(), k.float(), v.float(), g.float()))
            errs = [rel(x, y) for x, y in zip(got, expected)]
            if max(errs) > 1e-4:
                failures.append(f"gla/{backend} (gates / {divisor:g}): relative error {max(errs):.2e}")
    return failures


def check(cfg: OpsBenchConfig) -> list[str]:
    failures = check_correctness(torch.device(cfg.device))
    return ["backends disagree with reference: " + "; ".join(failures)] if failures else []


def jobs(cfg: OpsBenchConfig) -> list[dict]:
    """One job per length: every case at that length is timed side by side."""
    return [{"T": T, "settings": settings(cfg)} for T in cfg.seq_lens]


def measure(job: dict, ctx: Context) -> dict:
    """Every case at length T, forward then forward+backward, round-robin; and the copy bandwidth,
    sampled in the same rotation so that it sees the same machine state."""
    cfg, T = OpsBenchConfig(**job["settings"]), job["T"]
    device = torch.device(cfg.device)
    copy_src = torch.ones(COPY_BYTES // 4, device=device)
    copy_dst = torch.empty_like(copy_src)
    built, warmup, rows = {}, {}, []
    for case in _cases(cfg):
        row = Row(case.op, case.backend, case.label, T)
        rows.append(row)
        if case.max_len is not None and T > case.max_len:
            row.skipped = case.skip_reason
            continue
        built[case.label] = case.build(T)
        warmup[case.label] = 0 if case.slow else 1
    t_fwd = measure_interleaved({COPY: lambda: copy_dst.copy_(copy_src), **{k: f for k, (f, _) in built.items()}},
                                repeats=cfg.repeats, budget_s=cfg.budget_s, device=device,
                                warmup={COPY: 1, **warmup})
    copy_gbs = 2 * copy_src.numel() * copy_src.element_size() / t_fwd[COPY].median_s / 1e9
    t_fb = measure_interleaved({k: fb for k, (_, fb) in built.items()}, repeats=cfg.repeats,
                               budget_s=cfg.budget_s, device=device, warmup=warmup)
    for row in rows:
        if not row.skipped:
            row.fwd_ms, row.fwd_bwd_ms = t_fwd[row.label].ms, t_fb[row.label].ms
            row.fwd_runs, row.fwd_bwd_runs = len(t_fwd[row.label].runs_s), len(t_fb[row.label].runs_s)
            row.tokens_per_s = cfg.batch * T / t_fb[row.label].median_s
            ctx.echo(f"T={T:>6} {row.label:<26} fwd {row.fwd_ms:10.2f} ms   fwd+bwd {row.fwd_bwd_ms:10.2f} ms")
    return {"rows": [asdict(r) for r in rows], "copy_gbs": copy_gbs}


def report(cfg: OpsBenchConfig, finished: Finished) -> Report:
    rows = [Row(**r) for _, result in finished for r in result["rows"]]
    copy_gbs = {job["T"]: result["copy_gbs"] for job, result in finished}
    _add_ratios(rows)
    result = {"config": asdict(cfg), "environment": {**perf.environment(), "cpu_kernels": _kernel_status()},
              "copy_bandwidth_gbs": {str(T): gbs for T, gbs in copy_gbs.items()},
              "rows": [asdict(r) for r in rows], "bandwidth": _bandwidth_rows(rows, cfg, copy_gbs)}
    title = f"recurlab ops, B={cfg.batch}, D={cfg.width}, {result['environment']['threads']} threads"
    data = {"cpu_kernels": result["environment"]["cpu_kernels"],
            **{k: result[k] for k in ("copy_bandwidth_gbs", "rows", "bandwidth")}}
    return Report(render_markdown(result), data,
                  lambda path: plot_time_vs_length([r for r in result["rows"] if not r["skipped"]], path, title=title))


def _kernel_status() -> dict:
    from ..ops import _cpu_ext

    return _cpu_ext.status()


# timings are measured afresh on every run: a run after a code change must not report old numbers
BENCHMARK = Benchmark("ops", OpsBenchConfig, jobs, measure, report, plot_file="time_vs_length.png", check=check,
                      label=lambda job: f"T={job['T']}", resume=False)


def _add_ratios(rows: list[Row]) -> None:
    """Speed-ups (baseline time / this time, forward+backward): > 1 means faster than the baseline."""
    by_key = {(r.label, r.T): r for r in rows}
    for r in rows:
        if r.fwd_bwd_ms is None:
            continue
        for name, label in (("vs_reference", f"{r.op}/reference"), ("vs_gru", "nn.GRU"), ("vs_attention", "attention (SDPA)")):
            base = by_key.get((label, r.T))
            if base is not None and base.fwd_bwd_ms is not None and base is not r:
                r.ratios[name] = base.fwd_bwd_ms / r.fwd_bwd_ms
                r.ratios[name + "_fwd"] = base.fwd_ms / r.fwd_ms


def _bandwidth_rows(rows: list[Row], cfg: OpsBenchConfig, copy_gbs: dict[int, float]) -> list[dict]:
    itemsize = torch.empty((), dtype=getattr(torch, cfg.dtype)).element_size()
    out = []
    for r in rows:
        if r.label == "diag_scan/cpu" and r.fwd_ms is not None:
            gbs = 3 * cfg.batch * r.T * cfg.width * itemsize / (r.fwd_ms / 1e3) / 1e9
            out.append({"T": r.T, "fwd_ms": r.fwd_ms, "gbs": gbs, "copy_gbs": copy_gbs[r.T], "fraction": gbs / copy_gbs[r.T]})
    return out


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def render_markdown(result: dict) -> str:
    cfg, env = result["config"], result["environment"]
    lines = [
        "# recurlab bench ops\n",
        f"B={cfg['batch']}, D={cfg['width']} (diag_scan, nn.GRU), H={cfg['heads']}, K=V={cfg['head_dim']} (gla, attention), "
        f"{cfg['dtype']} on {cfg['device']}, {env['threads']} threads, torch {env['torch']}, "
        f"allocator tuned: {env['allocator_tuned']}. Median of up to {cfg['repeats']} runs "
        "(fewer where a run exceeds the time budget; `runs` column). Forward without autograd; "
        "forward+backward with it. Speed-ups are baseline time / this time (forward+backward; forward in brackets).\n",
    ]
    header = ["op / backend", "T", "fwd ms", "fwd+bwd ms", "runs", "tokens/s (fwd+bwd)", "x vs reference", "x vs nn.GRU", "x vs attention"]
    body = []
    for r in result["rows"]:
        if r["skipped"]:
            body.append([r["label"], str(r["T"]), "skipped", r["skipped"], "", "", "", "", ""])
            continue
        ratio = lambda k: (f"{r['ratios'][k]:.1f} ({r['ratios'][k + '_fwd']:.1f})" if k in r["ratios"] else "")
        body.append([r["label"], str(r["T"]), _fmt(r["fwd_ms"]), _fmt(r["fwd_bwd_ms"]), f"{r['fwd_runs']}/{r['fwd_bwd_runs']}",
                     _fmt(r["tokens_per_s"], ",.0f"), ratio("vs_reference"), ratio("vs_gru"), ratio("vs_attention")])
    lines.append(markdown_table(header, body))
    bw = result["bandwidth"]
    if bw:
        lines.append("\n## Bandwidth of the `cpu` diag_scan forward\n\nThe scan moves 3 tensors (read a, read b, write h). "
                     "Copy bandwidth is `dst.copy_(src)` on 256 MiB buffers (read + write counted), timed in the same "
                     "round-robin as the forward passes at each T.\n")
        lines.append(markdown_table(["T", "fwd ms", "GB/s", "copy GB/s", "% of copy bandwidth"],
                                    [[str(b["T"]), _fmt(b["fwd_ms"], ".3f"), _fmt(b["gbs"], ".1f"), _fmt(b["copy_gbs"], ".1f"),
                                      f"{100 * b['fraction']:.0f}%"] for b in bw]))
    return "\n".join(lines) + "\n"
