"""Reading a model with its large weights kept out of the protobuf: peak compile memory near 1x the file.

``onnx.load`` holds the file's bytes and the parsed proto at once (2x); shape inference serializes and
re-parses it; an onnxruntime session built from serialized bytes holds two more copies. So the frontend
works on a *light* model whose large initializers carry no data, and reads the weights as arrays:

* a model file with inline weights (what exporters and ``onnxruntime.quantization`` write) is split at
  the protobuf wire level (:func:`split_file`): the file is memory-mapped, the light model is parsed
  from the file's bytes minus the large ``raw_data`` fields, whose initializers become external-data
  stubs pointing at their own bytes inside the original file. onnxruntime (calibration) reads them
  from there, and the lowering gets read-only ``np.memmap`` views -- no copy of the weights is made
  until the lowering quantizes them.
* anything else (a ``ModelProto``, a model with its own external data) goes through ``onnx.load`` and
  :func:`~lasercc.frontends.onnx.load.split_weights` (weights as arrays, stubs marked in memory).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from lasercc.errors import InputError
from lasercc.frontends.onnx.load import (
    SPLIT_ELEMENTS,
    check_model_path,
    check_names,
    external_location,
    load_model,
    split_weights,
)

# protobuf field numbers (onnx.proto3): ModelProto.graph, GraphProto.initializer, TensorProto.*
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_T_DIMS, _T_DATA_TYPE, _T_NAME, _T_RAW_DATA, _T_DATA_LOCATION = 1, 2, 8, 9, 14


@dataclass
class SplitModel:
    """A light model, its split-off initializers, and how onnxruntime finds their data."""

    model: onnx.ModelProto
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    in_memory: set[str] = field(default_factory=set)   # stubs onnxruntime must be handed as arrays
    external_dir: str | None = None                    # folder of the stubs' external-data file

    def release_pages(self) -> None:
        """Drop the memory-mapped weights' pages from this process's resident set.

        They are clean pages of a read-only file mapping, so the kernel re-reads them (from its page
        cache) if touched again: values never change, only the resident memory of weights already
        quantized stops counting. The lowering calls this as it goes (each weight is read about once).
        """
        for w in self.weights.values():
            m = getattr(w, "_mmap", None)
            if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                m.madvise(mmap.MADV_DONTNEED)


def drop_pages(a: object) -> None:
    """Drop the resident pages of the memory map behind array ``a`` (a no-op for ordinary arrays).

    Why: quantizing a large float table (an embedding) reads all of it; dropping the clean, file-backed
    pages chunk by chunk keeps the table's float copy from being resident next to its codes.
    """
    while a is not None:
        m = a if isinstance(a, mmap.mmap) else getattr(a, "_mmap", None)
        if m is not None:
            if hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                m.madvise(mmap.MADV_DONTNEED)
            return
        a = getattr(a, "base", None)


def _row_blocks(a: np.ndarray) -> range:
    step = max(1, (1 << 20) // max(1, int(np.prod(a.shape[1:]))))  # ~1M elements per block
    return range(0, max(len(a), 1), step)


def table_range(a: np.ndarray) -> tuple[float, float]:
    """(min, max) of a large constant, read in row blocks with :func:`drop_pages` after each."""
    if a.ndim == 0 or a.size == 0:
        return (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    lo, hi = np.inf, -np.inf
    blocks = _row_blocks(a)
    for i in blocks:
        blk = a[i:i + blocks.step]
        lo, hi = min(lo, float(blk.min())), max(hi, float(blk.max()))
        drop_pages(a)
    return lo, hi


def quantize_rows(a: np.ndarray, scale: float, zero_point: int, bits: int) -> np.ndarray:
    """``semantics.quant.quantize`` of a large table, in row blocks into the narrowest code dtype.

    Why: an embedding table is often the largest constant of a model; quantize's float and int64
    temporaries of the whole table, or its float pages left resident, would multiply its size
    (16-bit codes 0..65535 fit uint16: half an int32 table).
    """
    from lasercc.semantics.quant import quantize

    out = np.empty(a.shape, np.int16 if bits <= 15 else np.uint16 if bits == 16 else np.int32)
    if a.ndim == 0:
        out[...] = quantize(a, scale, zero_point, bits)
        return out
    blocks = _row_blocks(a)
    for i in blocks:
        out[i:i + blocks.step] = quantize(a[i:i + blocks.step], scale, zero_point, bits)
        drop_pages(a)
    return out


def quantize_columns(a: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-column quantization of a float [K, N] weight to ``bits`` (int64 codes in
    [-(2^(bits-1) - 1), 2^(bits-1) - 1], float32 scales), computed in row blocks.

    The arithmetic is that of the whole-matrix form (float64 ``rint(w / s)``, clipped), element for element;
    only the temporaries shrink: the whole-matrix form held four float64 copies of the weight (2 GB for a
    2048 x 32000 head, the peak of a billion-parameter compile), and a memory-mapped weight's float pages
    are dropped block by block (:func:`drop_pages`) instead of staying resident.
    """
    n = (1 << (bits - 1)) - 1
    m = np.zeros(a.shape[1:], np.float64)
    blocks = _row_blocks(a)
    for i in blocks:
        np.maximum(m, np.abs(np.asarray(a[i:i + blocks.step], np.float64)).max(axis=0, initial=0.0), out=m)
        drop_pages(a)
    s = np.where(m > 0, m / n, 1.0).astype(np.float32)
    s64 = s.astype(np.float64)
    q = np.empty(a.shape, np.int64)
    for i in blocks:
        blk = np.rint(np.asarray(a[i:i + blocks.step], np.float64) / s64)
        q[i:i + blocks.step] = np.clip(blk, -n, n, out=blk)
        drop_pages(a)
    return q, s


