#!/usr/bin/env bash
# Everything issue 6 needs from a GPU, in one command on the lent GPU machine (device tool, from the
# repo root, with `carry: [".whl"]` after bench/gpu/fetch_wheels.sh):
#
#   bash bench/gpu/run.sh            # CUDA tests, then GPT-2-small throughput + NVML energy
#
# 1. the CUDA tests (bit-exact torch executor on the GPU vs the NumPy reference);
# 2. bench/torch_throughput.py --gpt2 --from-examples: the examples' GPT-2-small-shaped causal LM
#    quantized by onnxruntime and compiled by lasercc for 64 x 128 tokens, against torch fp16 eager
#    of the same float model and onnxruntime CPU int8, with NVML power sampling;
# 3. the same on the bench's own spiking graph (no LayerNorm) for the matmul engines alone.
# Results go to $OUT (the device tool brings them back) or bench/results/.
set -uo pipefail
out=${OUT:-bench/results}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/backends/test_torch_exec.py tests/backends/test_torch_matmul.py \
  tests/backends/test_torch_semantics.py 2>&1 | tail -15 | tee "$out/cuda_tests.txt"
python3 bench/torch_throughput.py --device cuda --gpt2 --from-examples --json "$out/gpt2_examples.json" \
  2>&1 | grep -v WARNING | tee "$out/gpt2_examples.txt"
python3 bench/torch_throughput.py --device cuda --gpt2 --json "$out/gpt2_graph.json" \
  2>&1 | tee "$out/gpt2_graph.txt"
