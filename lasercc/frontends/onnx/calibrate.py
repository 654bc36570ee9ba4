"""Calibration: the real values of float tensors, observed by running the model in onnxruntime.

When onnxruntime cannot run the whole model (an op, opset or dtype it lacks), the model is evaluated node
by node instead (:class:`NodeRunner`): each node in onnxruntime where it can, ``onnx.reference`` where it
cannot; the compile info says which nodes (``info["notes"]``).

The IR has no float tensors, so every float tensor that the model does not quantize itself (a float
model's activations, float islands such as LayerNormalization or Erf inside a QDQ model) needs a
code type. We run the ONNX model in onnxruntime with those tensors exposed as extra graph outputs
(graph optimisations off, so nothing is fused away) and record, per tensor, the min/max over all
calibration rows (the MinMax rule of ``onnxruntime.quantization``). For a few tensors the lowering
needs the values themselves (inputs of Softmax / LayerNorm decompositions, whose internal ranges are
computed by running the float decomposition on them, and ASNC inputs, whose code histograms are
stored): those are kept for the first ``keep_rows`` rows. For the tensors the outlier recipe asks about
(``channels``: normalisation outputs that SmoothQuant may smooth, summands of the residual stream) the
min/max is also kept per channel (the last axis), which is what finds *systematic* outlier channels.

Without calibration data we generate it (:func:`default_calibration`): standard-normal floats and
uniform token ids below the embedding size, 16 rows, seed 0 -- and warn, because ranges from random
inputs can be far from real ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from lasercc.errors import InputError
from lasercc.frontends.onnx.evaluators import REFERENCE_ERRORS, ort_errors
from lasercc.frontends.onnx.weights import drop_pages
from lasercc.ir.data import widen_float

DEFAULT_ROWS = 16
KEEP_ROWS = 8
DEGENERATE_ABS = 1e30  # a calibration input beyond this magnitude is not data (3e38 gave absurd scales silently)


@dataclass
class Stats:
    lo: dict[str, float] = field(default_factory=dict)
    hi: dict[str, float] = field(default_factory=dict)
    kept: dict[str, list[np.ndarray]] = field(default_factory=dict)
    rows: int = 0
    generated: bool = False
    notes: list[str] = field(default_factory=list)  # how calibration ran where it departed from one onnxruntime run
    asked: set[str] = field(default_factory=set)  # every name values() was called with (tests check coverage)
    nan_values: dict[str, int] = field(default_factory=dict)  # NaN elements per tensor, left out of its range
    ch_lo: dict[str, np.ndarray] = field(default_factory=dict)  # per-channel (last axis) min, where asked for
    ch_hi: dict[str, np.ndarray] = field(default_factory=dict)

    def range(self, name: str) -> tuple[float, float] | None:
        if name not in self.lo:
            return None
        return self.lo[name], self.hi[name]

    def values(self, name: str) -> np.ndarray | None:
        """Kept rows of ``name`` as one array; the per-row list is replaced by it, so the rows are not
        held twice (list + concatenation) and a second call makes no new copy."""
        self.asked.add(name)
        v = self.kept.get(name)
        if not v:
            return None
        if len(v) > 1:
            v[:] = [np.concatenate(v, axis=0)]
        v[0].flags.writeable = False  # shared by every caller now: an in-place edit would leak between them
        return v[0]

    def channel_range(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (last axis) min and max of ``name`` over the calibration rows, if they were collected."""
        if name not in self.ch_lo:
            return None
        return self.ch_lo[name], self.ch_hi[name]

    def outlier_ratio(self, name: str) -> float | None:
        """Largest channel's max |value| over the median channel's: how systematic the tensor's outliers are.

        Why the median channel: an 8-bit per-tensor code is sized by the largest channel, while the
        median one says how many codes a typical channel is left with. None: no per-channel statistics.
        """
        r = self.channel_range(name)
        if r is None or r[0].size < 2:
            return None
        amax = np.maximum(np.abs(r[0]), np.abs(r[1]))
        med = float(np.median(amax))
        return float(amax.max()) / med if med > 0 else None


