#!/usr/bin/env bash
# The GPU check, from a fresh machine with an NVIDIA driver, nvcc and cmake: install the harness
# with CUDA llama.cpp, CUDA torch, torchao and bitsandbytes, run +sweep=gpu_check on the GPU's
# hardware profile (Qwen2.5-0.5B-Instruct from the Hub: bf16, torchao int8/int4, NF4, GGUF
# Q4_K_M fully offloaded, eval=smoke), then a vLLM cell when vLLM is importable, and print the
# closing tables (VRAM device/process/torch, J/token, SM clock, throttling, memory ratio).
#
#   scripts/gpu_check.sh                      # extra Hydra overrides are passed through
#   VLLM_PYTHON=/opt/vllm/bin/python scripts/gpu_check.sh   # vLLM in its own environment
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null; then
    echo "error: nvidia-smi not found: the GPU check needs an NVIDIA GPU and its driver" >&2
    exit 2
fi
name=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0)
case "$name" in
    *H200*) hw=h200_141gb ;;
    *H100*) hw=h100_80gb ;;
    *A100*80GB*) hw=a100_80gb ;;
    *L40S*) hw=l40s_48gb ;;
    *4090*) hw=rtx4090_24gb ;;
    *)
        echo "error: no hardware profile for '$name': add one to conf/hardware (copy h100_80gb.yaml)" >&2
        exit 2
        ;;
esac
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i 0 | tr -d '.')
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$arch}"
scripts/install.sh "hf,bnb"

echo "GPU check on $name (hardware=$hw, sm_$arch)"
status=0
.venv/bin/python -m harness +sweep=gpu_check "hardware=$hw" "$@" || status=$?

vllm_python=${VLLM_PYTHON:-.venv/bin/python}
if "$vllm_python" -c "import vllm" 2>/dev/null; then
    .venv/bin/python -m harness model=qwen25_05b runtime=vllm "runtime.python=$vllm_python" \
        method=none precision=native "hardware=$hw" workload=short_chat eval=smoke \
        +eval.baseline.runtime=hf +eval.baseline.method=none eval.baseline.precision=native \
        "$@" || status=$?
else
    echo "note: vLLM is not importable in $vllm_python: no vLLM cell (set VLLM_PYTHON)"
fi
exit "$status"
