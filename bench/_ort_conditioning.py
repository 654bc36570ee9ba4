"""onnxruntime against itself: how far a quantized ONNX file's own output is decided by float32 rounding noise.

The rule and the reason live in ``lasercc.frontends.onnx.conditioning`` (``simulate --compare-onnx`` reports the
same figure); this module adds the session and row-by-row runs the benches use (``bench/ort_fused_quant.py``,
``bench/ort_fused_divergence.py``, ``bench/hf_zoo.py``): every run-time float entering a quantizer is scaled by
``1 + eps`` (default ``2**-20``, about 8 float32 ulps) and onnxruntime runs the original and the perturbed file with
graph optimisations off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from lasercc.frontends.onnx.conditioning import EPS, perturb_quantizer_inputs

__all__ = ["EPS", "perturb_quantizer_inputs", "perturbed_outputs", "run_rows", "session"]


def session(model: onnx.ModelProto | Path | str, optimize: bool = False) -> ort.InferenceSession:
    """onnxruntime's CPU session; graph optimisations off unless ``optimize`` (the file's own arithmetic)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run_rows(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every graph output by name, one row at a time (batch 1, as lasercc's pinned shapes run)."""
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    n = len(next(iter(feeds.values())))
    rows = [sess.run(names, {k: v[i:i + 1] for k, v in feeds.items() if k in wanted}) for i in range(n)]
    return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(names)}


def perturbed_outputs(path: Path | str, feeds: dict[str, np.ndarray],
                      eps: float = EPS) -> tuple[dict[str, np.ndarray], int]:
    """onnxruntime's outputs (graph optimisations off) for ``path`` with its quantizer inputs scaled by
    ``1 + eps``, and how many quantizer inputs were perturbed (0: nothing rounds at run time, the file is exactly
    determined and the perturbed run equals the original)."""
    model, count = perturb_quantizer_inputs(onnx.load(str(path)), eps)
    return run_rows(session(model), feeds), count