def update_channels(st: Stats, name: str, v: np.ndarray) -> None:
    """Fold one row's per-channel (last axis) min/max of ``v`` into ``st`` (finite values only)."""
    if v.ndim == 0 or v.shape[-1] < 1:
        return
    flat = v.reshape(-1, v.shape[-1])
    fin = np.isfinite(flat)
    lo = np.where(fin, flat, np.inf).min(axis=0).astype(np.float64)
    hi = np.where(fin, flat, -np.inf).max(axis=0).astype(np.float64)
    if name in st.ch_lo and st.ch_lo[name].shape == lo.shape:
        lo, hi = np.minimum(st.ch_lo[name], lo), np.maximum(st.ch_hi[name], hi)
    st.ch_lo[name], st.ch_hi[name] = lo, hi


def read_calibration(calibration: str | Path | dict | None) -> dict[str, np.ndarray] | None:
    if calibration is None:
        return None
    if isinstance(calibration, dict):
        return {k: widen_float(v) for k, v in calibration.items()}  # bfloat16 (ml_dtypes) data: float32
    from lasercc.ir.artifact import read_npz_arrays

    return read_npz_arrays(calibration, "calibration file")


def default_calibration(specs: dict[str, tuple[np.dtype, tuple[int, ...]]], vocab: dict[str, int],
                        rows: int = DEFAULT_ROWS) -> dict[str, np.ndarray]:
    """Random calibration inputs (documented default; a warning says so)."""
    rng = np.random.default_rng(0)
    out = {}
    for name, (dt, shape) in specs.items():
        b = shape[0] if shape else 1
        full = (rows * b, *shape[1:]) if shape else ()
        if np.dtype(dt).kind in "iu":
            out[name] = rng.integers(0, max(vocab.get(name, 2), 1), size=full).astype(dt)
        else:
            out[name] = rng.standard_normal(full).astype(dt)
    warnings.warn("no calibration data given: activation ranges come from random inputs (standard normal "
                  f"floats, uniform token ids), {rows} rows; pass --calibration for real ranges", stacklevel=3)
    return out


def check_inputs(data: dict[str, np.ndarray], specs: dict[str, tuple[np.dtype, tuple[int, ...]]],
                 what: str = "calibration", vocab: dict[str, int] | None = None, warn: bool = True) -> int:
    """Validate names, shapes, dtypes and values; return the number of batches (rows / model batch size).

    A scalar (0-d) input takes a 0-d array (one batch) or a 1-D array of samples (one batch each); an
    input whose leading dimension is 0 (zero-size) takes exactly its shape (one batch).

    Values are checked because onnxruntime and NumPy would not refuse them: NaN rows were dropped from
    the ranges silently, negative token ids wrap around to the end of the table, fractional ids are
    truncated, and ids at or beyond the table size (``vocab``: input -> rows of the table it indexes)
    failed deep inside the host-side embedding lookup.
    """
    missing = sorted(set(specs) - set(data))
    if missing:
        have = ", ".join(sorted(data)) or "none"
        raise InputError(f"{what} data lacks input(s) {', '.join(missing)} (it has {have})")
    n = None
    for name, (dt, shape) in specs.items():
        a = np.asarray(data[name])
        k = batches_of(a, shape)
        if k is None:
            b = shape[0] if shape else 1
            if shape and b and a.ndim == len(shape) and a.shape[0] == 0:
                raise InputError(f"{what} input {name!r} has no rows (shape {list(a.shape)}); give at least {b} "
                                 "row(s)")
            want = "a scalar (or a 1-D array of scalar samples)" if not shape else \
                f"[n*{b}, {', '.join(map(str, shape[1:]))}]" if b else f"{list(shape)}"
            raise InputError(f"{what} input {name!r}: expected shape {want}, got {list(a.shape)}")
        _check_values(name, a, np.dtype(dt), what, (vocab or {}).get(name), warn)
        if 0 in shape:  # an empty input (no values) is its exact shape in every batch: it counts no rows
            continue
        if n is not None and k != n:
            raise InputError(f"{what} inputs hold different numbers of rows")
        n = k
    return n or 1


def batches_of(a: np.ndarray, shape: tuple[int, ...]) -> int | None:
    """How many model batches ``a`` holds for an input of ``shape`` (None: it does not fit)."""
    if not shape:
        return 1 if a.ndim == 0 else (a.shape[0] if a.ndim == 1 and a.shape[0] else None)
    b = shape[0]
    if a.ndim != len(shape) or tuple(a.shape[1:]) != tuple(shape[1:]):
        return None
    if b == 0:
        return 1 if a.shape[0] == 0 else None
    return a.shape[0] // b if a.shape[0] % b == 0 and a.shape[0] else None


