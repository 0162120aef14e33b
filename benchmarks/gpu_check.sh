#!/usr/bin/env bash
# GPU readiness check for advcorrupt: the CUDA tests and the benchmarks on one CUDA machine.
#
#   bash benchmarks/gpu_check.sh            # writes everything under $OUT (default ./gpu_out)
#
# Steps (each one's failure or timeout is recorded and the later steps still run; the issue-10
# measurements come first so a short budget still gets them):
#   00 wheels            install .whl/*.whl into /tmp/site when a .whl/ folder exists (no index, no deps)
#   01 env               versions, CUDA device, which optional packages import
#   02 pytest_gpu        pytest -m gpu: corruption engine on CUDA, sync-free trainer step under
#                        torch.cuda.set_sync_debug_mode("error"), CUDA graphs vs eager, bf16 autocast,
#                        SFIM under autocast, models in channels_last, torch.compile, CUDA checkpoints
#   03 trainer_overhead_unet_fp32      benchmarks/trainer_overhead.py --device cuda (Unet-resnet18, B=8)
#   04 trainer_overhead_unet_bf16      ... --bf16 --channels-last
#   05 trainer_overhead_unet_fp32_eager ... --no-graphs (CUDA graphs off: what the graphs buy)
#   06 trainer_overhead_dnanet_fp32    ... --model dnanet --batch 16
#   07 trainer_overhead_dnanet_bf16    ... --model dnanet --batch 16 --bf16 --channels-last
#   08 corruption_throughput_fp32      benchmarks/corruption_throughput.py --device cuda
#   09 corruption_throughput_bf16      ... --bf16 --channels-last
#   10 train_throughput_fp32           benchmarks/train_throughput.py --device cuda (dnanet B=16, none vs learned)
#   11 train_throughput_bf16           ... --amp bf16
#   12 model_cost                      benchmarks/model_cost.py --device cuda
#   13 model_cost_bf16                 ... --amp bf16 --channels-last
#   14 train_bench_smoke   advcorrupt train (bf16, mid-epoch checkpoints, resume) + bench on CUDA
#   15 schedules_grid      only with GRID_DATA set (an ISTD-layout folder carried to the machine, e.g.
#                          .gpudata/NUAA-SIRST): issue 20's grid, examples/istd_dnanet.py --profile quick
#                          --model acm, strategies random, banded and the four fixed schedules, seeds
#                          GRID_SEEDS (default 0,1,2), GRID_JOBS runs at once (default 8), on CUDA; the
#                          runs' small files (no checkpoints) packed into $OUT/schedules_grid.tgz. A
#                          GPU-only table: never mix it with the CPU runs in results/.
# Output: one <step>.log per step, pytest_gpu.xml, summary.tsv (step, exit code, seconds) and
# summary.txt. Exit code 0 if every step passed, else 1. Total wall time is capped by
# GPU_CHECK_BUDGET_S (default 480 s): each step gets at most its own limit and what is left.
# GPU_CHECK_STEPS picks steps by number (a regex: GPU_CHECK_STEPS='01|15' runs the environment check
# and the grid alone, e.g. GRID_DATA=.gpudata/NUAA-SIRST GPU_CHECK_STEPS='01|15' GPU_CHECK_BUDGET_S=540).
# Works without `pip install -e`: the repository goes on PYTHONPATH. PYTHON overrides python3.
# On the lent device machine (whose $OUT keeps at most 8 files), run it with OUT set to a scratch
# folder and pack the logs: OUT=/tmp/gc bash benchmarks/gpu_check.sh; tar czf $OUT/gpu_check.tgz -C /tmp/gc .

set -u -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
OUT="${OUT:-$REPO/gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
START=$(date +%s)
SUMMARY="$OUT/summary.tsv"
printf 'step\texit_code\tseconds\n' > "$SUMMARY"
FAILED=0

record() {  # name rc seconds
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$SUMMARY"
    if [ "$2" != "0" ]; then FAILED=1; fi
}

step() {  # step NAME LIMIT_S CMD...: run with a timeout, log to $OUT/NAME.log, record the exit code
    local name="$1" limit="$2"
    shift 2
    if [ -n "${GPU_CHECK_STEPS:-}" ] && ! [[ "$name" =~ ^(${GPU_CHECK_STEPS})_ ]]; then
        printf '%s\t%s\t%s\n' "$name" "not_selected" 0 >> "$SUMMARY"
        return
    fi
    local left=$(( BUDGET - ($(date +%s) - START) ))
    if [ "$left" -lt 15 ]; then
        echo "skipped: the ${BUDGET}s budget is spent" > "$OUT/$name.log"
        record "$name" "skipped" 0
        return
    fi
    if [ "$limit" -gt "$left" ]; then limit="$left"; fi
    local t0
    t0=$(date +%s)
    echo "+ $*" > "$OUT/$name.log"
    timeout -k 10 "$limit" "$@" >> "$OUT/$name.log" 2>&1
    local rc=$?
    if [ "$rc" = "124" ] || [ "$rc" = "137" ]; then echo "TIMEOUT after ${limit}s" >> "$OUT/$name.log"; fi
    record "$name" "$rc" $(( $(date +%s) - t0 ))
    echo "[gpu_check] $name: exit $rc ($(( $(date +%s) - t0 ))s)"
}

