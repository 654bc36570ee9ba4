"""Loading an ONNX model for lowering: external data, pinned input shapes, shape inference.

Exporters leave dimensions symbolic (``batch``, ``seq``); the spiking IR has static shapes, so the
user pins them (``input_shapes={'ids': (1, 16)}`` / ``--input-shape ids=1,16``). Shape subgraphs
(Shape -> Gather -> Concat -> Reshape) are then constant and are folded during lowering, node by
node, with ``onnx.reference`` (see ``lower.py``); ``onnx.shape_inference`` supplies element types
for every intermediate tensor, which the calibration run needs to expose them as outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from lasercc.errors import InputError, LasercError


class FrontendError(LasercError):
    """The ONNX model cannot be compiled (unsupported ops, bad shapes, malformed model)."""


def check_model_path(model: str | os.PathLike) -> Path:
    """The model file, or a one-line error: missing, a directory, empty, unreadable."""
    if not str(model).strip():
        raise InputError("the ONNX model path is empty")
    p = Path(model)
    if not p.exists():
        raise InputError(f"no such ONNX model: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not an ONNX model file")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise InputError(f"{p}: empty file, not an ONNX model")
    return p


def load_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Read a model (external-data weights are loaded from beside the file)."""
    if isinstance(model, onnx.ModelProto):
        return model
    p = check_model_path(model)
    try:
        m = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises many kinds (DecodeError, OSError...)
        raise InputError(f"{p}: cannot read as ONNX ({type(e).__name__}: {e})") from None
    check_names(m)
    load_external_data(m, p)
    return m


def load_external_data(model: onnx.ModelProto, model_path: Path) -> None:
    """Read external-data initializers into the model, from files beside ``model_path`` *as named*.

    Why not onnx's loader: it refuses a data file that is a symbolic link, and resolves the model's own
    symlink first -- so the Hugging Face cache layout (``snapshots/REV/model.onnx`` and
    ``model.onnx_data``, both links into ``blobs/`` under hashed names) failed ("... but it is a symbolic
    link" / "External data path validation failed"). Here a location is resolved against the directory
    of the path the user gave; links inside that directory are followed (the user chose that folder),
    while a location that is absolute or climbs out of it (``..``) is refused: the model file cannot
    make lasercc read arbitrary files.
    """
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        f, offset, length = external_location(t, model_path)
        try:
            with open(f, "rb") as fh:
                fh.seek(offset)
                data = fh.read(length if length is not None else -1)
        except OSError as e:
            raise InputError(f"initializer {t.name!r}: cannot read its external data {f}: "
                             f"{e.strerror or e}") from None
        t.raw_data = data
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT


def external_location(t: onnx.TensorProto, model_path: Path) -> tuple[Path, int, int | None]:
    """(file, offset, length or None for "to the end") of an external-data initializer, checked: the
    location is a file name relative to the model's folder (absolute paths and ``..`` refused, so a
    model file cannot make lasercc read arbitrary files) and the range lies inside the file."""
    import os.path

    base = model_path.parent
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    norm = os.path.normpath(loc) if loc else ""
    if not loc or os.path.isabs(loc) or norm.startswith("..") or "\0" in loc:
        raise FrontendError(f"initializer {t.name!r}: external data location {loc!r} must be a file name "
                            f"relative to the model's folder {base}")
    f = base / norm
    try:
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise FrontendError(f"initializer {t.name!r}: bad external data offset/length {info}") from None
    if offset < 0 or (length is not None and length < 0):
        raise FrontendError(f"initializer {t.name!r}: negative external data offset/length {info}")
    try:
        size = f.stat().st_size
    except OSError as e:
        raise InputError(f"initializer {t.name!r}: cannot read its external data {f}: {e.strerror or e}") from None
    if offset > size or (length is not None and offset + length > size):
        raise FrontendError(f"initializer {t.name!r}: external data {f} has {size:,} bytes, the model asks "
                            f"for {length if length is not None else 'the rest'} at offset {offset:,}")
    return f, offset, length


def check_names(model: onnx.ModelProto) -> None:
    """Every tensor and node name must be UTF-8: protobuf parses invalid bytes in string fields and raises
    UnicodeDecodeError only when the field is read, deep inside a later step."""
    try:
        g = model.graph
        for vi in (*g.input, *g.output, *g.value_info):
            vi.name  # noqa: B018 - reading the field is the check
        for t in g.initializer:
            t.name  # noqa: B018
        for n in g.node:
            n.name, n.op_type, n.domain, list(n.input), list(n.output)  # noqa: B018
            for a in n.attribute:
                a.name  # noqa: B018
    except UnicodeDecodeError as e:
        raise FrontendError(f"the model holds a name that is not valid UTF-8 ({e.reason} at byte {e.start})") from None


