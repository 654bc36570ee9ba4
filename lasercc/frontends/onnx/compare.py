"""Side-by-side check of a compiled artifact against onnxruntime on the same inputs.

Per output: max abs error and cosine similarity of the real values, top-1 agreement along the last
axis (argmax equal), and the fraction of identical codes (onnxruntime's real output quantized with
the IR output's own code type; for quantized ONNX outputs its integers, shifted if signed).
onnxruntime runs with default graph optimisation (as deployed: QDQ MatMul fused to QLinearMatMul),
fed in chunks of the artifact's batch size so both see exactly the same rows.
"""

from __future__ import annotations

import os

import numpy as np

from lasercc.errors import InputError
from lasercc.ir.graph import Graph
from lasercc.ir.types import CodeType
from lasercc.semantics.quant import quantize


def run_onnxruntime(model: str | os.PathLike, graph: Graph, inputs: dict[str, np.ndarray],
                    names: list[str]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise InputError(f"onnxruntime cannot load {model}: {e}") from None
    specs = {i.name: i for i in sess.get_inputs()}
    batch = {n.name: (n.type.shape[0] if n.type.shape else 1) for n in graph.inputs}
    rows = {k: np.asarray(v) for k, v in inputs.items() if k in specs}
    if not rows:
        raise InputError("none of the input arrays names an input of the ONNX model")
    k0 = next(iter(rows))
    b = batch.get(k0, 1)
    n_chunks = max(rows[k0].shape[0] // b, 1)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for c in range(n_chunks):
        feed = {}
        for k, v in rows.items():
            bk = batch.get(k, b)
            dt = _ort_dtype(specs[k].type)
            feed[k] = v[c * bk:(c + 1) * bk].astype(dt)
        for n, o in zip(names, sess.run(names, feed)):
            parts[n].append(np.asarray(o))
    return {n: np.concatenate(p, axis=0) for n, p in parts.items()}


def _ort_dtype(ort_type: str) -> np.dtype:
    """The NumPy dtype of an onnxruntime input type (``tensor(float16)``, ``tensor(uint8)``...); float32 else."""
    name = ort_type.removeprefix("tensor(").removesuffix(")")
    name = {"float": "float32", "double": "float64"}.get(name, name)
    try:
        dt = np.dtype(name)
    except TypeError:
        return np.dtype(np.float32)
    return dt if dt.kind in "fiub" else np.dtype(np.float32)


def metrics(ref: np.ndarray, got: np.ndarray, codes: np.ndarray, t: CodeType, quantized: bool, signed: bool) -> dict:
    r = np.asarray(ref)
    if quantized:
        ref_codes = r.astype(np.int64) + ((1 << (t.bits - 1)) if signed else 0)
        ref_real = (ref_codes - np.int64(t.zero_point[0])).astype(np.float32) * np.float32(t.scale[0])
    else:
        ref_real = r.astype(np.float32)
        ref_codes = quantize(ref_real, np.asarray(t.scale), np.asarray(t.zero_point), t.bits, t.axis)
    a, b = ref_real.astype(np.float64).ravel(), np.asarray(got, np.float64).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    cos = float(a @ b / den) if den > 0 else float(np.array_equal(a, b))
    top1 = float(np.mean(np.argmax(ref_real, axis=-1) == np.argmax(got, axis=-1))) if ref_real.ndim else 1.0
    return {"max_abs_error": float(np.max(np.abs(a - b))) if a.size else 0.0, "cosine": cos, "top1_agreement": top1,
            "identical_codes": float(np.mean(ref_codes.reshape(-1) == np.asarray(codes).reshape(-1))),
            "elements": int(a.size)}


def compare(model: str | os.PathLike, graph: Graph, inputs: dict[str, np.ndarray], values: dict[str, np.ndarray],
            codes: dict[str, np.ndarray], onnx_outputs: dict[str, dict] | None = None) -> dict[str, dict]:
    """Metrics per IR output against onnxruntime's output of the same name (or recorded ONNX name)."""
    info = onnx_outputs or {o: {"onnx": o, "quantized": False, "signed": False} for o in graph.outputs}
    names = [info.get(o, {"onnx": o})["onnx"] for o in graph.outputs]
    ref = run_onnxruntime(model, graph, inputs, names)
    out = {}
    for o, n in zip(graph.outputs, names):
        d = info.get(o, {})
        t = graph.type_of(o)
        assert isinstance(t, CodeType)
        if ref[n].shape != values[o].shape:
            raise InputError(f"output {o}: onnxruntime gives shape {list(ref[n].shape)}, the artifact "
                             f"{list(values[o].shape)}")
        out[o] = {"onnx_output": n, **metrics(ref[n], values[o], codes[o], t, bool(d.get("quantized")),
                                               bool(d.get("signed")))}
    return out
