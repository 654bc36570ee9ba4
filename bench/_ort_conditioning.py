"""How well a quantized ONNX file's own output is determined by its arithmetic: onnxruntime against itself.

Why: "lasercc tracks onnxruntime running the same file" is only a meaningful target if onnxruntime's answer does
not hinge on float32 rounding noise. A quantizer (QuantizeLinear, DynamicQuantizeLinear, the quantizing input of
DynamicQuantizeMatMul) turns a float into a code by rounding; a value that lands within a few ulps of a rounding
boundary flips by one code under any other float32 implementation of the float ops before it (another reduction
order, vector width, exp/erf approximation -- onnxruntime's own MLAS kernels differ between CPUs). A well-scaled
file absorbs such flips; an ill-conditioned one (coarse steps on outliers feeding many later quantizers) amplifies
them layer by layer until the output is decided by rounding noise. This module measures which kind a file is:
every float value entering a quantizer is multiplied by ``1 + eps`` (default ``2**-20``, about 8 float32 ulps,
smaller than the difference between two float32 dot products of a few hundred terms summed in different orders)
and onnxruntime runs the original and the perturbed file with graph optimisations off. The cosine between the
two is the best any implementation that is not bit-identical to onnxruntime's kernels can be held to.

Used by ``bench/ort_fused_quant.py`` and ``bench/hf_zoo.py`` (the "ORT vs ORT ×(1+2^-20)" columns).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

EPS = 2.0 ** -20
# op type -> index of the float input it rounds into codes
QUANTIZER_INPUTS = {"QuantizeLinear": 0, "DynamicQuantizeLinear": 0, "DynamicQuantizeMatMul": 0}


def perturb_quantizer_inputs(model: onnx.ModelProto, eps: float = EPS) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` in which every run-time float tensor entering a quantizer is first multiplied by
    ``1 + eps``; also the number of quantizer inputs perturbed. Constants (initializers) are left alone: a weight's
    codes are the file's, not arithmetic."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    consts = {i.name for i in out.graph.initializer}
    consts |= {o for n in out.graph.node if n.op_type == "Constant" for o in n.output}
    factor = "_ort_conditioning_factor"
    out.graph.initializer.append(numpy_helper.from_array(np.array(1.0 + eps, np.float32), factor))
    nodes: list[onnx.NodeProto] = []
    count = 0
    for n in out.graph.node:
        k = QUANTIZER_INPUTS.get(n.op_type)
        if k is not None and len(n.input) > k and n.input[k] and n.input[k] not in consts:
            moved = f"{n.input[k]}_ort_conditioning_{count}"
            nodes.append(helper.make_node("Mul", [n.input[k], factor], [moved], name=f"_ort_conditioning_{count}"))
            n.input[k] = moved
            count += 1
        nodes.append(n)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, count


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
