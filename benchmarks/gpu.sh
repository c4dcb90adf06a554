#!/usr/bin/env bash
# The whole GPU check in one go (steps 1-3 well under 10 minutes on one H100/H200, then step 4 for
# PAPER_SECONDS, default 240): every figure of the performance issues that needs a GPU, printed, and the raw
# numbers left in $OUT (or benchmarks/out/) as JSON; step 4's run folders in $OUT/degradation-paper.
#
# The lent GPU machine has no .venv and no internet; its own python3 has torch, torchvision, tensorboard,
# tqdm and onnxruntime. So, on the CPU machine first:
#   bash benchmarks/gpu.sh prepare     # data/fashion-mnist/*.gz (+ data/wheels/ for missing packages)
# then carry data/fashion-mnist (and data/wheels) with the run, and on the GPU machine:
#   bash benchmarks/gpu.sh
# With a .venv (scripts/setup.sh) it uses that; otherwise python3, with resdense installed from this tree
# (pip --no-deps, offline) and anything missing installed from data/wheels when carried.
#
#   bash benchmarks/gpu.sh paper      # step 4 only: the degradation study at He et al.'s size, for as long as
#                                     # PAPER_SECONDS allows (default 480); it continues where it stopped when
#                                     # its folder ($OUT/degradation-paper) is carried back in
#   bash benchmarks/gpu.sh smoke      # every step below at toy size on the CPU, in seconds (the test suite
#                                     # runs it: tests/benchmarks/test_gpu_smoke.py), so a GPU's minutes go
#                                     # to measuring. Not covered: prepare, nvidia-smi, torch.compile, timm,
#                                     # and step 2's seed-speed measurement (step 1 runs the same code).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RESDENSE_DATA:-data/fashion-mnist}
WHEELS=data/wheels
NEEDED="torch numpy PIL matplotlib safetensors"  # resdense's run-time imports (pyproject dependencies)

