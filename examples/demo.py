"""`make demo`: compile the bundled example transformer for Loihi 2, simulate it bit-exactly, compare
with onnxruntime, and print the energy report.

The model is examples/models/tiny_gpt.qdq.onnx: a 2-layer GPT-style causal LM (d=32, 2 heads,
vocab 64, 16 tokens) trained on a synthetic grammar and quantized by onnxruntime (static QDQ,
uint8 activations, 7-bit int8 weights), all produced by examples/build_models.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "examples/models/tiny_gpt.qdq.onnx"
CALIB = "examples/models/tiny_gpt.calib.npz"
INPUT = "examples/models/tiny_gpt.input.npz"
OUT = "out/demo_tiny_gpt"


def sh(*args: str) -> None:
    print(f"\n$ lasercc {' '.join(args)}", flush=True)
    r = subprocess.run([sys.executable, "-m", "lasercc", *args], cwd=ROOT, check=False)
    if r.returncode:
        sys.exit(r.returncode)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main() -> None:
    print(__doc__)
    sh("compile", MODEL, "--target", "loihi2", "--calibration", CALIB, "-o", OUT)
    sh("inspect", OUT, "--no-ir")
    sh("simulate", OUT, "--input", INPUT, "--compare-onnx", MODEL)
    if has("torch") and os.environ.get("LASERCC_DEMO_VIT", "1") != "0":
        print("\nNext: a non-text model -- a tiny Vision Transformer (Conv2d patch embedding, CLS token, pooled heads)"
              " built in torch, exported to ONNX, compiled at 8 bits and compared with onnxruntime on every output"
              " (examples/tiny_vit.py; a few seconds; LASERCC_DEMO_VIT=0 skips it).", flush=True)
        r = subprocess.run([sys.executable, "examples/tiny_vit.py", "--out", "out/demo_tiny_vit"], cwd=ROOT,
                           check=False)
        if r.returncode:
            sys.exit(r.returncode)
    lava_py = Path(os.environ.get("LASERCC_LAVA_PYTHON", ROOT / ".venv-lava" / "bin" / "python"))
    if has("lasercc.backends.lava_runner") and lava_py.exists() and os.environ.get("LASERCC_DEMO_LAVA", "1") != "0":
        print("\nNext: the same artifact in Lava's Loihi 2 fixed-point simulator (148 Lava processes, 1,135 timesteps;"
              " about 1.5 minutes here; LASERCC_DEMO_LAVA=0 skips it). Its codes must equal the NumPy run's.")
        sh("simulate", OUT, "--input", INPUT, "--backend", "lava", "--compare-onnx", MODEL)
    if has("lasercc.commands.profile"):
        sh("profile", OUT)


if __name__ == "__main__":
    main()
