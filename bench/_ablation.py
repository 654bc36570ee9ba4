"""Shared helpers of the LASER Tables 3-6 benches (``fidelity_ablation.py``, ``laser_lm_tables.py``).

Hybrid execution: a model component (a torch module) is exported to its own small float ONNX model,
compiled by ``lasercc.compile`` with calibration = its real inputs captured from the float model, run by
the NumPy backend (codes mode) and substituted into the torch forward. Measurement: next-token
log-probabilities, KL to the float model, and a paired bootstrap over held-out sequences -- the one place
these are defined, so both benches report the same statistics.
"""

from __future__ import annotations

import io
import platform
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

import lasercc
from lasercc.runtime import run_graph

Fn = Callable[..., torch.Tensor]


def export_component(mod: nn.Module, examples: Sequence[torch.Tensor],
                     names: Sequence[str] = ("x",)) -> onnx.ModelProto:
    """``mod`` as a batch-1 float ONNX model (opset 17) with inputs ``names`` and output ``y``."""
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mod, tuple(e[:1] for e in examples), buf, dynamo=False, opset_version=17,
                          input_names=list(names), output_names=["y"], do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def passes_for(nonlin: str) -> str:
    """``lut`` keeps the exact lookup tables; ``asncK`` fits K-segment ASNC tables."""
    return "dce" if nonlin == "lut" else f"dce,asnc-fit{{max_segments={int(nonlin[4:])}}}"


def compiled(proto: onnx.ModelProto, calib: Mapping[str, np.ndarray], bits: int, nonlin: str, **options: Any) -> Fn:
    """A torch-callable lasercc artifact of ``proto`` (NumPy backend, codes mode); positional inputs in the
    order of ``calib``'s keys (the ONNX input names). ``options`` go to ``lasercc.compile`` (``tensor_bits``,
    ``weight_bits``, ...)."""
    art = lasercc.compile(proto, bits=bits, calibration=dict(calib), passes=passes_for(nonlin), progress=False,
                          **options)
    names = list(calib)

    def run(*xs: torch.Tensor) -> torch.Tensor:
        feeds = {n: x.detach().numpy().astype(np.float32) for n, x in zip(names, xs, strict=True)}
        # the same run as ``art.run`` without its spike/saturation statistics (half the time, unused here)
        return torch.from_numpy(run_graph(art.graph, feeds, collect_stats=False).values["y"])

    return run


def activation_tensors(proto: onnx.ModelProto) -> list[str]:
    """Names of the float tensors of ``proto`` that depend on an input (what ``tensor_bits`` may name): the
    inputs and every float output of a node that reads one, in graph order."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    elem = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.input, *inferred.graph.value_info,
                                                            *inferred.graph.output]}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    live = [i.name for i in proto.graph.input]
    seen = set(live)
    for n in proto.graph.node:
        if any(i in seen for i in n.input):
            for o in n.output:
                seen.add(o)
                if elem.get(o) in floats:
                    live.append(o)
    return live


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    """log-softmax over the last axis in float64 (KL of nearly equal distributions needs the precision)."""
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def kl_per_token(ref_lp: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """KL(ref || row) per position from two log-probability arrays of the same shape (last axis = vocab)."""
    return (np.exp(ref_lp) * (ref_lp - lp)).sum(-1)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``b - a`` and its percentile bootstrap interval, resampling *units* (rows) with replacement.

    ``a`` and ``b`` are per-unit values of the two arms on the same units (e.g. per-sequence mean NLL of the
    float model and of a spiking variant): both arms get the same resample, which is what makes the
    interval paired -- the variation shared by both arms (hard vs easy text) cancels. A fixed seed makes
    every row of a table use the same resamples.
    """
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal 1-d arrays, got a difference of shape {d.shape}")
    idx = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(d.mean()), float(lo), float(hi)


def machine() -> str:
    """CPU model and core count, for a results file (``platform.processor()`` is empty on Linux)."""
    cpu = platform.processor()
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    return f"{platform.machine()} {cpu or platform.platform()}"
