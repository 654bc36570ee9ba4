"""float16 / bfloat16 models are widened to float32 on import.

Why: codes carry real values; the IR has no float types at all, and calibration and lowering reason in
float32 (onnxruntime lacks many float16 / bfloat16 kernels, onnx.reference computes them slowly). A model
exported in half precision -- fully, or by ``onnxconverter_common.convert_float_to_float16`` with
``keep_io_types=True`` (Cast nodes to/from float16 around a float16 body, float16 initializers) -- is
rewritten in place, before anything else reads it:

* initializers (inline, split off, ``Constant`` / ``ConstantOfShape`` tensors, any tensor attribute) become
  float32 with the same values (every float16 / bfloat16 value is exactly a float32);
* graph inputs, outputs and value infos of those types are declared float32;
* ``Cast`` (and the ``dtype`` attribute of generating ops) to float16 / bfloat16 becomes float32. A Cast to
  float16 in the middle of a graph rounds its values to float16 in the original model; here it is a no-op
  Cast to float32, so the compiled model computes that tensor at float32 precision (codes are coarser than
  float16 at 8 and 16 bits anyway). The compile info names every such Cast (``info["notes"]``).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from lasercc.frontends.onnx.load import FrontendError

HALF = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}
FLOAT = onnx.TensorProto.FLOAT
_DTYPE_ATTRS = {"to", "dtype", "output_dtype"}  # integer attributes that name an element type


def _widen_tensor(t: onnx.TensorProto, weights: dict[str, np.ndarray] | None = None,
                  in_memory: set[str] | None = None, location: str = "") -> bool:
    if t.data_type not in HALF:
        return False
    if t.data_location == onnx.TensorProto.EXTERNAL:
        if weights is None or t.name not in weights:
            return False  # external data we do not hold: left to onnx's own loading (not our split)
        arr = np.asarray(weights[t.name]).astype(np.float32)
        weights[t.name] = arr
        if in_memory is not None:
            in_memory.add(t.name)
        t.data_type = FLOAT
        del t.external_data[:]
        for k, v in (("location", location), ("offset", "0"), ("length", str(arr.nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        return True
    try:
        arr = numpy_helper.to_array(t).astype(np.float32)
    except (ValueError, TypeError) as e:  # dims that disagree with the data: a malformed file, not a bug
        raise FrontendError(f"initializer {t.name!r}: its dims {list(t.dims)} do not match its data ({e})") from None
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return True


def _widen_type(tp: onnx.TypeProto) -> bool:
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        if tp.tensor_type.elem_type in HALF:
            tp.tensor_type.elem_type = FLOAT
            return True
        return False
    if which == "sequence_type":
        return _widen_type(tp.sequence_type.elem_type)
    if which == "optional_type":
        return _widen_type(tp.optional_type.elem_type)
    return False


def _widen_graph(g: onnx.GraphProto, notes: list[str], weights: dict | None, in_memory: set | None,
                 location: str, outer: bool) -> int:
    changed = 0
    for t in g.initializer:
        changed += _widen_tensor(t, weights if outer else None, in_memory, location)
    for vi in [*g.input, *g.output, *g.value_info]:
        changed += _widen_type(vi.type)
    io = {vi.name for vi in g.input} | {vi.name for vi in g.output}
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                changed += _widen_tensor(a.t)
            elif a.type == onnx.AttributeProto.TENSORS:
                for t in a.tensors:
                    changed += _widen_tensor(t)
            elif a.type == onnx.AttributeProto.GRAPH:
                changed += _widen_graph(a.g, notes, None, None, location, False)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    changed += _widen_graph(sg, notes, None, None, location, False)
            elif a.type == onnx.AttributeProto.INT and a.name in _DTYPE_ATTRS and a.i in HALF:
                kind = HALF[a.i]
                a.i = FLOAT
                changed += 1
                if n.op_type == "Cast" and n.domain in ("", "ai.onnx") and not (set(n.output) & io) \
                        and not (set(n.input) & io):
                    notes.append(f"Cast {n.name or n.output[0]!r} to {kind} became a no-op Cast to float32 "
                                 "(the model is widened to float32; that tensor keeps float32 precision)")
    return changed


def widen_half(model: onnx.ModelProto, weights: dict[str, np.ndarray] | None = None,
               in_memory: set[str] | None = None, location: str = "") -> list[str]:
    """Rewrite ``model`` (in place) from float16 / bfloat16 to float32; return notes for the compile info.

    ``weights`` / ``in_memory`` / ``location``: the split-off initializers (:mod:`weights`); a half-precision
    one is converted in the dict and its stub re-pointed at ``location`` (handed to onnxruntime from memory).
    """
    notes: list[str] = []
    changed = _widen_graph(model.graph, notes, weights, in_memory, location, True)
    for f in model.functions:
        for n in f.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    changed += _widen_tensor(a.t)
                elif a.type == onnx.AttributeProto.INT and a.name in _DTYPE_ATTRS and a.i in HALF:
                    a.i = FLOAT
                    changed += 1
    if changed:
        notes.insert(0, "float16/bfloat16 model widened to float32 on import (initializers, inputs, outputs, "
                        "Cast targets): calibration and lowering see float32")
    return notes
