#!/usr/bin/env bash
# Throughput check on a lent GPU machine (torch + transformers; no Ray, vLLM, DeepSpeed or network):
#   bash bench/gpu_check.sh            # Qwen2.5-1.5B-sized random model, bf16: training and judge tokens/s, MFU
#   bash bench/gpu_check.sh --smoke    # tiny model on the CPU, seconds
# Prints the card, tokens/s of crowdselect's pieces and of plain loops, their ratios; the last line is JSON.
# Stops after 470 s (the whole check is sized for under 8 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python3}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
exec timeout 470 "$PY" bench/gpu_check.py "$@"