def tensor_array(t: onnx.TensorProto, what: str = "initializer") -> np.ndarray:
    """``numpy_helper.to_array`` with the tensor named when its proto is malformed (dims that disagree
    with the data, an unknown data type, negative or absurd dims): such files exist (fuzzed, truncated
    or hand-edited models) and must fail as input errors, not as NumPy's ValueError."""
    from lasercc.limits import check_elements

    try:
        np_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    except (KeyError, ValueError, TypeError):
        raise FrontendError(f"{what} {t.name!r}: unknown ONNX data type {t.data_type}") from None
    if any(d < 0 for d in t.dims):
        raise FrontendError(f"{what} {t.name!r}: negative dimension in dims {list(t.dims)}")
    n = 1
    for d in t.dims:
        n *= int(d)
    check_elements(n, f"{what} {t.name!r} (dims {list(t.dims)})")
    try:
        arr = numpy_helper.to_array(t)
    except MemoryError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:  # onnx / NumPy on malformed data
        raise FrontendError(f"{what} {t.name!r} ({np_dtype}, dims {list(t.dims)}) is malformed: "
                            f"{type(e).__name__}: {e}") from None
    if arr.size != n:
        raise FrontendError(f"{what} {t.name!r}: dims {list(t.dims)} ({n} elements) disagree with its data "
                            f"({arr.size} elements)")
    return arr


def check_weights_finite(model: onnx.ModelProto, weights: dict[str, np.ndarray] | None = None) -> None:
    """Refuse NaN in any float initializer and infinity in a MatMul/Gemm weight, naming the tensor.

    Why: quantizing a NaN weight gives INT64_MIN in a constant (each backend then prints different codes)
    and an infinite one an infinite scale. Infinity elsewhere (``-inf`` additive attention masks) is legal.
    Large tables are scanned in row blocks so the check does not copy them.
    """
    check_names(model)
    weight_inputs = {n.input[1] for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1}
    weight_inputs |= {n.input[0] for n in model.graph.node if n.op_type == "Gemm" and n.input}
    split = weights or {}
    for t in model.graph.initializer:
        if t.name in split or t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                           onnx.TensorProto.BFLOAT16):
            _check_finite(t.name, tensor_array(t), t.name in weight_inputs)
    for name, arr in split.items():
        if np.asarray(arr).dtype.kind == "f":
            _check_finite(name, arr, name in weight_inputs)


def _check_finite(name: str, a: np.ndarray, is_weight: bool) -> None:
    flat = a.reshape(-1) if a.ndim else a.reshape(1)
    step = 1 << 22
    for i in range(0, flat.size, step):
        blk = np.asarray(flat[i:i + step], dtype=np.float32 if a.dtype.itemsize <= 4 else np.float64)
        if np.isnan(blk).any():
            at = i + int(np.flatnonzero(np.isnan(blk))[0])
            idx = tuple(int(j) for j in np.unravel_index(at, a.shape)) if a.ndim else ()
            raise FrontendError(f"initializer {name!r} holds NaN (first at index {list(idx)}); the model's weights "
                                "are corrupt -- re-export or fix them")
        if is_weight and np.isinf(blk).any():
            at = i + int(np.flatnonzero(np.isinf(blk))[0])
            idx = tuple(int(j) for j in np.unravel_index(at, a.shape)) if a.ndim else ()
            raise FrontendError(f"initializer {name!r} holds infinity (first at index {list(idx)}) and is a "
                                "MatMul/Gemm weight; weights must be finite")


def parse_shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    """``name=1,16`` -> ('name', (1, 16)); anything else is a one-line error."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip() != "")
    except ValueError:
        shape = ()
    if not sep or not name.strip() or not shape or any(d <= 0 for d in shape):
        raise InputError(f"bad --input-shape {text!r}: expected NAME=D1,D2,... with positive integers (e.g. ids=1,16)")
    return name.strip(), shape


def initializer_names(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real graph inputs (old exporters also list initializers as inputs)."""
    inits = initializer_names(model)
    return [i for i in model.graph.input if i.name not in inits]