def load_split(model: str | os.PathLike | onnx.ModelProto) -> SplitModel:
    """The model with its large weights split off (see the module docstring)."""
    if not isinstance(model, onnx.ModelProto):
        p = Path(model)
        if not p.exists():
            raise InputError(f"no such ONNX model: {p}")
        try:
            split = split_file(p)
        except (ValueError, IndexError, KeyError):  # not parseable at wire level: let onnx.load judge it
            split = None
        if split is None:
            split = map_external(p)  # the model keeps its weights in external-data files
        if split is not None:
            return split
    light, weights = split_weights(load_model(model))
    return SplitModel(light, weights, set(weights))


def map_external(path: Path) -> SplitModel | None:
    """A model whose weights are in external-data files: the light model is the ``.onnx`` file itself, and
    each large external initializer becomes a read-only ``np.memmap`` of its bytes in the data file.

    Why: a model over 2 GB must keep its weights outside the protobuf; reading them (``onnx.load``, or
    :func:`~lasercc.frontends.onnx.load.load_external_data`) put the whole float file in memory, twice
    with the split that followed. Mapped, a weight's pages are read when the lowering quantizes it and
    dropped after (:meth:`SplitModel.release_pages`), so the float weights are never all resident; the
    stubs keep their locations, and onnxruntime (calibration) reads the same files. Small external
    initializers (shapes, scales) are read into the proto: shape inference and folding need their values.
    """
    p = check_model_path(path)
    try:
        light = onnx.load(str(p), load_external_data=False)
    except Exception:  # noqa: BLE001 - let load_model produce the error message
        return None
    check_names(light)
    weights: dict[str, np.ndarray] = {}
    for t in light.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        f, offset, length = external_location(t, p)
        n = int(np.prod(t.dims))
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
        except (KeyError, ValueError, TypeError):
            dtype = None
        nbytes = n * dtype.itemsize if dtype is not None else -1
        if dtype is not None and dtype.kind in "fiub" and n >= SPLIT_ELEMENTS and length in (None, nbytes) \
                and offset + nbytes <= f.stat().st_size:
            weights[t.name] = np.memmap(f, dtype=dtype.newbyteorder("<"), mode="r", offset=offset,
                                        shape=tuple(t.dims))
            continue
        try:
            with open(f, "rb") as fh:
                fh.seek(offset)
                t.raw_data = fh.read(length if length is not None else -1)
        except OSError as e:
            raise InputError(f"initializer {t.name!r}: cannot read its external data {f}: {e.strerror or e}") from None
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
    return SplitModel(light, weights, set(), str(p.parent))