# ---- 00: wheels for what the GPU image lacks (segmentation-models-pytorch, albumentations, ...)
if [ -d "$REPO/.whl" ] && compgen -G "$REPO/.whl/*.whl" > /dev/null; then
    step 00_wheels 120 "$PY" -m pip install -q --no-index --no-deps --target /tmp/site "$REPO"/.whl/*.whl
    export PYTHONPATH="/tmp/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi

# ---- 01: environment
step 01_env 60 "$PY" - <<'EOF'
import importlib, sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda)
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0), "| bf16:", torch.cuda.is_bf16_supported())
for name in ("advcorrupt", "timm", "segmentation_models_pytorch", "albumentations", "kornia", "cv2", "matplotlib", "pytest"):
    try:
        m = importlib.import_module(name)
        print(f"{name:28s} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001 - report, do not fail
        print(f"{name:28s} MISSING ({type(e).__name__}: {e})")
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
if command -v nvidia-smi > /dev/null; then nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true; fi

# ---- 02: the CUDA tests
TIMEOUT_FLAG=()
"$PY" -c "import pytest_timeout" > /dev/null 2>&1 && TIMEOUT_FLAG=(--timeout 150)
step 02_pytest_gpu 170 "$PY" -m pytest tests -m gpu -q -p no:cacheprovider -rA \
    --junitxml="$OUT/pytest_gpu.xml" ${TIMEOUT_FLAG[@]+"${TIMEOUT_FLAG[@]}"}

# ---- 03-13: benchmarks on CUDA
KORNIA_FLAG=()
"$PY" -c "import kornia" > /dev/null 2>&1 || KORNIA_FLAG=(--no-kornia)
TO=(benchmarks/trainer_overhead.py --device cuda --steps 20 --warmup 5)
step 03_trainer_overhead_unet_fp32 60 "$PY" "${TO[@]}"
step 04_trainer_overhead_unet_bf16 60 "$PY" "${TO[@]}" --bf16 --channels-last
step 05_trainer_overhead_unet_fp32_eager 60 "$PY" "${TO[@]}" --no-graphs
step 06_trainer_overhead_dnanet_fp32 75 "$PY" "${TO[@]}" --model dnanet --batch 16
step 07_trainer_overhead_dnanet_bf16 75 "$PY" "${TO[@]}" --model dnanet --batch 16 --bf16 --channels-last
step 08_corruption_throughput_fp32 45 "$PY" benchmarks/corruption_throughput.py --device cuda ${KORNIA_FLAG[@]+"${KORNIA_FLAG[@]}"}
step 09_corruption_throughput_bf16 45 "$PY" benchmarks/corruption_throughput.py --device cuda --bf16 --channels-last --no-kornia
TT=(benchmarks/train_throughput.py --device cuda --model dnanet --batch-size 16 --steps 20)
step 10_train_throughput_fp32 90 "$PY" "${TT[@]}"
step 11_train_throughput_bf16 90 "$PY" "${TT[@]}" --amp bf16
step 12_model_cost 45 "$PY" benchmarks/model_cost.py --device cuda
step 13_model_cost_bf16 45 "$PY" benchmarks/model_cost.py --device cuda --amp bf16 --channels-last

# ---- 14: advcorrupt train on CUDA with bf16, mid-epoch checkpoints and a resume, then bench
RUN="$OUT/train_smoke"
rm -rf "$RUN"
step 14_train_bench_smoke 90 bash -c "
set -e
TRAIN=(\"$PY\" -m advcorrupt train --model sfim_dnanet --device cuda --amp bf16 --batch-size 4 \
       --synthetic-train 32 --synthetic-test 8 --synthetic-size 64 --steps-per-epoch 4 --checkpoint-every 3 \
       --out-dir \"$RUN\" --no-progress)
\"\${TRAIN[@]}\" --epochs 1
\"\${TRAIN[@]}\" --epochs 2 --resume
\"$PY\" -m advcorrupt bench --checkpoint \"$RUN\" --device cuda --corruptions gaussian_noise,motion_blur,jpeg_compression \
       --severities 1,3 --out \"$RUN/bench\" --no-progress
test -s \"$RUN/bench/robustness.json\"
"

# ---- 15: issue 20's schedules grid on CUDA (opt-in: GRID_DATA names the carried dataset)
if [ -n "${GRID_DATA:-}" ]; then
    GRID_OUT="$OUT/schedules_grid"
    step 15_schedules_grid "${GRID_LIMIT_S:-420}" "$PY" examples/istd_dnanet.py --profile quick --model acm \
        --data-root "$GRID_DATA" --device "${GRID_DEVICE:-cuda}" --jobs "${GRID_JOBS:-8}" --threads 1 --no-progress \
        --strategies "random,banded,random@3,random@1:10+2:10+3:80,curriculum@1-3,random@1-5" \
        --seeds "${GRID_SEEDS:-0,1,2}" --out "$GRID_OUT" --resume ${GRID_EXTRA:-}
    (cd "$OUT" && find schedules_grid -name '*.pt' -prune -o -type f -print | tar czf schedules_grid.tgz -T - \
        && rm -rf schedules_grid)
fi

# ---- summary
{
    echo "advcorrupt gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), total $(( $(date +%s) - START ))s, budget ${BUDGET}s"
    column -t -s $'\t' "$SUMMARY" 2> /dev/null || cat "$SUMMARY"
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
exit "$FAILED"
