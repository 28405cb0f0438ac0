"""The tables and the six-panel plot of ``recurlab bench recursion`` (moved unchanged from recursion.py,
reading the config's per-part sections)."""

from __future__ import annotations

from pathlib import Path

from .report import markdown_table


def render_markdown(result: dict) -> str:
    cfg = result["config"]
    lm, shape, st = cfg["lm"], cfg["shape"], cfg["structural"]
    lines = ["# Recursion over depth", "",
             f"d_model {lm['d_model']}, vanilla depth N = {shape['depth']}, K = {shape['shared']} shared blocks looped "
             f"{shape['depth'] // shape['shared']} times; {lm['steps']} steps of {lm['batch_size']} x {lm['seq_len']} "
             "bytes of the default corpus per model. Block applications per token: the compute per token "
             "(MoR: routed, measured in eval mode; recurrent-depth: at its mean training iterations). Training and "
             "decoding tokens/s are measured side by side in one process after training (medians of interleaved "
             "rounds); decoding at batch 1, greedy, after a "
             f"{cfg['speed']['decode_prompt']}-byte prompt.", ""]
    if result.get("lm"):
        rows = [[r["mixer"], r["variant"], f"{r['params']:,}", f"{r['block_applications']:.2f}",
                 f"{r['bits_per_byte']:.3f}", f"{r.get('train_tokens_per_s', float('nan')):,.0f}",
                 f"{r.get('decode_tokens_per_s', float('nan')):,.0f}"] for r in result["lm"]]
        lines += ["## Language modelling (bits per byte, lower is better)", "",
                  markdown_table(["mixer", "variant", "params", "blocks/token", "val bits/byte", "train tokens/s",
                                  "decode tokens/s"], rows), ""]
    if result.get("structural"):
        rows = [[r["task"], r["mixer"], r["variant"], f"{r['params']:,}", f"{r['test_iid']:.3f}",
                 f"{r['test_edge']:.3f}", f"{r['test_longer']:.3f}"] for r in result["structural"]]
        lines += ["## Structural recursion (exact match)", "",
                  f"Binary successor: trained on 1..{st['max_bits']} bits, longer = "
                  f"{st['max_bits'] + 1}..{st['long_bits']} bits, edge = long carry chains; "
                  "pre-order traversal: trained on depth 1..4, longer = depth 5, edge = path-shaped trees. "
                  f"d_model {st['d_model']}, {st['steps']} steps.", "",
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
                  f"Before: right after conversion (SVD-initialised LoRA); after: {cfg['relaxed']['uptrain_steps']} "
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


def plot_recursion(result: dict, path: Path) -> None:
    """Six panels: LM quality vs parameters and vs compute, recurrent depth vs iterations, structural
    exact match, relaxed conversion by LoRA rank, and early exit's quality/compute trade-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    shape = result["config"]["shape"]
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
        ax.scatter([shape["depth"] // shape["shared"]], [rows[-1]["bits_full_depth"]],
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
