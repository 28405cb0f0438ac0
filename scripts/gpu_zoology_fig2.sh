#!/usr/bin/env bash
# Zoology's figure 2 subset under its published recipe (`recurlab bench mqar --set protocol=zoology`):
# L in {64, 128}, d in {64, 128}, the figure's mixers that recurlab has (attention, hyena, rwkv, baseconv)
# plus gla and mingru, learning rates logspace(-4, -2, 4). Sized for about 15 minutes of one GPU:
#
#   - one worker process per (mixer, L): 12 at once on the one GPU (the models are far too small to fill it);
#   - EPOCHS=8 by default, 1/8 of Zoology's 64 (the recipe otherwise unchanged, including the per-epoch cosine,
#     which then anneals over 8 epochs); EPOCHS=64 is the paper's budget (about 8 times as long);
#   - every worker is stopped at LIMIT_S seconds (default 720); finished runs are kept in each worker's
#     runs.jsonl, and running the script again resumes where it stopped (a run cut off is redone whole).
#
# Writes $OUT/<mixer>-L<L>/{runs.jsonl,results.json,results.md} and $OUT/fig2.json (every finished run, and
# the best learning rate per mixer, d, L by validation accuracy). Runs on a CPU too (slowly); the test
# tests/bench/test_gpu_script.py runs it with tiny settings.
#
#   scripts/gpu_zoology_fig2.sh                 # OUT=bench-results/zoology-fig2
#   OUT=/tmp/z EPOCHS=2 LIMIT_S=60 scripts/gpu_zoology_fig2.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results/zoology-fig2}
EPOCHS=${EPOCHS:-8}
LIMIT_S=${LIMIT_S:-720}
MIXERS=${MIXERS:-attention hyena rwkv baseconv gla mingru}
SEQ_LENS=${SEQ_LENS:-64 128}
D_MODELS=${D_MODELS:-64,128}
EXTRA=${EXTRA:-}          # more --set KEY=VALUE pairs (the test shrinks the data with it)
PYTHON=${PYTHON:-python}
if [ -x .venv/bin/python ] && [ "$PYTHON" = python ]; then PYTHON=.venv/bin/python; fi
mkdir -p "$OUT"
echo "zoology fig2 subset: epochs=$EPOCHS limit=${LIMIT_S}s mixers=[$MIXERS] L=[$SEQ_LENS] d=[$D_MODELS] -> $OUT" >&2
start=$(date +%s)
pids=()
for mixer in $MIXERS; do
  for L in $SEQ_LENS; do
    dir="$OUT/$mixer-L$L"
    mkdir -p "$dir"
    OMP_NUM_THREADS=1 timeout "$LIMIT_S" "$PYTHON" -m recurlab.cli bench mqar --no-progress --out "$dir" \
      --set protocol=zoology mixers="$mixer" seq_lens="$L" d_models="$D_MODELS" epochs="$EPOCHS" $EXTRA \
      > "$dir/log.txt" 2>&1 &
    pids+=($!)
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "workers done in $(( $(date +%s) - start )) s (status $status: 1 if any hit the time limit or failed)" >&2
"$PYTHON" - "$OUT" "$EPOCHS" <<'PY'
import json, sys
from pathlib import Path

out, epochs = Path(sys.argv[1]), int(sys.argv[2])
runs = []
for log in sorted(out.glob("*/runs.jsonl")):
    runs += [json.loads(line)["result"] for line in log.read_text().splitlines() if line.strip()]
best = {}
for r in runs:
    k = (r["mixer"], r["d_model"], r["seq_len"])
    if k not in best or r["accuracy"] > best[k]["accuracy"]:
        best[k] = r
rows = sorted(best.values(), key=lambda r: (r["seq_len"], r["mixer"], r["d_model"]))
(out / "fig2.json").write_text(json.dumps({"protocol": "zoology", "epochs": epochs, "rows": rows, "runs": runs},
                                          indent=1) + "\n")
for r in rows:
    print(f"{r['mixer']:<10} L={r['seq_len']:<4} d={r['d_model']:<4} lr={r['lr']:.2e} "
          f"test {r.get('test_accuracy', float('nan')):.3f} (validation {r['accuracy']:.3f}, {r['steps']} steps, "
          f"{r['seconds']:.0f} s)")
print(f"{len(runs)} runs -> {out / 'fig2.json'}")
PY
exit $status
