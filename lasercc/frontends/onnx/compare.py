"""Side-by-side check of a compiled artifact against onnxruntime on the same inputs.

Per output: max abs error and cosine similarity of the real values, top-1 agreement along the last
axis (argmax equal), and the fraction of identical codes (onnxruntime's real output quantized with
the IR output's own code type; for quantized ONNX outputs its integers, shifted if signed).
onnxruntime runs with graph optimisations off by default -- the file's own arithmetic, the reference a
quantized file is held to; its default session fuses Q/DQ pairs into integer kernels that saturate differently
on CPUs without VNNI (``optimize=True`` for that session, as deployed) -- fed in chunks of the artifact's batch
size so both see exactly the same rows. For a file that quantizes at run time, each output also gets
"onnxruntime_self_cosine": onnxruntime against itself with every quantizer input scaled by 1 + 2^-20
(:mod:`lasercc.frontends.onnx.conditioning`), the closest any implementation but onnxruntime's own kernels can be
held to it.
"""

from __future__ import annotations

import os

import numpy as np

from lasercc.errors import InputError
from lasercc.ir.graph import Graph
from lasercc.ir.types import CodeType
from lasercc.semantics.quant import quantize


def run_onnxruntime(model: str | os.PathLike | bytes, graph: Graph, inputs: dict[str, np.ndarray],
                    names: list[str], optimize: bool = False) -> dict[str, np.ndarray]:
    """onnxruntime's outputs ``names`` for ``inputs``, row chunks of the artifact's batch size. ``model``: a path,
    or a serialized ModelProto. Graph optimisations off unless ``optimize``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model if isinstance(model, bytes) else str(model)
    try:
        sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        what = "the model" if isinstance(model, bytes) else model
        raise InputError(f"onnxruntime cannot load {what}: {e}") from None
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


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    """Cosine similarity of two arrays taken whole (1.0 for two equal all-zero arrays, 0.0 for zero vs nonzero)."""
    a, b = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float(np.array_equal(a, b))


def self_consistency(model: str | os.PathLike, graph: Graph, inputs: dict[str, np.ndarray], names: list[str],
                     ref: dict[str, np.ndarray]) -> dict[str, float] | None:
    """Per ONNX output: cosine of onnxruntime (``ref``, graph optimisations off) against onnxruntime on the same
    file with its run-time quantizer inputs scaled by 1 + 2^-20 (:mod:`lasercc.frontends.onnx.conditioning`).
    None when the file quantizes nothing at run time (its output is exact arithmetic on its inputs), or when the
    perturbed copy cannot be built or run (a file over protobuf's 2 GiB, a float16 quantizer input)."""
    import onnx

    from lasercc.frontends.onnx.conditioning import perturb_quantizer_inputs

    try:
        m = onnx.load(str(model))
        moved, count = perturb_quantizer_inputs(m)
        if count == 0:
            return None
        blob = moved.SerializeToString()
    except (OSError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError):  # unreadable or > 2 GiB
        return None
    try:
        other = run_onnxruntime(blob, graph, inputs, names)
    except InputError:  # onnxruntime refuses the perturbed copy (a Mul of float32 by a float16 quantizer input)
        return None
    return {n: cosine(ref[n], other[n]) for n in names}


def metrics(ref: np.ndarray, got: np.ndarray, codes: np.ndarray, t: CodeType, quantized: bool, signed: bool) -> dict:
    r = np.asarray(ref)
    if quantized:
        ref_codes = r.astype(np.int64) + ((1 << (t.bits - 1)) if signed else 0)
        ref_real = (ref_codes - np.int64(t.zero_point[0])).astype(np.float32) * np.float32(t.scale[0])
    else:
        ref_real = r.astype(np.float32)
        ref_codes = quantize(ref_real, np.asarray(t.scale), np.asarray(t.zero_point), t.bits, t.axis)
    cos = cosine(ref_real, got)
    a, b = ref_real.astype(np.float64).ravel(), np.asarray(got, np.float64).ravel()
    top1 = float(np.mean(np.argmax(ref_real, axis=-1) == np.argmax(got, axis=-1))) if ref_real.ndim else 1.0
    return {"max_abs_error": float(np.max(np.abs(a - b))) if a.size else 0.0, "cosine": cos, "top1_agreement": top1,
            "identical_codes": float(np.mean(ref_codes.reshape(-1) == np.asarray(codes).reshape(-1))),
            "elements": int(a.size)}


def compare(model: str | os.PathLike, graph: Graph, inputs: dict[str, np.ndarray], values: dict[str, np.ndarray],
            codes: dict[str, np.ndarray], onnx_outputs: dict[str, dict] | None = None, *, optimize: bool = False,
            conditioning: bool = True) -> dict[str, dict]:
    """Metrics per IR output against onnxruntime's output of the same name (or recorded ONNX name).
    ``optimize``: onnxruntime's default session instead of the file's own arithmetic (graph optimisations off).
    ``conditioning``: also measure "onnxruntime_self_cosine" (see :func:`self_consistency`; None where the file
    quantizes nothing at run time)."""
    info = onnx_outputs or {o: {"onnx": o, "quantized": False, "signed": False} for o in graph.outputs}
    names = [info.get(o, {"onnx": o})["onnx"] for o in graph.outputs]
    ref = run_onnxruntime(model, graph, inputs, names, optimize=optimize)
    selfcos = self_consistency(model, graph, inputs, names, ref) if conditioning else None
    out = {}
    for o, n in zip(graph.outputs, names):
        d = info.get(o, {})
        t = graph.type_of(o)
        assert isinstance(t, CodeType)
        if ref[n].shape != values[o].shape:
            raise InputError(f"output {o}: onnxruntime gives shape {list(ref[n].shape)}, the artifact "
                             f"{list(values[o].shape)}")
        out[o] = {"onnx_output": n, **metrics(ref[n], values[o], codes[o], t, bool(d.get("quantized")),
                                               bool(d.get("signed"))),
                  "onnxruntime_self_cosine": None if selfcos is None else selfcos[n]}
    return out