def pin_shapes(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None,
               copy: bool = True) -> onnx.ModelProto:
    """The model with every graph input's shape fixed (a copy unless ``copy=False``: a model we loaded
    ourselves is edited in place, which keeps peak memory near one copy of the weights)."""
    if copy:
        m = onnx.ModelProto()
        m.CopyFrom(model)
    else:
        m = model
    shapes = dict(input_shapes or {})
    ins = graph_inputs(m)
    known = {i.name for i in ins}
    unknown = sorted(set(shapes) - known)
    if unknown:
        raise InputError(f"--input-shape names unknown input(s) {', '.join(unknown)}; the model's inputs are "
                         + ", ".join(sorted(known)))
    missing = []
    for vi in ins:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in shapes:
            want = shapes[vi.name]
            if len(want) != len(dims):
                raise InputError(f"--input-shape {vi.name}: rank {len(want)} given, the model's input has rank "
                                 f"{len(dims)} ({_dims_str(dims)})")
            for d, w in zip(dims, want):
                if d.HasField("dim_value") and d.dim_value != w:
                    raise InputError(f"--input-shape {vi.name}: dimension {d.dim_value} is fixed in the model, "
                                     f"got {w}")
                d.Clear()
                d.dim_value = int(w)
        elif any(not d.HasField("dim_value") or d.dim_value < 0 for d in dims):  # 0: a zero-size tensor
            missing.append(f"{vi.name} [{_dims_str(dims)}]")
    if missing:
        raise InputError(f"dynamic dimensions must be pinned: {'; '.join(missing)}; pass --input-shape "
                         f"NAME=D1,D2,... (Python: input_shapes={{'name': (1, 16)}})")
    from lasercc.limits import check_elements

    for vi in ins:  # before anything allocates by these shapes (calibration data, the graph's types)
        tt = vi.type.tensor_type
        try:
            onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        except (KeyError, ValueError, TypeError):
            raise FrontendError(f"graph input {vi.name!r}: unsupported element type {tt.elem_type}") from None
        n = 1
        for d in tt.shape.dim:
            n *= max(int(d.dim_value), 0)
        check_elements(n, f"graph input {vi.name!r} of shape [{_dims_str(tt.shape.dim)}]")
    # outputs and value_info may carry stale symbolic dims; inference recomputes them
    for vi in list(m.graph.value_info):
        m.graph.value_info.remove(vi)
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    try:
        m = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is a help (dtypes for calibration), not a requirement
        pass
    return m


def _dims_str(dims) -> str:  # noqa: ANN001
    return ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def input_specs(model: onnx.ModelProto) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    out = {}
    for vi in graph_inputs(model):
        tt = vi.type.tensor_type
        out[vi.name] = (onnx_dtype(tt.elem_type, f"graph input {vi.name!r}"), tuple(d.dim_value for d in tt.shape.dim))
    return out