def split_file(path: Path) -> SplitModel | None:
    """Wire-level split of an ONNX file with inline weights; None when it has external data of its own."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError("empty file")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        out = bytearray()
        stubs: list[tuple[str, np.dtype, tuple[int, ...], int, int]] = []
        for fn, wt, a, b, rec in _fields(mm, 0, size):
            if fn == _MODEL_GRAPH and wt == 2:
                graph = _split_graph(mm, a, b, stubs)
                if graph is None:
                    return None
                out += _key(_MODEL_GRAPH, 2) + _varint_bytes(len(graph)) + graph
            else:
                out += mm[rec:b]
    finally:
        mm.close()
    try:
        light = onnx.ModelProto.FromString(bytes(out))
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ValueError(f"not an ONNX model: {e}") from None
    weights = {}
    by_name = {t.name: t for t in light.graph.initializer}
    for name, dtype, dims, offset, length in stubs:
        t = by_name[name]
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", path.name), ("offset", str(offset)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v
        weights[name] = np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", offset=offset,
                                  shape=dims)
    return SplitModel(light, weights, set(), str(path.resolve().parent))


def _split_graph(mm: mmap.mmap, start: int, end: int, stubs: list) -> bytearray | None:
    g = bytearray()
    for fn, wt, a, b, rec in _fields(mm, start, end):
        if fn == _GRAPH_INITIALIZER and wt == 2:
            t = _tensor_stub(mm, a, b, stubs)
            if t is None:
                return None
            g += t if isinstance(t, bytearray) else mm[rec:b]
        else:
            g += mm[rec:b]
    return g


def _tensor_stub(mm: mmap.mmap, start: int, end: int, stubs: list) -> bytearray | bool | None:
    """The initializer record without its raw data (and the stub's facts), True to keep it as it is,
    None when the model uses external data itself (the caller falls back to onnx.load)."""
    raw = None
    name, data_type, dims = "", 0, []
    for fn, wt, a, b, _ in _fields(mm, start, end):
        if fn == _T_DATA_LOCATION and _varint(mm, a)[0] == onnx.TensorProto.EXTERNAL:
            return None
        if fn == _T_RAW_DATA and wt == 2:
            raw = (a, b)
        elif fn == _T_NAME and wt == 2:
            name = bytes(mm[a:b]).decode()
        elif fn == _T_DATA_TYPE and wt == 0:
            data_type = _varint(mm, a)[0]
        elif fn == _T_DIMS:
            dims.extend(_ints(mm, a, b, wt))
    if raw is None or int(np.prod(dims)) < SPLIT_ELEMENTS:
        return True
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    except (KeyError, ValueError, TypeError):
        return True
    if dtype.kind not in "fiub" or dtype.itemsize * int(np.prod(dims)) != raw[1] - raw[0]:
        return True  # bfloat16 / float8 / packed 4-bit and the like: keep inline
    body = bytearray()
    for fn, _wt, _a, b, rec in _fields(mm, start, end):
        if fn != _T_RAW_DATA:
            body += mm[rec:b]
    stubs.append((name, dtype, tuple(dims), raw[0], raw[1] - raw[0]))
    return bytearray(_key(_GRAPH_INITIALIZER, 2) + _varint_bytes(len(body))) + body


# ---- protobuf wire format --------------------------------------------------------------------------


def _varint(buf, pos: int) -> tuple[int, int]:  # noqa: ANN001 - bytes-like
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _varint_bytes(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field_no: int, wire_type: int) -> bytes:
    return _varint_bytes((field_no << 3) | wire_type)


def _fields(buf, start: int, end: int):  # noqa: ANN001, ANN202 - yields (field, wire type, a, b, record start)
    """Every field record in buf[start:end]: its value spans [a, b) (for varints: the varint's bytes)."""
    pos = start
    while pos < end:
        rec = pos
        key, pos = _varint(buf, pos)
        fn, wt = key >> 3, key & 7
        if wt == 0:
            _, b = _varint(buf, pos)
        elif wt == 1:
            b = pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            b = pos + n
        elif wt == 5:
            b = pos + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if b > end:
            raise ValueError("truncated field")
        yield fn, wt, pos, b, rec
        pos = b


def _ints(buf, a: int, b: int, wt: int) -> list[int]:  # noqa: ANN001
    """int64 values of a repeated varint field (packed or not); two's complement for negatives."""
    vals = []
    if wt == 2:
        pos = a
        while pos < b:
            v, pos = _varint(buf, pos)
            vals.append(v)
    else:
        vals.append(_varint(buf, a)[0])
    return [v - (1 << 64) if v >= 1 << 63 else v for v in vals]
