"""The ``recurlab`` command line: the parser and the dispatch (the commands' bodies live beside what they run).

    recurlab demo                       the main job: the quick MQAR comparison (minutes on a CPU)
    recurlab info | layers              versions and op backends | every registered unit
    recurlab bench NAME [--quick]       a benchmark (ops, layers, mqar, decode, decoding, lm, recursion, allocator,
                                        convert, vision, quantize, sorted, prune, autoneural, compress,
                                        reasoning, phonebook); resumes from --out
    recurlab train --preset lm-gla      a language model (or --config FILE; without either, a synthetic task)
    recurlab train --task vision --set model=hornet      an image classifier (recurlab.vision)
    recurlab generate --checkpoint D --prompt TEXT       continue a prompt with a saved model, streaming
    recurlab generate ... --draft D2 --method rsd-c      the same distribution by speculative decoding
    recurlab generate --checkpoint LUD --method lud      several tokens per call from an LUD-tuned model
    recurlab recipe NAME [--quick]      an application paper's model rebuilt and trained offline
    recurlab export-hf SRC DST          a saved model as a Hugging Face folder (pip install recurlab[hf])
    recurlab import-hf SRC DST          a Hugging Face folder (recurlab's, or Llama/Mistral/Qwen2) as a saved model
    recurlab convert --to liger-gla CHECKPOINT --out D   an attention model as a gated recurrent one (Liger), LoRA-tuned
    recurlab quantize --method fairy2i --bits 2 CHECKPOINT --out D   2-bit weights (Fairy2i), fine-tuned, packed

Settings change one way, ``--set key=value`` (dotted keys into the command's config, checked against
the field's type; ``--help`` lists the keys). Flags are for running: --quick, --out, --resume, --overwrite, --preset,
--config, --no-progress, --debug. A user error prints one line to stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _keys(title: str, cls, defaults=None) -> str:
    from .configs import describe

    return f"{title} (--set KEY=VALUE):\n" + "\n".join(describe(cls, defaults=defaults))


def _command(sub, name: str, func, help: str, *flags: str, epilog: str | None = None, out: str | None = None):
    cmd = sub.add_parser(name, help=help, description=help, epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.set_defaults(func=func)
    cmd.add_argument("--debug", action="store_true", help="show the traceback of an error")
    if "set" in flags:
        cmd.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                         help="change a setting (dotted keys into the config; repeatable)")
    if "config" in flags:
        cmd.add_argument("--config", help="a JSON file of the config (--set applies on top)")
    if "quick" in flags:
        cmd.add_argument("--quick", action="store_true", help="the small configuration: minutes on 2 CPU cores")
    if "out" in flags:
        cmd.add_argument("--out", default=out, help=f"output folder (default {out})")
    if "progress" in flags:
        cmd.add_argument("--no-progress", action="store_true", help="no progress bars")
    return cmd


def _cmd_info(args) -> int:
    from . import perf

    print("\n".join(perf.describe()))
    return 0


def _cmd_layers(args) -> int:
    from . import layers

    print(f"{'name':<10} {'kind':<7} {'parallel':<12}  {'decoding state':<45} paper")
    for kind in ("token", "channel"):
        for name in layers.names(kind):
            print(layers.info(name).summary())
    return 0


def _cmd_bench(args) -> int:
    from . import bench
    from .bench import harness
    from .configs import merge, override

    benchmark = bench.load(args.bench)
    cfg = benchmark.config.quick() if args.quick else benchmark.config()
    cfg = override(merge(cfg, _read_json(args.config)) if args.config else cfg, args.set)
    harness.run(benchmark, cfg, args.out, progress=not args.no_progress)
    print((Path(args.out) / "results.md").read_text())
    print(harness.files_written(benchmark, args.out))
    return 0


def _cmd_demo(args) -> int:
    from .bench.mqar import demo

    demo(Path(args.out), progress=not args.no_progress)
    return 0


def _cmd_train(args) -> int:
    if args.task == "vision":
        from .vision.train import run_from_cli as run_vision

        if args.preset:
            raise ValueError("--preset names a language model; --task vision takes --set model=NAME")
        run_vision(args.config, args.set, args.out, args.resume, args.overwrite, not args.no_progress)
        return 0
    from .train.lm import run_from_cli

    run_from_cli(args.preset, args.config, args.set, args.out, args.resume, not args.no_progress, args.overwrite)
    return 0


def _cmd_generate(args) -> int:
    from .configs import override
    from .train.lm import SamplingConfig, continue_prompt

    sampling = override(SamplingConfig(), args.set)
    used = {None: (), "chain": ("draft_len",), "rsd-c": ("draft_len", "branching"), "rsd-s": ("draft_len", "branching"),
            "lud": ("draft_len", "beta")}[args.method]
    for name in ("draft_len", "branching", "beta"):
        if getattr(args, name) is not None and name not in used:
            where = "without --method" if args.method is None else f"with --method {args.method}"
            raise ValueError(f"--{name.replace('_', '-')} has no effect {where}")
    draft_len = 4 if args.draft_len is None else args.draft_len
    branching = 2 if args.branching is None else args.branching
    beta = 0.9 if args.beta is None else args.beta
    if args.method == "lud":
        if args.draft is not None:
            raise ValueError("--method lud takes no --draft: the LUD-tuned checkpoint decodes alone")
        from .train.lm import continue_prompt_lud

        continue_prompt_lud(args.checkpoint, args.prompt, sampling, max_parallel=draft_len, beta=beta)
        return 0
    method = None
    if args.method is not None:
        from .decoding.methods import method_spec

        method = method_spec(args.method, draft_len, branching)
    elif args.draft is not None:
        raise ValueError("--draft needs --method (chain, rsd-c or rsd-s)")
    continue_prompt(args.checkpoint, args.prompt, sampling, draft=args.draft, method=method)
    return 0


def _cmd_recipe(args) -> int:
    from . import recipes

    recipes.run_from_cli(args.name, args.quick, args.seed, args.out, args.set, not args.no_progress)
    return 0


def _cmd_export_hf(args) -> int:
    from .hf.convert import export_hf

    _quiet_transformers()
    print(export_hf(args.src, args.dst, args.overwrite))
    return 0


def _cmd_import_hf(args) -> int:
    from .hf.convert import import_hf

    _quiet_transformers()
    print(import_hf(args.src, args.dst, args.overwrite))
    return 0


def _cmd_convert(args) -> int:
    from .configs import override
    from .convert.finetune import ConvertConfig, convert_and_finetune
    from .convert.liger import check_target

    check_target(args.to)
    config = override(ConvertConfig(), args.set)
    summary = convert_and_finetune(args.checkpoint, args.to, args.out, config, resume=args.resume,
                                   overwrite=args.overwrite, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    print(f"saved the converted model to {Path(args.out) / 'model'}", file=sys.stderr)
    return 0


def _cmd_quantize(args) -> int:
    from .compress.quantize import QuantizeConfig, quantize_and_finetune
    from .configs import override

    config = override(QuantizeConfig(), args.set)
    summary = quantize_and_finetune(args.checkpoint, args.method, args.bits, args.out, config, resume=args.resume,
                                    overwrite=args.overwrite, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    print(f"saved the packed model to {Path(args.out) / 'model'} (recurlab.compress.quantize.load_quantized)",
          file=sys.stderr)
    return 0


def _quiet_transformers() -> None:
    """No progress bars from transformers' file writes and reads (a conversion takes seconds)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _read_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    from . import bench, recipes
    from .train.lm import PRESETS, LMSetup, SamplingConfig
    from .train.tasks import SyntheticTraining
    from .vision.train import VisionTraining

    parser = _Parser(prog="recurlab", description="Efficient gated recurrent and recursive units.")
    parser.add_argument("--version", action="version", version=f"recurlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _command(sub, "info", _cmd_info, "versions, threads and the op backends available here (builds the CPU kernels)")
    _command(sub, "layers", _cmd_layers, "list every registered unit: paper, decoding state, parallel form")
    _command(sub, "demo", _cmd_demo, "the main job: the quick MQAR comparison of several units (minutes, CPU)",
             "out", "progress", out="bench-results/demo")
    benches = _command(sub, "bench", None, "benchmarks (not tests): real sizes, tables, JSON and plots")
    bench_sub = benches.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    for name in bench.names():
        spec = bench.load(name)
        _command(bench_sub, name, _cmd_bench, bench.summary(name), "quick", "config", "set", "out", "progress",
                 epilog=_keys("keys", spec.config), out=spec.out)
    train = _command(sub, "train", _cmd_train, "train a language model (--preset/--config) or, without either, a "
                     "model on a synthetic task; resumable, runs under torchrun too", "config", "set", "progress",
                     epilog=_keys("language models, e.g. --preset lm-gla", LMSetup, LMSetup.preset("lm-gla")) + "\n\n"
                     + _keys("synthetic tasks (no --preset or --config)", SyntheticTraining) + "\n\n"
                     + _keys("image classifiers (--task vision)", VisionTraining))
    train.add_argument("--task", choices=["vision"], help="vision: an image classifier of recurlab.vision "
                       "(default: a language model with --preset/--config, else a synthetic sequence task)")
    train.add_argument("--preset", choices=list(PRESETS), help="a language-model preset")
    train.add_argument("--out", help="folder for checkpoint.pt, metrics.jsonl and the model (default runs/PRESET; "
                       "vision: runs/MODEL-DATASET)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--overwrite", action="store_true", help="start again in an OUT that holds a run")
    gen = _command(sub, "generate", _cmd_generate, "continue a prompt with a saved model, streaming the text", "set",
                   epilog=_keys("sampling", SamplingConfig))
    gen.add_argument("--checkpoint", required=True, help="a folder written by save_pretrained (or a training run)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--draft", help="a smaller saved model with the same tokenizer: sample by speculative decoding "
                     "(the target's distribution, fewer target calls; see docs/decoding.md)")
    gen.add_argument("--method", choices=["chain", "rsd-c", "rsd-s", "lud"],
                     help="speculative method with --draft: chain (k drafted tokens), rsd-c (a Gumbel-top-k tree with "
                     "--branching children per level) or rsd-s (stochastic beam search, beam width --branching); "
                     "or lud for an LUD-tuned checkpoint (lexical unit decoding, docs/lud.md)")
    gen.add_argument("--draft-len", type=int,
                     help="tokens per draft chain, tree depth, or (lud) the most tokens per pass (default 4)")
    gen.add_argument("--beta", type=float,
                     help="lud: a parallel token is accepted while its probability exceeds beta (default 0.9)")
    gen.add_argument("--branching", type=int, help="rsd-c: children per node; rsd-s: beam width (default 2)")
    rec = _command(sub, "recipe", _cmd_recipe, "an application paper's model rebuilt from recurlab's parts, trained "
                   "offline", "quick", "set", "progress",
                   epilog="keys (--set KEY=VALUE): the fields of the recipe's Config (recurlab.recipes.NAME.Config)")
    rec.add_argument("name", choices=recipes.names() + ["report"],
                     help="a recipe, or 'report' to tabulate the results.json found under --out (default docs/results/recipes)")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--out", help="output folder (default bench-results/recipes/NAME[-quick])")
    export = _command(sub, "export-hf", _cmd_export_hf, "write a saved recurlab model (and its tokenizer) as a "
                      "Hugging Face folder for AutoModelForCausalLM after `import recurlab.hf` (needs recurlab[hf])")
    export.add_argument("src", help="a folder written by save_pretrained (recurlab's format)")
    export.add_argument("dst", help="the Hugging Face folder to write")
    imp = _command(sub, "import-hf", _cmd_import_hf, "write a Hugging Face folder as a saved recurlab model: one "
                   "written by export-hf, or a Llama / Mistral / Qwen2 checkpoint (safetensors; needs recurlab[hf])")
    imp.add_argument("src", help="a Hugging Face folder (config.json + safetensors)")
    imp.add_argument("dst", help="the recurlab model folder to write")
    for cmd in (export, imp):
        cmd.add_argument("--overwrite", action="store_true", help="write over a model already in DST")
    from .convert.finetune import ConvertConfig
    from .convert.liger import TARGETS

    conv = _command(sub, "convert", _cmd_convert, "convert a saved attention model (recurlab's, or a Llama / Mistral / "
                    "Qwen2 folder) into a gated recurrent one as Liger does, LoRA-fine-tune it, merge and save; "
                    "resumable (docs/convert.md)", "set", "progress", epilog=_keys("keys", ConvertConfig))
    conv.add_argument("checkpoint", help="a folder written by save_pretrained (or a training run), or a Hugging Face "
                      "Llama-family folder")
    conv.add_argument("--to", required=True, help=f"the target: {', '.join(TARGETS)}")
    conv.add_argument("--out", required=True, help="output folder: model/, finetune/ (the run), convert_summary.json")
    conv.add_argument("--resume", action="store_true", help="continue the fine-tuning from OUT/finetune/checkpoint.pt")
    conv.add_argument("--overwrite", action="store_true", help="start again in an OUT that holds a conversion")
    from .compress.methods import METHODS
    from .compress.quantize import QuantizeConfig

    quant = _command(sub, "quantize", _cmd_quantize, "quantise a saved language model's linear layers (Fairy2i's "
                     "2-bit complex codes, or a real baseline), fine-tune straight-through, save it packed; resumable "
                     "(docs/compress.md)", "set", "progress", epilog=_keys("keys", QuantizeConfig))
    quant.add_argument("checkpoint", help="a folder written by save_pretrained (or a training run), or a Hugging "
                       "Face Llama-family folder")
    quant.add_argument("--method", required=True, choices=list(METHODS),
                       help="fairy2i (widely-linear complex, codes ±1/±i), rtn (real per-channel round-to-nearest), "
                       "ternary (real per-channel ternary), bitnet (BitNet b1.58 ternary)")
    quant.add_argument("--bits", type=int, help="fairy2i: residual stages = bits per weight (1..4; the paper: "
                       "1 or 2; default 2); rtn: 2, 3 or 4 (default 2); not for ternary / bitnet")
    quant.add_argument("--out", required=True, help="output folder: model/, finetune/ (the run), quantize_summary.json")
    quant.add_argument("--resume", action="store_true", help="continue the fine-tuning from OUT/finetune/checkpoint.pt")
    quant.add_argument("--overwrite", action="store_true", help="start again in an OUT that holds a run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import perf

    perf.tune_cpu_allocator()  # before any large tensor exists; see recurlab.perf
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as error:  # the user's to fix: one line, exit code 2
        if args.debug:
            raise
        print(f"recurlab {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