def initializers(model: onnx.ModelProto, weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every initializer as an array: the proto's own data, and ``weights`` for those split off."""
    out = {i.name: tensor_array(i) for i in model.graph.initializer if not weights or i.name not in weights}
    out.update(weights or {})
    return out


# Initializers with at least this many elements leave the proto (see split_weights); smaller ones
# (shape tensors, scales, zero points) stay, since shape inference and folding read their values.
SPLIT_ELEMENTS = 1024
IN_MEMORY = "lasercc-in-memory"  # external-data location of a split-off initializer (never a file)


def split_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``model`` without the data of its large initializers, and those initializers as arrays.

    Why: the weights are the whole size of a model, and every whole-model step copies them -- onnx
    shape inference serializes and re-parses the model, onnxruntime parses serialized bytes. On the
    light copy those steps cost kilobytes; the weights exist once, as NumPy arrays, which the
    calibration session borrows (``SessionOptions.add_external_initializers``) and the lowering
    reads. A split-off initializer keeps its name, type and dims and is marked as external data
    at the location :data:`IN_MEMORY`, so ONNX tooling sees a well-formed model. ``model`` itself
    is not modified.
    """
    try:
        return _split_weights(model)
    except UnicodeDecodeError as e:  # a name with invalid UTF-8 bytes, read while copying (see check_names)
        raise FrontendError(f"the model holds a name that is not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _split_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    g, lg = model.graph, light.graph
    _copy_fields(g, lg, skip="initializer")
    weights: dict[str, np.ndarray] = {}
    for t in g.initializer:
        if int(np.prod(t.dims)) < SPLIT_ELEMENTS or t.data_location == onnx.TensorProto.EXTERNAL:
            lg.initializer.append(t)
            continue
        arr = tensor_array(t)
        weights[t.name] = np.ascontiguousarray(arr)
        stub = lg.initializer.add()
        stub.name, stub.data_type = t.name, t.data_type
        stub.dims.extend(t.dims)
        stub.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", IN_MEMORY), ("offset", "0"), ("length", str(arr.nbytes))):
            e = stub.external_data.add()
            e.key, e.value = k, v
    return light, weights


def _copy_fields(src, dst, skip: str) -> None:  # noqa: ANN001 - protobuf messages
    """Copy the set fields of ``src`` into ``dst`` except ``skip`` (no deep copy of the skipped one)."""
    for fd, v in src.ListFields():
        if fd.name == skip:
            continue
        if isinstance(v, (list, tuple)) or hasattr(v, "extend"):
            getattr(dst, fd.name).extend(v)
        elif fd.message_type is not None:
            getattr(dst, fd.name).CopyFrom(v)
        else:
            setattr(dst, fd.name, v)


_INT_OUT = {"Shape": np.int64, "Size": np.int64, "MatMulInteger": np.int32, "ConvInteger": np.int32,
            "ArgMax": np.int64, "ArgMin": np.int64, "NonZero": np.int64}
# com.microsoft ops whose outputs do not all have their first input's type (inputs are token ids)
_CONTRIB_OUT = {"EmbedLayerNormalization": (np.float32, np.int32, np.float32),  # outputs whose type is not the
                "QEmbedLayerNormalization": (np.float32, np.int32),          # first input's (integer codes in)
                "QAttention": (np.float32, np.float32), "MatMulIntegerToFloat": (np.float32,)}
_BOOL_OUT = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"}
_QOUT = {"QuantizeLinear", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearSoftmax",
         "QLinearConcat", "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearReduceMean"}


def onnx_dtype(elem_type: int, what: str) -> np.dtype:
    """The NumPy dtype of an ONNX element type, or a FrontendError naming ``what`` (fuzzed and hand-edited
    models carry unknown type numbers; onnx raises a bare KeyError for them)."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        raise FrontendError(f"{what}: unknown ONNX element type {elem_type}") from None


def tensor_dtypes(model: onnx.ModelProto) -> dict[str, np.dtype]:
    """Element type of every tensor: shape inference where it answered, simple rules elsewhere
    (onnx does not infer com.microsoft ops, nor what follows them)."""
    types: dict[str, np.dtype] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        et = vi.type.tensor_type.elem_type
        if et:
            types[vi.name] = onnx_dtype(et, f"tensor {vi.name!r}")
    for i in model.graph.initializer:
        types[i.name] = onnx_dtype(i.data_type, f"initializer {i.name!r}")
    for n in model.graph.node:
        for k, o in enumerate(n.output):
            if not o or o in types:
                continue
            ins = [types.get(i) for i in n.input if i]
            if n.op_type in _CONTRIB_OUT and k < len(_CONTRIB_OUT[n.op_type]):
                types[o] = np.dtype(_CONTRIB_OUT[n.op_type][k])
            elif n.op_type in _INT_OUT:
                types[o] = np.dtype(_INT_OUT[n.op_type])
            elif n.op_type in _BOOL_OUT:
                types[o] = np.dtype(bool)
            elif n.op_type == "DequantizeLinear":
                types[o] = np.dtype(np.float32)
            elif n.op_type == "Cast":
                to = next((a.i for a in n.attribute if a.name == "to"), None)
                if to is None:
                    raise FrontendError(f"Cast node {n.name or o!r} has no 'to' attribute")
                types[o] = onnx_dtype(to, f"Cast node {n.name or o!r} (to)")
            elif n.op_type in _QOUT:
                last = n.input[-1] if n.input else ""
                zp = n.input[2] if n.op_type == "QuantizeLinear" and len(n.input) > 2 else last
                types[o] = types.get(zp, np.dtype(np.uint8)) if n.op_type != "QLinearConcat" else \
                    types.get(n.input[1], np.dtype(np.uint8))
            elif n.op_type == "DynamicQuantizeLinear":
                types[o] = np.dtype(np.uint8) if k != 1 else np.dtype(np.float32)
            elif n.op_type == "Constant":
                t = next((a for a in n.attribute if a.name == "value"), None)
                types[o] = onnx_dtype(t.t.data_type, f"Constant node {n.name or o!r}") if t else np.dtype(np.float32)
            else:
                types[o] = next((t for t in ins if t is not None), np.dtype(np.float32))
    return types
