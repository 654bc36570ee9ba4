"""Is a quantized ONNX file's output decided by its arithmetic, or by float32 rounding noise?

Why: "the artifact tracks onnxruntime running the same file" is a fair test only if onnxruntime's own answer does
not hinge on the last bits of its float kernels. A quantizer (QuantizeLinear, DynamicQuantizeLinear, the quantizing
input of com.microsoft DynamicQuantizeMatMul) rounds a float to a code; a value within a few ulps of a rounding
boundary flips by one code under any other float32 implementation of the float ops before it (another summation
order or vector width, another exp/erf approximation -- onnxruntime's own kernels differ between CPUs). A
well-scaled file absorbs such flips; an ill-conditioned one (coarse steps on outlier channels feeding many later
quantizers) amplifies them layer by layer until its output is decided by rounding noise, and no compiler can be
held closer to onnxruntime than onnxruntime is to itself under that noise.

The measure: every run-time float entering a quantizer is multiplied by ``1 + EPS`` (``2**-20``, about 8 float32
ulps -- less than two float32 dot products of a few hundred terms summed in different orders differ by) and
onnxruntime runs the perturbed file beside the original, both with graph optimisations off. ``simulate
--compare-onnx`` reports the cosine between the two as "onnxruntime vs itself" for every output of a file that
quantizes at run time; ``bench/_ort_conditioning.py`` and the zoo benches use it per file.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

EPS = 2.0 ** -20
# op type -> index of the float input it rounds into codes at run time
QUANTIZER_INPUTS = {"QuantizeLinear": 0, "DynamicQuantizeLinear": 0, "DynamicQuantizeMatMul": 0}
# below this cosine of onnxruntime against its perturbed self, a file is reported as ill-conditioned: the issue's
# goal for a quantized file compiled as it is (0.995) is beneath the file's own rounding noise
WELL_CONDITIONED = 0.995


def perturb_quantizer_inputs(model: onnx.ModelProto, eps: float = EPS) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` in which every run-time float tensor entering a quantizer is first multiplied by
    ``1 + eps``, and the number of quantizer inputs so perturbed (0: nothing rounds at run time, the file is
    exactly determined by its inputs). Constants (initializers, Constant nodes) are left alone: a weight's codes
    are the file's, not arithmetic. Subgraphs (If/Loop bodies) are not entered."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    consts = {i.name for i in out.graph.initializer}
    consts |= {o for n in out.graph.node if n.op_type == "Constant" for o in n.output}
    factor = "_lasercc_conditioning_factor"
    nodes: list[onnx.NodeProto] = []
    count = 0
    for n in out.graph.node:
        k = QUANTIZER_INPUTS.get(n.op_type)
        if k is not None and len(n.input) > k and n.input[k] and n.input[k] not in consts:
            moved = f"{n.input[k]}_lasercc_conditioning_{count}"
            nodes.append(helper.make_node("Mul", [n.input[k], factor], [moved], name=f"_lasercc_conditioning_{count}"))
            n.input[k] = moved
            count += 1
        nodes.append(n)
    if count:
        out.graph.initializer.append(numpy_helper.from_array(np.array(1.0 + eps, np.float32), factor))
        del out.graph.node[:]
        out.graph.node.extend(nodes)
    return out, count