if [ "${1:-}" = prepare ]; then
    mkdir -p "$DATA"
    src=$(PYTHONPATH=src python3 -c "from resdense.data.fashion_mnist import load_fashion_mnist as f; print(f(None, progress=False).source)" 2>/dev/null || echo /usr/share/datasets/fashion-mnist)
    cp "$src"/*-ubyte.gz "$DATA"/
    # wheels for what a bare python3 may lack (for the GPU machine's Python version: set PYVER, e.g. 3.12)
    ${PIP:-python3 -m pip} download --quiet --only-binary=:all: ${PYVER:+--python-version "$PYVER"} --dest "$WHEELS" \
        matplotlib safetensors
    rm -f "$WHEELS"/numpy-* "$WHEELS"/pillow-*  # torchvision brings both; the carry limit is 64 MiB
    du -sh "$DATA" "$WHEELS"
    exit 0
fi

SMOKE=0
ONLY_PAPER=0
[ "${1:-}" = paper ] && ONLY_PAPER=1
if [ "${1:-}" = smoke ]; then
    SMOKE=1
    export RESDENSE_BENCH_SMOKE=1  # benchmarks/_common.get_recipe: toy recipes
fi
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=python3
    missing=$($PY - <<EOF
import importlib.util
print(" ".join(m for m in "$NEEDED".split() if importlib.util.find_spec(m) is None))
EOF
)
    case " $missing " in *" torch "*) echo "gpu.sh: python3 has no torch" >&2; exit 2 ;; esac
    export PIP_BREAK_SYSTEM_PACKAGES=1  # a bare machine's own python3: nothing else to keep apart from
    if [ -n "$missing" ]; then
        [ -d "$WHEELS" ] || { echo "gpu.sh: python3 lacks $missing; carry $WHEELS (bash benchmarks/gpu.sh prepare)" >&2; exit 2; }
        $PY -m pip install --quiet --no-index --find-links "$WHEELS" matplotlib safetensors
    fi
    # offline: no build isolation (it would fetch setuptools); the PYTHONPATH below works even if this fails
    $PY -m pip install --quiet --no-deps --no-build-isolation -e . >/dev/null 2>&1 ||
        echo "gpu.sh: pip install -e . failed; using PYTHONPATH=src" >&2
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || { echo "gpu.sh: no Fashion-MNIST in $DATA; carry it (bash benchmarks/gpu.sh prepare)" >&2; exit 2; }
case $DATA in /*) export RESDENSE_DATA=$DATA ;; *) export RESDENSE_DATA=$PWD/$DATA ;; esac
if [ $SMOKE = 1 ]; then
    DEV=cpu TIMM=--no-timm COMPILE= STEPS="--steps 1 --repeats 1 --recipes d2l-resnet" SEEDS=0 SEED_SPEED="--seed-speed 107"
    MEM="--batch 2 --size 64"
    # the paper's size cut to toy scale: every depth it has (up to 110), one seed, a few hundred images
    PAPER="--epochs 2 --train-subset 256 --test-subset 128 --seeds 0 --widths 4,8,16 --depths 20,110"
    echo "gpu.sh smoke: every step at toy size on the CPU"
else
    DEV=cuda COMPILE=--compile STEPS="--steps 20 --repeats 2" SEEDS=0,1,2 SEED_SPEED= MEM= PAPER=
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__)"
    TIMM=--no-timm
    $PY -c "import timm" 2>/dev/null && TIMM=
fi

# one step: its title, then its command; in smoke mode the steps run side by side (their numbers mean
# nothing there, and the suite's time is short), each printed whole when it ends
PIDS=()
step() {
    local title=$1; shift
    if [ $SMOKE = 1 ]; then
        local log="$OUT/step-${#PIDS[@]}.log"
        { echo "$title"; "$@"; } >"$log" 2>&1 &
        PIDS+=($!)
    else
        echo "$title"
        "$@"
    fi
}

paper_step() {
    step "== 4. the degradation study at He et al.'s size (64k iterations, depths 20-110, 3 seeds; stopped after ${PAPER_SECONDS:-480} s, continued by the next run)" \
        timeout "${PAPER_SECONDS:-480}" $PY -m resdense study degradation --paper --device $DEV $PAPER \
        --data-dir "$RESDENSE_DATA" --out "$OUT/degradation-paper"
}
# outside smoke mode: a time-out (124) is the plan, not a failure; the finished runs stay for the next call
paper_until_limit() {
    local rc=0
    paper_step || rc=$?
    [ $rc = 124 ] && echo "gpu.sh: the paper-size study stopped at its time limit; its finished runs are in $OUT/degradation-paper"
    [ $rc = 0 ] || [ $rc = 124 ]
}
if [ $ONLY_PAPER = 1 ]; then
    paper_until_limit
    exit
fi

step "== 1. training throughput: resdense (bf16 autocast, channels-last, data on the GPU) vs the seed + d2l pipeline${TIMM:+ (timm not installed: no timm baseline)}" \
    $PY benchmarks/throughput.py --device $DEV $STEPS $COMPILE $TIMM --json "$OUT/throughput_gpu.json"

step "== 2. time to 94% on the GPU (recipe gpu, 3 seeds; target: under 10 s of training)" \
    $PY benchmarks/time_to_accuracy.py --recipes gpu --seeds $SEEDS --no-baseline --device $DEV \
    $SEED_SPEED --data-dir "$RESDENSE_DATA" --json "$OUT/time_to_accuracy_gpu.json"

step "== 3. DenseNet-121 memory, plain vs memory_efficient (batch 64, 1x224x224)" \
    $PY benchmarks/memory.py --device $DEV $MEM --json "$OUT/memory_gpu.json"

if [ $SMOKE = 1 ]; then
    paper_step
else  # the rest of the lent minutes: as many of the paper-size runs as fit (bash benchmarks/gpu.sh paper goes on)
    PAPER_SECONDS=${PAPER_SECONDS:-240} paper_until_limit
fi

if [ $SMOKE = 1 ]; then
    failed=0
    for i in "${!PIDS[@]}"; do
        wait "${PIDS[$i]}" || { failed=1; echo "gpu.sh smoke: step $((i + 1)) failed" >&2; }
        cat "$OUT/step-$i.log"
    done
    exit $failed
fi