def batch_slice(a: np.ndarray, shape: tuple[int, ...], c: int) -> np.ndarray:
    """Batch ``c`` of ``a`` (see :func:`batches_of`)."""
    a = np.asarray(a)
    if not shape:
        return a if a.ndim == 0 else a[c]
    b = shape[0]
    return a if 0 in shape else a[c * b:(c + 1) * b]


def _check_values(name: str, a: np.ndarray, dt: np.dtype, what: str, table_rows: int | None, warn: bool) -> None:
    if dt.kind in "iub":
        if a.dtype.kind not in "iub":
            raise InputError(f"{what} input {name!r}: the model takes integer {dt} values, got dtype {a.dtype}")
        if a.size and dt.kind in "iu" and a.dtype.kind != "b":
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 and (dt.kind == "u" or table_rows is not None):
                raise InputError(f"{what} input {name!r}: negative value {lo} (token ids index a table from 0)")
            if table_rows is not None and hi >= table_rows:
                raise InputError(f"{what} input {name!r}: id {hi} is out of range for the {table_rows}-row table "
                                 f"it indexes (ids must be 0..{table_rows - 1})")
            info = np.iinfo(dt)
            if lo < info.min or hi > info.max:
                raise InputError(f"{what} input {name!r}: values {lo}..{hi} do not fit the model's {dt}")
        return
    if a.dtype.kind not in "fiub":
        raise InputError(f"{what} input {name!r}: expected real numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and a.size:
        bad = ~np.isfinite(a)
        if bad.any():
            rows = int(bad.reshape(len(a), -1).any(axis=1).sum()) if a.ndim else 1
            raise InputError(f"{what} input {name!r} contains NaN or infinity in {rows} of {max(len(a), 1)} row(s); "
                             "calibration ranges need finite values")
        lo, hi = float(a.min()), float(a.max())
        if not warn:
            return
        if lo == hi:
            warnings.warn(f"{what} input {name!r} is constant (every value {lo:g}): the activation ranges derived "
                          "from it are degenerate; pass representative data", stacklevel=3)
        elif max(abs(lo), abs(hi)) > DEGENERATE_ABS:
            warnings.warn(f"{what} input {name!r} holds values up to {max(abs(lo), abs(hi)):.3g}: scales derived from "
                          "them will be absurd; pass representative data", stacklevel=3)


def calibration_shapes(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> dict | None:
    """Input shapes to calibrate at when the model's batch is dynamic and pinned above 1: batch 1.

    Why: a graph compiled for batch B (e.g. 64 sequences for GPU throughput) needs ranges, not a
    B-row calibration run -- onnxruntime would hold every exposed float tensor of B rows at once
    (gigabytes for GPT-2-small at 64 x 128). Ranges and kept samples do not depend on the batch, so
    when every graph input has a symbolic leading dimension and all are pinned to the same B > 1, the
    calibration model is pinned to batch 1 and the calibration file may hold any number of rows.
    None: calibrate at the pinned shapes (a fixed batch, or batch 1 already).
    """
    from lasercc.frontends.onnx.load import graph_inputs

    ins = graph_inputs(model)
    if not ins or any(vi.name not in input_shapes for vi in ins):
        return None
    batches = set()
    for vi in ins:
        dims = vi.type.tensor_type.shape.dim
        if not dims or (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            return None  # a fixed leading dimension: the model says what its batch is
        batches.add(int(input_shapes[vi.name][0]))
    if len(batches) != 1 or batches.pop() <= 1:
        return None
    return {k: (1, *tuple(v)[1:]) for k, v in input_shapes.items()}


def host_lookups(model: onnx.ModelProto, tables: dict[str, np.ndarray]) -> list[tuple[str, str, str]]:
    """``(output, table, ids)`` of each Gather (axis 0) of a split-off table by an integer graph input.

    Why: onnxruntime memory-maps the model file for external weights, and each embedding row it
    reads faults in the kernel's fault-around window (64 KiB) -- calibrating all-MiniLM-L6-v2 left
    36 MiB of its 45 MiB token table resident. Looking the rows up here, in the memory-mapped array
    with its pages dropped after each row, keeps the table out of the session altogether.
    """
    ins = {i.name: i for i in model.graph.input}
    out = []
    for n in model.graph.node:
        if n.op_type != "Gather" or n.domain not in ("", "ai.onnx") or len(n.input) != 2:
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
        ids = ins.get(n.input[1])
        if axis != 0 or n.input[0] not in tables or ids is None:
            continue
        if ids.type.tensor_type.elem_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            continue
        out.append((n.output[0], n.input[0], n.input[1]))
    return out


def cut_lookups(model: onnx.ModelProto, lookups: list[tuple[str, str, str]],
                tables: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of the (light) model whose host-side lookups are graph inputs instead of Gather nodes."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outs = {o for o, _, _ in lookups}
    kept = [n for n in m.graph.node if not (n.op_type == "Gather" and n.output[0] in outs)]
    del m.graph.node[:]
    m.graph.node.extend(kept)
    used = {i for n in m.graph.node for i in n.input}
    inits = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    ins = {i.name: i for i in m.graph.input}
    for o, table, ids in lookups:
        t = tables[table]
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in ins[ids].type.tensor_type.shape.dim]
        m.graph.input.append(onnx.helper.make_tensor_value_info(
            o, onnx.helper.np_dtype_to_tensor_dtype(t.dtype), [*dims, *t.shape[1:]]))
    keep_vi = [vi for vi in m.graph.value_info if vi.name not in outs]
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep_vi)
    return m


def run_calibration(model: onnx.ModelProto, data: dict[str, np.ndarray],
                    specs: dict[str, tuple[np.dtype, tuple[int, ...]]], tensors: list[str], keep: set[str],
                    progress=None, weights: dict[str, np.ndarray] | None = None,  # noqa: ANN001
                    external_dir: str | None = None, release: Callable[[], None] | None = None,
                    tables: dict[str, np.ndarray] | None = None, channels: set[str] | None = None) -> Stats:
    """Run ``model`` with ``tensors`` (float) exposed; min/max for all, values of ``keep`` for KEEP_ROWS rows,
    per-channel min/max for ``channels`` (:meth:`Stats.channel_range`).

    ``weights``: initializers split off ``model`` and marked in memory
    (:func:`~lasercc.frontends.onnx.load.split_weights`), handed to the session as external
    initializers instead of serialized copies. ``external_dir``: where the light model's
    external-data stubs point (:mod:`lasercc.frontends.onnx.weights`); onnxruntime reads them there.
    ``tables``: every split-off weight array; a ``Gather`` of one of them by a graph input (a token
    embedding) is done here, on the array, and its result fed to the session (:func:`host_lookups`).
    ``release``: drops memory-mapped weight pages from the resident set
    (:meth:`~lasercc.frontends.onnx.weights.SplitModel.release_pages`) once the session holds its
    own copy. (Handing onnxruntime the memory-mapped arrays themselves was measured worse on
    all-MiniLM-L6-v2: session creation touched every page and still made transient copies, 136 MiB
    peak against 64 MiB when it reads the external data itself.)
    """
    import onnxruntime as ort

    lookups = host_lookups(model, tables or {})
    m = cut_lookups(model, lookups, tables or {}) if lookups else model  # a copy of the light model: kilobytes
    st = Stats()
    wanted = set(tensors)
    n = check_inputs(data, specs, warn=False)  # import_onnx checked (and warned about) the data already
    # outputs are appended for the session and removed again: no copy of the weights. Untyped: onnxruntime
    # infers each one's type (float64 / float16 tensors must not be declared float32)
    n_out = len(m.graph.output)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4  # errors are raised (with their message) by the boundary, not logged twice
    so.add_session_config_entry("session.disable_prepacking", "1")  # prepacked copies of every weight
    so.enable_cpu_mem_arena = False  # the arena would keep the peak of all exposed tensors for the session
    if external_dir is not None:
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", external_dir)
    if weights:
        live = {t.name for t in m.graph.initializer}
        names = [k for k in weights if k in live]  # not the tables of host lookups
        ort_values = [ort.OrtValue.ortvalue_from_numpy(weights[k]) for k in names]  # alive as long as sess
        so.add_external_initializers(names, ort_values)
    sess = None
    try:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except ort_errors() as e:  # onnxruntime cannot build the session: evaluate node by node instead
        st.notes.append(f"onnxruntime cannot run the whole model for calibration ({_first_line(e)}); its nodes "
                        "are evaluated one by one (onnxruntime where it can, onnx.reference where it cannot)")
    finally:
        while len(m.graph.output) > n_out:
            m.graph.output.pop()
    if release is not None:
        release()
    names = [o.name for o in sess.get_outputs()] if sess is not None else []
    session_inputs = {i.name for i in sess.get_inputs()} if sess is not None else set()
    by_node: NodeRunner | None = None
    for c in range(n):
        feed = {}
        for k, (dt, shape) in specs.items():
            feed[k] = np.asarray(batch_slice(data[k], shape, c)).astype(dt)
        for k, v in feed.items():  # integer inputs too: a passthrough output sizes its code table by them
            if v.dtype.kind in "iu" and v.size:
                st.lo[k] = min(st.lo.get(k, float(v.min())), float(v.min()))
                st.hi[k] = max(st.hi.get(k, float(v.max())), float(v.max()))
        looked = []
        for out, table, ids in lookups:
            t, i = np.asarray(tables[table]), np.asarray(feed[ids])
            # fancy indexing reads only those rows (np.take of a memmap read all of it: measured)
            looked.append((out, t[i.reshape(-1)].reshape(*i.shape, *t.shape[1:])))
            drop_pages(tables[table])
        got: list[tuple[str, object]] | None = None
        if sess is not None:
            try:
                outs = sess.run(names, {k: v for k, v in (*feed.items(), *looked) if k in session_inputs})
                got = list(zip(names, outs))
            except ort_errors() as e:  # onnxruntime failed on this data: node by node from now on
                st.notes.append(f"onnxruntime failed running the model for calibration ({_first_line(e)}); its "
                                "nodes are evaluated one by one (onnxruntime where it can, onnx.reference where "
                                "it cannot)")
                sess = None
        if got is None:
            if by_node is None:
                by_node = NodeRunner(m, wanted, tables or {}, external_dir)
            got = list(by_node.run({**feed, **dict(looked)}).items())
        seen = {k for k, _ in got}
        extra = [(k, v) for k, v in (*feed.items(), *looked) if k in wanted and k not in seen]
        for name, v in (*got, *extra):
            if not isinstance(v, np.ndarray) or v.dtype.kind != "f" or v.size == 0:
                continue
            fin = v[np.isfinite(v)] if not np.isfinite(v).all() else v
            if fin is not v and (nans := int(np.isnan(v).sum())):  # -inf from additive masks is legal, NaN is not
                st.nan_values[name] = st.nan_values.get(name, 0) + nans
            lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 0.0)
            st.lo[name] = min(st.lo.get(name, lo), lo)
            st.hi[name] = max(st.hi.get(name, hi), hi)
            if channels and name in channels:
                update_channels(st, name, v)
            if name in keep and c < KEEP_ROWS:
                st.kept.setdefault(name, []).append(np.array(v, copy=True))
        outs = v = fin = looked = got = extra = None  # one row's exposed tensors: free before the next run
        st.rows += 1
        if progress is not None:
            progress(c + 1, n)
    if by_node is not None and by_node.reference:
        st.notes.append("evaluated by onnx.reference during calibration (onnxruntime cannot run them): "
                        + ", ".join(sorted(by_node.reference)))
    if st.nan_values:  # the ranges silently dropped these values before
        worst = sorted(st.nan_values.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{k} ({v:,} values)" for k, v in worst[:4]) + (", ..." if len(worst) > 4 else "")
        warnings.warn(f"calibration: {len(worst)} tensor(s) computed NaN in onnxruntime and were ranged without "
                      f"those values: {shown}; check the model and the calibration data", stacklevel=2)
    return st


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


class NodeRunner:
    """The model evaluated node by node: each node in its own onnxruntime session where onnxruntime can run
    it, else by ``onnx.reference.ReferenceEvaluator``; a node that neither can evaluate is a
    :class:`~lasercc.frontends.onnx.load.FrontendError` naming the model and the node.

    Why: calibration must not depend on onnxruntime running the whole graph -- an op, opset or dtype it
    lacks (QuantizeLinear-21 with int16, bfloat16 Range, a newer opset) would otherwise block the compile.
    """

    def __init__(self, model: onnx.ModelProto, wanted: set[str], tables: dict[str, np.ndarray],
                 external_dir: str | None) -> None:
        from onnx import numpy_helper

        self.model = model
        self.wanted = wanted
        self.opsets = list(model.opset_import)
        self.consts: dict[str, np.ndarray] = {}
        for t in model.graph.initializer:
            if t.name in tables:
                self.consts[t.name] = np.asarray(tables[t.name])
            elif t.data_location == onnx.TensorProto.EXTERNAL:
                self.consts[t.name] = numpy_helper.to_array(t, base_dir=external_dir or "")
            else:
                self.consts[t.name] = numpy_helper.to_array(t)
        self.outputs = {o.name for o in model.graph.output}
        self.last: dict[str, int] = {}
        for k, nd in enumerate(model.graph.node):
            for i in nd.input:
                if i:
                    self.last[i] = k
        self.sessions: dict[int, object] = {}   # node index -> onnxruntime session, or None: use the reference
        self.refs: dict[int, object] = {}
        self.reference: set[str] = set()        # how notes name the nodes the reference evaluator ran

    def _label(self, nd: onnx.NodeProto) -> str:
        op = nd.op_type if nd.domain in ("", "ai.onnx") else f"{nd.domain}.{nd.op_type}"
        return f"{nd.name or (nd.output[0] if nd.output else '?')!r} ({op})"

    def _single(self, nd: onnx.NodeProto, feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
        ins = [onnx.helper.make_tensor_value_info(i, onnx.helper.np_dtype_to_tensor_dtype(feeds[i].dtype),
                                                  list(feeds[i].shape)) for i in dict.fromkeys(nd.input) if i]
        outs = [onnx.ValueInfoProto(name=o) for o in nd.output if o]
        g = onnx.helper.make_graph([nd], "node", ins, outs)
        m = onnx.helper.make_model(g, opset_imports=self.opsets)
        m.ir_version = self.model.ir_version
        m.functions.extend(self.model.functions)
        return m

    def _eval(self, k: int, nd: onnx.NodeProto, feeds: dict[str, np.ndarray]) -> list:
        import onnxruntime as ort

        label = self._label(nd)
        sess = self.sessions.get(k, 0)
        err = None
        if sess == 0:
            try:
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                so.log_severity_level = 4  # a node onnxruntime cannot run goes to onnx.reference: no log
                sess = ort.InferenceSession(self._single(nd, feeds).SerializeToString(), so,
                                            providers=["CPUExecutionProvider"])
            except ort_errors() as e:  # onnxruntime lacks the op / opset / dtype
                sess, err = None, e
            self.sessions[k] = sess
        if sess is not None:
            try:
                return sess.run(None, {i: feeds[i] for i in dict.fromkeys(nd.input) if i})  # type: ignore[attr-defined]
            except ort_errors() as e:
                err = e
                self.sessions[k] = None
        from lasercc.frontends.onnx.evaluators import reference_evaluator

        self.reference.add(label)
        try:
            ev = self.refs.get(k)
            if ev is None:
                ev = self.refs[k] = reference_evaluator(self._single(nd, feeds))
            return ev.run(None, {i: feeds[i] for i in dict.fromkeys(nd.input) if i})  # type: ignore[attr-defined]
        except REFERENCE_ERRORS as e:  # neither evaluator runs it: the user's model cannot be calibrated
            from lasercc.frontends.onnx.load import FrontendError

            model = self.model.graph.name or "model"
            ort_part = f"onnxruntime: {_first_line(err)}; " if err is not None else ""
            raise FrontendError(f"calibration of {model!r}: node {label} cannot be evaluated ({ort_part}"
                                f"onnx.reference: {_first_line(e)})") from None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = dict(self.consts)
        env.update(feeds)
        got: dict[str, np.ndarray] = {}
        for k, nd in enumerate(self.model.graph.node):
            outs = self._eval(k, nd, env)
            for o, v in zip(nd.output, outs):
                if o:
                    env[o] = np.asarray(v)
                    if o in self.wanted or o in self.outputs:
                        got[o] = env[o]
            for i in nd.input:  # free what no later node reads
                if i and self.last.get(i) == k and i not in self.consts and i not in feeds:
                    env.pop(i, None)
        return got
