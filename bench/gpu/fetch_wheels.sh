#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels that the GPU machine's python3 (3.12, torch,
# onnx, onnxruntime, numpy, scipy, networkx, threadpoolctl, nvidia-ml-py preinstalled, no network)
# lacks for lasercc: pydantic and its parts, lark. They land in .whl/ (git-ignored), which the
# device tool carries (`carry: [".whl"]`); bench/gpu/run.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
plat=(--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64)
for spec in pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 lark==1.3.1; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl "$spec"
done
ls -1 .whl
