#!/usr/bin/env bash
# The whole GPU check in one go (well under 10 minutes on one H100): every figure of the performance issue
# that needs a GPU, printed, and the raw numbers left in $OUT (or benchmarks/out/) as JSON.
#   bash benchmarks/gpu.sh            # sets up .venv if needed, then measures
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
[ -x .venv/bin/python ] || bash scripts/setup.sh >/dev/null
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__)"

echo "== 1. d2l recipes: resdense (bf16 autocast, channels-last, data on the GPU) vs the seed + d2l pipeline"
$PY benchmarks/throughput.py --device cuda --steps 40 --compile --json "$OUT/throughput_gpu.json"

echo "== 2. time to 94% on the GPU (recipe gpu, 3 seeds; target: under 10 s of training)"
$PY benchmarks/time_to_accuracy.py --recipes gpu --seeds 0,1,2 --no-baseline --device cuda \
    --json "$OUT/time_to_accuracy_gpu.json"

echo "== 3. DenseNet-121 memory, plain vs memory_efficient (batch 64, 1x224x224)"
$PY benchmarks/memory.py --device cuda --json "$OUT/memory_gpu.json"
