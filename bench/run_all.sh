#!/usr/bin/env bash
# Regenerates every figure of BENCHMARKS.md (`make bench`). The parts before the claim take
# about 4 hours on 2 idle cores (two 90-minute supernets among them).
# Outputs: the workdir (runs/bench/ unless WORKDIR is set) and bench/results/, the files
# BENCHMARKS.md and BUILD_NOTES.md link to: supernet_step.md, step_cost_run.md, conv_variants.md,
# train_benchmark.md, search_benchmark.md|json, pareto.png|json (the search plot and fronts),
# export_benchmark.md|json, claim/claim.json|md|png (the benchmark of record, bench/claim.py on
# the released fashion_mnist_v2: about 8-9 more hours on 2 idle cores; run it again with the
# same command to resume),
# recipe_screen.md|json (the recipe variants on validation, ~15 min each),
# search_efficiency/ (issue 18, ~1.5 hours, resumable), latency_model/ and
# latency_model_latency_search/ (issue 18) and
# ofa_check.md|json (cut-outs against the same networks trained alone, ~1-1.5 hours).
# Times are those of the 2-core AMD EPYC VM of 2026-12-01.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
W=${WORKDIR:-runs/bench}
R=bench/results
mkdir -p "$R"
export TF_CPP_MIN_LOG_LEVEL=3

echo "== supernet step (foundation)"
$PY -m bench.supernet_step --preset fashion_mnist --batch 128 --repeats 10 | tee "$R/supernet_step.md"

echo "== the training recipe's step: where its time goes (one trace, streams of architectures)"
# (bench/results/step_cost.md is the annotated record of 2026-12-01; this writes a fresh run beside it)
{ $PY -m bench.step_cost; $PY -m bench.step_cost --pair --rounds=2; } | tee "$R/step_cost_run.md"

echo "== convolution variants (float32, bfloat16, XLA, grouped) at the largest network's shapes"
$PY -m bench.conv_variants --batch 128 --repeats 10 | tee "$R/conv_variants.md"

echo "== training recipe variants, shortened, on the validation split (resumable)"
$PY -m bench.recipe_screen --workdir=runs/screen --out="$R/recipe_screen" \
    --variants=base,every_step,macs,macs_zero,macs_studentw,macs_floor

echo "== training (resumes if interrupted)"
$PY -m tools.train --flagfile=configs/train_benchmark.cfg --workdir="$W"
$PY -m bench.train_benchmark --workdir="$W" --out="$R/train_benchmark"

echo "== search: dynamic vs static, test split read only after the choice"
$PY -m bench.search_benchmark --workdir="$W" --pareto --pareto_points=4 --population=12 \
    --generations=5 --num_val_images=5000 --num_calibration_images=2000 \
    --out="$R/search_benchmark.json" --markdown="$R/search_benchmark.md"
cp "$W/search/pareto.png" "$W/search/pareto.json" "$R/"

echo "== export and TFLite latency"
$PY -m tools.export --workdir="$W" --from_search --quantization=float32,int8 --out="$W/export" \
    --overwrite
dyn=$(ls -d "$W"/export/dynamic_* | paste -sd, -)
# The static baseline: the exported static network of the largest cost.
static=$($PY -c "import glob,json,sys; d=sorted(glob.glob(sys.argv[1]+'/export/static_*/manifest.json'), key=lambda p: json.load(open(p))['stage_macs'][-1]); print(d[-1].rsplit('/',1)[0])" "$W")
$PY -m bench.export_benchmark --export_dirs="$dyn" --static_dir="$static" --max_images=2000 \
    --out="$R/export_benchmark.json" | tee "$R/export_benchmark.md"

echo "== the benchmark of record (issue 16): baselines trained from scratch for T and T/k (hours; resumable)"
# On the released fashion_mnist_v2 (runs/screen90/base's supernet: configs/train_benchmark_90min.cfg),
# with its recipe for the baselines: the record in BENCHMARKS.md. The copy is made once; the
# claim resumes from its done/ markers when run again.
[ -d runs/v2 ] || $PY -m tools.pretrained --name=fashion_mnist_v2 --workdir=runs/v2
$PY -m bench.claim --workdir=runs/v2 --train_flagfile=configs/train_benchmark_90min.cfg \
    --out="$R/claim"

echo "== search efficiency (issue 18): random vs old vs new search, N = 200, validation only"
# Its measurements stay in the workdir's folder (<out>/measured/, resumable); the report is copied.
$PY -m bench.search_efficiency --workdir="$W" --measurements=200 --out="$W/search_efficiency"
mkdir -p "$R/search_efficiency"
cp "$W"/search_efficiency/search_efficiency.{json,md} "$R/search_efficiency/"
echo "== the predictor's ceiling on a validation half (issue 18), from the stored measurements"
for offset in 0 200 400; do  # a single-seed run stores ~580 candidates
    $PY -m bench.predictor_ceiling --store="$W/search_efficiency/measured" --offset=$offset
    echo
done | tee "$R/search_efficiency/predictor_ceiling.md"

echo "== latency model (issue 18): host table, predicted vs measured cascade latency, 1 thread"
T=runs/latency/host_float32_fashion_mnist.json
# Measured again every time (~8 minutes): a table timed by older code (calibration graphs
# interleaved across networks, before 2026-12-06) over-predicts small networks 1.6-2.0x.
$PY -m tools.latency_table --preset=fashion_mnist --out="$T" --overwrite
$PY -m bench.latency_model --exports="$W/export" --table="$T" \
    --max_images=1000 --repeats=9 --out="$R/latency_model"

echo "== a search by latency (issue 18): its networks' measured latency against their budgets"
L="${W}_lat"  # the same checkpoint and measurements, its own search outputs
if [ ! -d "$L" ]; then
    mkdir -p "$L/search"
    cp -r "$W"/checkpoints "$W"/run_config.json "$W"/train_summary.json "$W"/train_log.jsonl "$L/"
    cp -r "$W"/search/state.json "$W"/search/predictions "$L/search/"
fi
$PY -m tools.search --workdir="$L" --mode=dynamic --cost=latency --latency_table="$T" --pareto \
    --pareto_points=4 --population=12 --generations=5 --num_val_images=5000 \
    --num_calibration_images=2000
$PY -m tools.export --workdir="$L" --from_search --cost=latency --latency_table="$T" \
    --quantization=float32 --out="$L/export" --overwrite
$PY -m bench.latency_model --exports="$L/export" --table="$T" --max_images=1000 --repeats=9 \
    --out="$R/latency_model_latency_search"

echo "== once-for-all's own test: three cut-outs against the same networks trained alone"
$PY -m bench.ofa_check --workdir="$W" --out="$R/ofa_check"
