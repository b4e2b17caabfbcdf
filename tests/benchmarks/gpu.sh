#!/usr/bin/env bash
# The GPU checks of the performance work in one call on a lent CUDA machine (device tool), each
# result printed as soon as it is measured, every step time-boxed so one slow step cannot eat
# the others' time. Needs an environment with onnxruntime-gpu (the `gpu` extra) and wrk if any.
#   bash tests/benchmarks/gpu.sh [MODEL]
set -uo pipefail
model="${1:-chest-ct-cancer}"
export CTSCAN_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
export CTSCAN_MAX_BATCH_SIZE=64 CTSCAN_STUDY_BATCH_SIZE=64 CTSCAN_CUDNN_CONV_ALGO_SEARCH=HEURISTIC
nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv,noheader || true
python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
echo "== session.run per batch size, CUDA and CPU"
timeout 120 python -m tests.benchmarks.providers
echo "== a 300-slice series through the study endpoint (target >= 2,000 slices/s)"
timeout 180 python -m tests.benchmarks.study --model "$model" --slices 300 --rounds 3
echo "== single slices over HTTP, c1 to c64, raw best batch in turns (target c64 >= 0.8 x raw)"
timeout 240 python -m tests.benchmarks.run --model "$model" --seconds 5 --turns 2 --requests 600
