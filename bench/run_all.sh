#!/usr/bin/env bash
# Regenerates every figure of BENCHMARKS.md (`make bench`). About 2 hours on 2 idle cores.
# Outputs: runs/bench/ (workdir), bench/out/*.json|md, runs/bench/search/pareto.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
W=${WORKDIR:-runs/bench}
mkdir -p bench/out
export TF_CPP_MIN_LOG_LEVEL=3

echo "== supernet step (foundation)"
$PY bench/supernet_step.py --preset fashion_mnist --batch 128 --repeats 10 | tee bench/out/supernet_step.md

echo "== training (resumes if interrupted)"
$PY -m tools.train --flagfile=configs/train_benchmark.cfg --workdir="$W"
$PY bench/train_benchmark.py --workdir="$W" | tee bench/out/train.md

echo "== search: dynamic vs static, test split read only after the choice"
$PY bench/search_benchmark.py --workdir="$W" --pareto --pareto_points=4 --population=12 \
    --generations=5 --num_val_images=5000 --num_calib_images=2000 | tee bench/out/search.md

echo "== export and TFLite latency"
$PY -m tools.export --workdir="$W" --from_search --quantization=float32,int8 --out="$W/export" \
    --overwrite
dyn=$(ls -d "$W"/export/dynamic_* | paste -sd, -)
# The static baseline: the exported static network of the largest cost.
static=$($PY -c "import glob,json,sys; d=sorted(glob.glob(sys.argv[1]+'/export/static_*/manifest.json'), key=lambda p: json.load(open(p))['stage_macs'][-1]); print(d[-1].rsplit('/',1)[0])" "$W")
$PY bench/export_benchmark.py --export_dirs="$dyn" --static_dir="$static" --max_images=2000 \
    --out=bench/out/export.json | tee bench/out/export.md
