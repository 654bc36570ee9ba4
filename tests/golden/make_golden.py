"""Regenerate the golden outputs of the bundled example models (never edit the .npz files by hand).

For each quantized example model this compiles it with lasercc (NumPy target, ``ort`` requantization,
default passes, the model's calibration file), runs it on the held-out rows and stores

* ``<output>.codes`` -- lasercc's output codes (int64): the regression reference, compared exactly;
* ``<output>.onnxruntime`` -- onnxruntime's output for the same rows (float32): the independent reference.

Run: ``.venv/bin/python tests/golden/make_golden.py`` (about 10 s). Re-run it only when a deliberate
change to the compiler's arithmetic or lowering changes codes, and say why in the commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

import lasercc
from lasercc.commands.common import read_npz
from lasercc.runtime import run_graph

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "examples" / "models"
HERE = Path(__file__).resolve().parent
NAMES = ("tiny_gpt", "tiny_bert", "tiny_llama")
ROWS = 8


def golden_inputs(name: str) -> dict[str, np.ndarray]:
    x = read_npz(str(MODELS / f"{name}.heldout.npz"))
    return {k: v[:ROWS] for k, v in x.items()}


def compile_example(name: str) -> lasercc.Artifact:
    x = golden_inputs(name)
    shapes = {k: (1, v.shape[1]) for k, v in x.items()}
    return lasercc.compile(MODELS / f"{name}.qdq.onnx", target="numpy", requant="ort", input_shapes=shapes,
                           calibration=str(MODELS / f"{name}.calib.npz"), progress=False)


def onnxruntime_outputs(name: str, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(MODELS / f"{name}.qdq.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    rows = [sess.run(None, {k: v[i:i + 1] for k, v in x.items()}) for i in range(ROWS)]
    return {n: np.concatenate([r[j] for r in rows]) for j, n in enumerate(names)}


def main() -> None:
    for name in NAMES:
        x = golden_inputs(name)
        art = compile_example(name)
        res = run_graph(art.graph, x, collect_stats=False)
        ref = onnxruntime_outputs(name, x)
        payload: dict[str, np.ndarray] = {}
        for ir_name, info in art.manifest["onnx_outputs"].items():
            onnx_name = info["onnx"] if isinstance(info, dict) else info
            payload[f"{onnx_name}.codes"] = res.codes[ir_name]
            payload[f"{onnx_name}.onnxruntime"] = ref[onnx_name]
        np.savez_compressed(HERE / f"{name}.npz", **payload)
        print(f"wrote tests/golden/{name}.npz: {', '.join(sorted(payload))}")


if __name__ == "__main__":
    main()
