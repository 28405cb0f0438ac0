"""The ``recurlab`` command line.

    recurlab demo                      the main job: the quick MQAR comparison (minutes on a CPU)
    recurlab info                      versions, threads, which op backends run here
    recurlab layers                    every registered unit, its paper and decoding state
    recurlab bench ops [--quick]       speed of every op backend vs nn.GRU and attention
    recurlab bench layers [--quick]    every token mixer side by side: params, fwd+bwd, decode step
    recurlab bench mqar [--quick]      Zoology's associative-recall sweep over units, widths, lengths
    recurlab bench recursion [--quick] recursion over depth: every wrapper at equal compute and parameters
    recurlab train --preset lm-gla     train a small language model on the default corpus (resumable)
    recurlab train --task mqar ...     train one model on a synthetic task (resumable; runs under torchrun)
    recurlab generate --checkpoint D   continue a prompt with a saved model, streaming
    recurlab recipe NAME [--quick]     an application paper's model rebuilt and trained offline (see recurlab.recipes)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__, ops, perf
    from .ops import _cpu_ext

    print(f"recurlab {__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"CUDA available: {torch.cuda.is_available()}")
    ok = _cpu_ext.available()  # builds the compiled kernels on first use
    print(f"compiled CPU kernels: {'ready (' + _cpu_ext.extension_name() + ')' if ok else 'unavailable: ' + str(_cpu_ext.status()['error'])}")
    print(f"allocator tuned: {perf.allocator_tuned()}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for op in ops.BACKENDS:
        per_device = ", ".join(f"{d}: {' '.join(ops.available_backends(op, d))}" for d in devices)
        print(f"  {op:<14} {per_device}")
    return 0


def _cmd_bench_ops(args: argparse.Namespace) -> int:
    from .bench.ops import OpsBenchConfig, run_ops_bench

    overrides = {"device": args.device}
    if args.seq_lens:
        overrides["seq_lens"] = tuple(args.seq_lens)
    if args.repeats:
        overrides["repeats"] = args.repeats
    cfg = OpsBenchConfig.quick(**overrides) if args.quick else OpsBenchConfig(**overrides)
    out = Path(args.out)
    result = run_ops_bench(cfg, out, Path(args.json) if args.json else None)
    from .bench.ops import render_markdown

    print(render_markdown(result))
    print(f"wrote {args.json or out / 'results.json'}, {out / 'results.md'} and {out / 'time_vs_length.png'}")
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    from . import layers

    print(f"{'name':<10} {'kind':<7} {'parallel':<12}  {'decoding state':<45} paper")
    for kind in ("token", "channel"):
        for name in layers.names(kind):
            print(layers.info(name).summary())
    return 0


def _cmd_bench_layers(args: argparse.Namespace) -> int:
    from .bench.layers import LayersBenchConfig, render_markdown, run_layers_bench

    cfg = LayersBenchConfig(mixers=tuple(args.mixers or ()), d_model=args.d_model, batch=args.batch,
                            seq_len=args.seq_len, repeats=args.repeats, profile=tuple(args.profile))
    if args.quick:
        cfg.seq_len, cfg.repeats, cfg.decode_steps = min(cfg.seq_len, 512), 2, 5
    result = run_layers_bench(cfg, Path(args.out))
    print(render_markdown(result))
    print(f"wrote {Path(args.out) / 'results.json'}, results.md and layers.png")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.preset or args.config:
        return _train_language_model(args)
    import json

    from .train import Trainer, TrainConfig
    from .train.distributed import teardown
    from .train.tasks import SyntheticSetup, recall_model
    from .train.trainer import seed_everything

    setup = SyntheticSetup(task=args.task, seq_len=args.seq_len, num_kv_pairs=args.kv, vocab_size=args.vocab,
                           train_examples=args.train_examples, eval_examples=args.eval_examples, data_seed=args.data_seed)
    train, evaluation = setup.build()
    seed_everything(args.seed)
    model = recall_model(args.mixer if len(args.mixer) > 1 else args.mixer[0], args.d_model, args.vocab, args.n_layers)
    config = TrainConfig(steps=args.steps or 2000, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                         eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
                         precision=args.precision, early_stop_accuracy=args.early_stop, progress=not args.no_progress)
    trainer = Trainer(model, train, evaluation, config, out_dir=args.out)
    summary = trainer.fit(resume=args.resume)
    if trainer.runtime.is_main:
        print(json.dumps({"params": sum(p.numel() for p in model.parameters()), **summary}))
    teardown()
    return 0


def _train_language_model(args: argparse.Namespace) -> int:
    import json
    import math

    from .models import CausalLM
    from .train import Trainer, evaluate
    from .train.distributed import teardown
    from .train.lm import LMSetup, bits_per_byte
    from .train.trainer import seed_everything

    setup = LMSetup.preset(args.preset) if args.preset else LMSetup.from_file(args.config)
    if args.data:
        setup.data = {"path": args.data}
    if args.hf_dataset:
        setup.data = {"hf_dataset": args.hf_dataset}
    if args.steps:
        setup.train["steps"] = args.steps
    setup.train.update(seed=args.seed, precision=args.precision, progress=not args.no_progress,
                       checkpoint_every=args.checkpoint_every)
    out = Path(args.out or f"runs/{args.preset or Path(args.config).stem}")
    model_config, train_config, tokenizer, train_task, val_task, val_bytes, unigram_bpb = setup.build()
    seed_everything(args.seed)
    model = CausalLM(model_config)
    params = model.num_parameters()["total"]
    print(f"{args.preset or args.config}: {params:,} parameters, {len(train_task):,} training sequences of "
          f"{setup.seq_len} tokens; unigram baseline {unigram_bpb:.3f} bits per byte", flush=True)
    trainer = Trainer(model, train_task, val_task, train_config, out_dir=out)
    summary = trainer.fit(resume=args.resume)
    if trainer.runtime.is_main:
        final = evaluate(model, val_task, train_config.eval_batch_size, trainer.runtime.device)
        bpb = bits_per_byte(final["loss"], val_task.inputs.numel(), val_bytes)
        tokens_per_s = summary["step"] * train_config.batch_size * setup.seq_len / max(summary["seconds"], 1e-9)
        model.save_pretrained(out / "model", tokenizer)
        result = {"run": args.preset or str(args.config), "params": params, "val_loss": final["loss"],
                  "val_bits_per_byte": bpb, "unigram_bits_per_byte": unigram_bpb, "perplexity": math.exp(final["loss"]),
                  "train_tokens_per_s": tokens_per_s, "steps": summary["step"], "train_seconds": summary["seconds"]}
        (out / "lm_summary.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))
        print(f"saved the model to {out / 'model'}; try: recurlab generate --checkpoint {out / 'model'} --prompt 'And God said'")
    teardown()
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import codecs
    import sys as _sys

    import torch

    from .models import CausalLM
    from .models.generation import stream
    from .models.pretrained import load_tokenizer

    directory = Path(args.checkpoint)
    if not (directory / "config.json").exists() and (directory / "model" / "config.json").exists():
        directory = directory / "model"  # a training run's folder
    model = CausalLM.from_pretrained(directory)
    tokenizer = load_tokenizer(directory)
    if tokenizer is None:
        raise SystemExit(f"{directory} has no tokenizer saved with the model; it cannot decode text")
    ids = tokenizer.encode(args.prompt).unsqueeze(0)
    if ids.numel() == 0:
        raise SystemExit("--prompt must not be empty")
    out = _sys.stdout
    out.write(args.prompt)
    out.flush()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace") if tokenizer.name == "bytes" else None
    for token in stream(model, ids, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed):
        piece = decoder.decode(bytes([int(token[0])])) if decoder else tokenizer.decode([int(token[0])])
        out.write(piece)
        out.flush()
    out.write("\n")
    return 0


def _mqar_config(args: argparse.Namespace, quick: bool):
    from .bench.mqar import MQARBenchConfig

    overrides = {k: tuple(v) for k, v in (("mixers", args.mixers), ("d_models", args.d_models),
                                          ("seq_lens", args.seq_lens), ("lrs", args.lrs)) if v}
    for name in ("vocab_size", "max_steps", "train_examples"):
        if getattr(args, name, None):
            overrides[name] = getattr(args, name)
    return MQARBenchConfig.quick(**overrides) if quick else MQARBenchConfig(**overrides)


def _cmd_bench_mqar(args: argparse.Namespace) -> int:
    from .bench.mqar import render_markdown, run_mqar_bench

    cfg = _mqar_config(args, args.quick)
    result = run_mqar_bench(cfg, Path(args.out))
    print(render_markdown(result))
    print(f"wrote {Path(args.out) / 'results.json'}, results.md, runs.jsonl and the plot {Path(args.out) / 'mqar.png'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from .bench.mqar import MQARBenchConfig, render_markdown, run_mqar_bench

    cfg = MQARBenchConfig.quick()
    print("recurlab demo: how much associative recall does each unit lose against attention?\n"
          f"Training {len(cfg.mixers) * len(cfg.d_models)} small models on MQAR (Zoology) — "
          f"{', '.join(cfg.mixers)} at widths {', '.join(map(str, cfg.d_models))}, sequence length {cfg.seq_lens[0]}, "
          f"{cfg.num_kv_pairs(cfg.seq_lens[0])} key-value pairs. About 5-10 minutes on 2 CPU cores.\n", flush=True)
    start = time.perf_counter()
    out = Path(args.out)
    result = run_mqar_bench(cfg, out)
    print("\n" + render_markdown(result))
    print(f"plot: {out / 'mqar.png'}   (finished in {(time.perf_counter() - start) / 60:.1f} min; "
          f"the full sweep: recurlab bench mqar; docs/mqar.md explains the protocol)")
    return 0


def _cmd_bench_decode(args: argparse.Namespace) -> int:
    from .bench.decode import DecodeBenchConfig, render_markdown, run_decode_bench

    overrides = {}
    if args.presets:
        overrides["presets"] = tuple(args.presets)
    if args.batch_sizes:
        overrides["batch_sizes"] = tuple(args.batch_sizes)
    if args.max_new_tokens:
        overrides["max_new_tokens"] = args.max_new_tokens
    if args.prompt_len:
        overrides["prompt_len"] = args.prompt_len
    cfg = DecodeBenchConfig.quick(**overrides) if args.quick else DecodeBenchConfig(**overrides)
    result = run_decode_bench(cfg, Path(args.out))
    print(render_markdown(result))
    print(f"wrote {Path(args.out) / 'results.json'}, results.md and decode.png")
    return 0


def _cmd_bench_lm(args: argparse.Namespace) -> int:
    from .bench.lm import render_markdown, run_lm_bench
    from .train.lm import PRESETS

    result = run_lm_bench(args.presets or list(PRESETS), Path(args.out), args.steps,
                          throughput_rounds=args.throughput_rounds)
    print(render_markdown(result))
    print(f"wrote {Path(args.out) / 'results.json'}, results.md and lm.png")
    return 0


def _cmd_bench_recursion(args: argparse.Namespace) -> int:
    from .bench.recursion import RecursionBenchConfig, render_markdown, run_recursion_bench

    overrides = {k: v for k, v in (("mixers", args.mixers), ("variants", args.variants), ("parts", args.parts),
                                   ("steps", args.steps), ("d_model", args.d_model),
                                   ("structural_steps", args.structural_steps)) if v is not None}
    cfg = RecursionBenchConfig.quick(**overrides) if args.quick else RecursionBenchConfig(**overrides)
    result = run_recursion_bench(cfg, Path(args.out))
    print(render_markdown(result))
    print(f"wrote {Path(args.out) / 'results.json'}, results.md and recursion.png")
    return 0


def _cmd_recipe(args: argparse.Namespace) -> int:
    import time

    from . import recipes

    if args.name == "report":
        from .recipes.report import write_report

        folder = args.out or "docs/results/recipes"
        path = write_report(folder)
        print(path.read_text())
        print(f"wrote {path}")
        return 0
    module = recipes.load(args.name)
    out = Path(args.out) if args.out else Path("bench-results/recipes") / (args.name + ("-quick" if args.quick else ""))
    start = time.perf_counter()
    try:
        result = module.run(quick=args.quick, out_dir=out, seed=args.seed, progress=not args.no_progress)
    except ModuleNotFoundError as error:
        if error.name in ("opacus", "statsmodels", "sklearn"):
            print(f"recipe {args.name} needs {error.name}: pip install 'recurlab[recipes]' (opacus, statsmodels, "
                  "scikit-learn)", file=sys.stderr)
            return 2
        raise
    result.seconds = time.perf_counter() - start
    result.write(out)
    print(f"{args.name}: {module.PAPER}")
    print(result.markdown())
    print(f"{result.seconds / 60:.1f} min; wrote {out / 'results.json'}, results.md"
          + "".join(f", {Path(f).name}" for f in result.files))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recurlab", description="Efficient gated recurrent and recursive units.")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="versions, threads and the op backends available here (builds the CPU kernels)")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser("demo", help="the main job: the quick MQAR comparison of several units (minutes, CPU)")
    demo.add_argument("--out", default="bench-results/demo", help="output folder (results, plot)")
    demo.set_defaults(func=_cmd_demo)

    lay = sub.add_parser("layers", help="list every registered unit: paper, decoding state, parallel form")
    lay.set_defaults(func=_cmd_layers)

    tr = sub.add_parser("train", help="train a language model (--preset/--config) or a model on a synthetic task; "
                                      "resumable, runs under torchrun too")
    tr.add_argument("--preset", help="a language-model preset: lm-attention, lm-gla, lm-mingru, lm-gam, lm-rwkv, "
                                     "lm-liger, lm-sambay")
    tr.add_argument("--config", help="a JSON file with model, train, seq_len, tokenizer and data sections")
    tr.add_argument("--data", help="language modelling text: a .txt file or a folder of them (default corpus: KJV)")
    tr.add_argument("--hf-dataset", help="a Hugging Face dataset folder saved with save_to_disk (column 'text')")
    tr.add_argument("--task", default="mqar", choices=["mqar", "ar", "copy"])
    tr.add_argument("--mixer", nargs="+", default=["attention"], help="one token mixer, or one per layer")
    tr.add_argument("--d-model", type=int, default=64)
    tr.add_argument("--n-layers", type=int, default=2)
    tr.add_argument("--seq-len", type=int, default=64)
    tr.add_argument("--kv", type=int, default=4, help="key-value pairs (mqar) / tokens to copy (copy)")
    tr.add_argument("--vocab", type=int, default=8192)
    tr.add_argument("--train-examples", type=int, default=50_000)
    tr.add_argument("--eval-examples", type=int, default=1_000)
    tr.add_argument("--data-seed", type=int, default=0)
    tr.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 2000 or the preset's)")
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--warmup", type=int, default=50)
    tr.add_argument("--eval-every", type=int, default=100)
    tr.add_argument("--checkpoint-every", type=int, default=0)
    tr.add_argument("--early-stop", type=float, default=None, help="stop at this evaluation accuracy")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    tr.add_argument("--out", default=None, help="folder for checkpoint.pt and metrics.jsonl")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_cmd_train)

    gen = sub.add_parser("generate", help="continue a prompt with a saved model, streaming the text")
    gen.add_argument("--checkpoint", required=True, help="a folder written by save_pretrained (or a training run)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=300)
    gen.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=_cmd_generate)

    from .recipes import names as recipe_names

    rec = sub.add_parser("recipe", help="an application paper's model rebuilt from recurlab's parts, trained offline")
    rec.add_argument("name", choices=recipe_names() + ["report"],
                     help="a recipe, or 'report' to tabulate the results.json found under --out (default docs/results/recipes)")
    rec.add_argument("--quick", action="store_true", help="a small configuration: under 5 minutes on 2 CPU cores")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--out", help="output folder (default bench-results/recipes/NAME[-quick])")
    rec.add_argument("--no-progress", action="store_true")
    rec.set_defaults(func=_cmd_recipe)

    bench = sub.add_parser("bench", help="benchmarks (not tests): real sizes, tables, JSON and plots")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    bops = bench_sub.add_parser("ops", help="time every op backend beside nn.GRU and softmax attention")
    bops.add_argument("--quick", action="store_true", help="T in {256, 1024, 4096}, 3 repeats: about a minute on 2 cores")
    bops.add_argument("--seq-lens", type=int, nargs="+", help="sequence lengths (default 256 1024 4096 16384)")
    bops.add_argument("--repeats", type=int, help="timed runs per measurement (median reported)")
    bops.add_argument("--device", default="cpu", help="cpu or cuda")
    bops.add_argument("--out", default="bench-results/ops", help="output folder for results.json/.md and the plot")
    bops.add_argument("--json", help="also write the JSON results to this path")
    bops.set_defaults(func=_cmd_bench_ops)
    blay = bench_sub.add_parser("layers", help="every token mixer side by side: params, fwd+bwd time, decode step")
    blay.add_argument("--mixers", nargs="+", help="token mixers to compare (default: all registered)")
    blay.add_argument("--d-model", type=int, default=256)
    blay.add_argument("--batch", type=int, default=8)
    blay.add_argument("--seq-len", type=int, default=2048)
    blay.add_argument("--repeats", type=int, default=5)
    blay.add_argument("--profile", nargs="*", default=["mingru"], help="mixers whose time to split by op category")
    blay.add_argument("--quick", action="store_true", help="T <= 512, 2 repeats")
    blay.add_argument("--out", default="bench-results/layers")
    blay.set_defaults(func=_cmd_bench_layers)
    bmq = bench_sub.add_parser("mqar", help="Zoology's MQAR: accuracy of every unit vs width and length")
    bmq.add_argument("--quick", action="store_true", help="the demo's settings")
    bmq.add_argument("--mixers", nargs="+")
    bmq.add_argument("--d-models", type=int, nargs="+")
    bmq.add_argument("--seq-lens", type=int, nargs="+")
    bmq.add_argument("--lrs", type=float, nargs="+")
    bmq.add_argument("--vocab-size", type=int)
    bmq.add_argument("--max-steps", type=int)
    bmq.add_argument("--train-examples", type=int)
    bmq.add_argument("--out", default="bench-results/mqar", help="output folder; an interrupted sweep resumes from it")
    bmq.set_defaults(func=_cmd_bench_mqar)
    bdec = bench_sub.add_parser("decode", help="decoding throughput and state memory vs generated length, and prefill")
    bdec.add_argument("--quick", action="store_true", help="256-token prompt, 1024 new tokens")
    bdec.add_argument("--presets", nargs="+", help="language-model presets to compare")
    bdec.add_argument("--batch-sizes", type=int, nargs="+")
    bdec.add_argument("--prompt-len", type=int)
    bdec.add_argument("--max-new-tokens", type=int)
    bdec.add_argument("--out", default="bench-results/decode")
    bdec.set_defaults(func=_cmd_bench_decode)
    blm = bench_sub.add_parser("lm", help="train every language-model preset in turn and tabulate bits per byte")
    blm.add_argument("--presets", nargs="+")
    blm.add_argument("--steps", type=int, help="override every preset's steps")
    blm.add_argument("--out", default="runs/lm-bench", help="one run folder per preset; finished ones are reused")
    blm.add_argument("--throughput-rounds", type=int, default=5,
                     help="rounds of the side-by-side training-speed measurement (0: skip it)")
    blm.set_defaults(func=_cmd_bench_lm)
    brec = bench_sub.add_parser("recursion", help="recursion over depth: stack vs Recursive vs Relaxed vs MoR vs "
                                                  "RecurrentDepth vs RMoE, at equal compute and parameters")
    brec.add_argument("--quick", action="store_true", help="tiny sizes, attention only: minutes on 2 cores")
    brec.add_argument("--mixers", nargs="+", help="token mixers of the blocks (default attention gla)")
    brec.add_argument("--variants", nargs="+", help="variants to compare (default all)")
    brec.add_argument("--parts", nargs="+", help="lm structural iterations sampler relaxed batching (default all)")
    brec.add_argument("--steps", type=int, help="training steps per language model")
    brec.add_argument("--structural-steps", type=int, help="training steps per structural-recursion model")
    brec.add_argument("--d-model", type=int)
    brec.add_argument("--out", default="bench-results/recursion", help="output folder; an interrupted run resumes from it")
    brec.set_defaults(func=_cmd_bench_recursion)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import perf

    perf.tune_cpu_allocator()  # before any large tensor exists; see recurlab.perf
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
