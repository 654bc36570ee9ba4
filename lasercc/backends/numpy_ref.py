"""The NumPy reference backend: readable first, vectorized (no Python loop per neuron).

Two modes that must produce identical codes (the test suite proves it on random graphs):

``codes``
    Values are int64 code arrays; every spiking node computes its result directly from codes.
    :func:`lasercc.runtime.run_graph` uses the fast variant
    :class:`~lasercc.backends.numpy_f32.NumpyCodesF32` (batches stacked on a leading axis, codes of at
    most 24 bits held as float32, per-node plans proven from the code types), which gives the same
    codes and statistics.
``spikes``
    Values are real BSE spike trains, uint8 arrays of shape ``(bits, *shape)``, MSB first. The
    encoder is the integrate-and-fire neuron; a Soma integrates weighted spikes step by step
    Horner-style (acc <- 2*acc + sum_i W_i*s_i(t)); an ASNC segment is selected by bit-serial
    comparators on the MSB-first input; the winner-take-all max eliminates candidates bit by bit;
    a DecodeMAC decodes after the last bit. Data movement acts on the trains' shape axes.
    A value whose type has ``encoding = signed`` travels as its int8 ternary train of
    code - zero_point (:func:`lasercc.semantics.bse.bse_encode_signed`); see ``NumpySpikes``.

Both modes call :mod:`lasercc.semantics` for quantization, requantization and ASNC evaluation.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ClassVar

import numpy as np

from lasercc.backends.base import Executor, impl
from lasercc.backends.stats import NodeStats, node_stats
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import (
    ASNCSegment,
    BSEEncode,
    Concat,
    DecodeMAC,
    Gather,
    Input,
    Mask,
    Node,
    Reshape,
    Slice,
    Soma,
    SomaASNC,
    Take,
    Transpose,
    WTAMax,
)
from lasercc.ir.types import CodeType
from lasercc.semantics import (
    asnc_evaluate,
    bse_decode,
    bse_encode,
    quantize,
    requantize,
    requantize_exact_f32,
    requantize_scale,
)
from lasercc.semantics.bse import bse_decode_signed, bse_encode_signed, decode_train, encode_train

_BLAS_CONTROLLER: list = []  # lazily created threadpoolctl controller ([None] when it is not installed)


def blas_threads(n: int | None) -> contextlib.AbstractContextManager:
    """Limit NumPy's BLAS to ``n`` threads inside the block (no-op for None or without threadpoolctl).

    Why: the codes mode issues many small GEMMs (one per Soma); a multi-threaded OpenBLAS pays a
    thread hand-off per call, and on a machine whose cores are busy with other work a GEMM waits for
    a descheduled helper thread -- measured 5-10x slower per run than one thread. One thread is also
    the like-for-like comparison with onnxruntime at 1 intra-op thread.
    """
    if n is None:
        return contextlib.nullcontext()
    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS_CONTROLLER.append(ThreadpoolController())
        except Exception:  # noqa: BLE001 - optional speed-up only
            _BLAS_CONTROLLER.append(None)
    ctl = _BLAS_CONTROLLER[0]
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=n, user_api="blas")


def _no_idle_core() -> bool:
    """Whether the 1-minute load average leaves no idle core for a second BLAS thread.

    The load average counts this process too (about 1 while it computes), so "no idle core" is
    load > cores - 0.5: other work occupies more than half a core besides ours. A heuristic (the
    load average lags by seconds) that only picks between two thread counts, never results; False
    where the platform has no load average.
    """
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return os.getloadavg()[0] > cores - 0.5
    except (OSError, AttributeError):
        return False


_F64_EXACT = float(2**53)
_F32_EXACT = float(2**24)


def exact_int_matmul(x: np.ndarray, w: np.ndarray, w_float: dict | None = None, wsum: float | None = None):
    """x @ w for integer arrays, exact in int64.

    BLAS in float32 when every partial sum provably stays below 2^24 (|x|max * max column sum of
    |w|), float64 below 2^53 -- floating-point sums of integers are exact in that range -- and
    NumPy's integer matmul otherwise. ``w_float`` caches the float copies of a constant weight.
    """
    if wsum is None:
        wsum = float(np.abs(w).sum(axis=0).max(initial=0))
    bound = _absmax(x) * wsum
    for limit, ft in ((_F32_EXACT, np.float32), (_F64_EXACT, np.float64)):
        if bound < limit:
            wf = w_float.get(ft) if w_float is not None else None
            if wf is None:
                wf = w.astype(ft)
                if w_float is not None:
                    w_float[ft] = wf
            return _matmul_2d(x.astype(ft), wf).astype(np.int64)
    return x.astype(np.int64) @ w.astype(np.int64)


def _matmul_2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w for a 2-D ``w`` as ONE BLAS call: NumPy runs a stacked ``x`` as one small GEMM per leading
    index, about 2x slower than the same rows as a single (rows, K) GEMM. Results are unchanged
    (callers use it only where every sum is an exact integer, so blocking cannot round)."""
    if x.ndim <= 2 or w.ndim != 2:
        return x @ w
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def _max_gemm_macs(graph: Graph) -> int:
    """Multiply-adds of the largest Soma matmul term of ``graph`` (one batch)."""
    best = 0
    for n in graph.nodes:
        if isinstance(n, Soma | SomaASNC):
            for w, form in zip(n.weights, n.forms):
                if form == "matmul":
                    best = max(best, int(np.prod(n.type.shape, dtype=np.int64)) * int(graph.constants[w].shape[0]))
    return best


def _add_into(acc: np.ndarray, y: np.ndarray) -> np.ndarray:
    """acc + y, in place when the result has acc's shape (acc is a temporary of the caller)."""
    if acc.shape == y.shape or np.broadcast_shapes(acc.shape, y.shape) == acc.shape:
        return np.add(acc, y, out=acc)
    return acc + y


def _absmax(x: np.ndarray) -> float:
    """max |x| as a float, without the temporary array of np.abs (two reductions instead)."""
    return float(max(int(x.max()), -int(x.min()))) if x.size else 0.0


def exact_int_batched_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = a.shape[-1]
    bound = _absmax(a) * _absmax(b) * k
    if bound < _F64_EXACT:  # sums of integer products below 2^53 are exact integers in float64: no rounding
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


class _NumpyBase(Executor):
    """Shared pieces: constant caches, statistics, and data movement (``axis0`` = leading axes to skip)."""

    axis0: ClassVar[int] = 0
    #: exact float32 accumulators where operand bounds allow (off: the int64 reference paths, for tests)
    f32_paths: ClassVar[bool] = True

    def __init__(self, collect_stats: bool = True):
        self.collect_stats = collect_stats
        self._stats: dict[str, NodeStats] = {}

    def prepare(self, graph: Graph) -> None:
        super().prepare(graph)
        self._stats = {}

    def const(self, name: str) -> np.ndarray:
        """Constant as int64 (bool masks stay bool); cached on the immutable constant table."""
        return self.graph.constants.derived(
            name, "np.int64", lambda c: np.asarray(c) if np.asarray(c).dtype == np.bool_ else np.asarray(c, np.int64))

    def const_float(self, name: str) -> dict:
        """Cache of float copies of a weight (for exact BLAS matmuls), keyed by dtype."""
        return self.graph.constants.derived(name, "np.float", lambda c: {})

    def const_colsum(self, name: str) -> float:
        return self.graph.constants.derived(
            name, "np.colsum", lambda c: float(np.abs(np.asarray(c, np.int64)).sum(axis=0).max(initial=0)))

    def collected_stats(self) -> dict[str, Any]:
        out, self._stats = self._stats, {}
        return out

    def _record(self, node: Node, in_codes: list, out_codes, spikes: int | None = None) -> None:
        if not self.collect_stats:
            return
        s = node_stats(node, self.graph, in_codes, out_codes, spikes)
        if node.name in self._stats:
            self._stats[node.name].add(s)
        else:
            self._stats[node.name] = s

    # ---- requantization helpers shared by both modes
    def requant_soma(self, node: Soma, acc: np.ndarray) -> np.ndarray:
        out: CodeType = node.type  # type: ignore[assignment]
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize(acc, node.scale_in, np.asarray(node.scale_w, dtype=np.float32), out.scale_array(),
                          out.zero_point_array(), out.bits, node.requant)

    def decode_mac_codes(self, node: DecodeMAC, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ta, tb = (self.graph.type_of(i) for i in node.inputs)
        out: CodeType = node.type  # type: ignore[assignment]
        da = a - np.int64(ta.zero_point[0])  # type: ignore[union-attr]
        db = b - np.int64(tb.zero_point[0])  # type: ignore[union-attr]
        if self.f32_paths and node.requant == "ort" and out.bits <= 24:
            # float32 accumulator when every partial sum is an integer below 2^24 (see Soma's float32 path)
            k = da.shape[-1] if node.form == "matmul" else 1
            if _absmax(da) * _absmax(db) * k < _F32_EXACT:
                fa, fb = da.astype(np.float32), db.astype(np.float32)
                facc = np.matmul(fa, fb) if node.form == "matmul" else fa * fb
                if self.acc_observer is not None:
                    self.acc_observer(node, facc)
                scale = requantize_scale(ta.scale[0], tb.scale[0], out.scale_array())  # type: ignore[union-attr]
                return requantize_exact_f32(facc, scale, out.zero_point_array(), out.bits)
        acc = exact_int_batched_matmul(da, db) if node.form == "matmul" else da * db
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize(acc, ta.scale[0], tb.scale[0], out.scale_array(), out.zero_point_array(),  # type: ignore[union-attr]
                          out.bits, node.requant)

    def asnc_codes(self, node: ASNCSegment | SomaASNC, x: np.ndarray, segment: np.ndarray | None = None) -> np.ndarray:
        if self.acc_observer is not None and isinstance(node, SomaASNC):
            self.acc_observer(node, x)
        return asnc_evaluate(x, self.const(node.thresholds), self.const(node.slopes), self.const(node.intercepts),
                             node.shift, node.type.bits, segment=segment)  # type: ignore[union-attr]

    # ---- data movement: the same code for code arrays and spike trains
    def _ax(self, axis: int) -> int:
        return axis + self.axis0

    @impl(Reshape)
    def reshape(self, node: Reshape, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[: self.axis0] + tuple(node.type.shape))

    @impl(Transpose)
    def transpose(self, node: Transpose, x: np.ndarray) -> np.ndarray:
        lead = tuple(range(self.axis0))
        return np.ascontiguousarray(np.transpose(x, lead + tuple(p + self.axis0 for p in node.perm)))

    @impl(Slice)
    def slice_(self, node: Slice, x: np.ndarray) -> np.ndarray:
        idx = [slice(None)] * x.ndim
        for a, b, e, s in zip(node.axes, node.starts, node.stops, node.steps):
            idx[self._ax(a)] = slice(b, e, s)
        return x[tuple(idx)]

    @impl(Concat)
    def concat(self, node: Concat, *xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=self._ax(node.axis))

    @impl(Take)
    def take(self, node: Take, x: np.ndarray) -> np.ndarray:
        return np.take(x, np.asarray(node.indices, dtype=np.int64), axis=self._ax(node.axis))

    def _gather_codes(self, node: Gather, ids: np.ndarray) -> np.ndarray:
        """``table[ids]``: ``ids`` are token ids or, for an index code input, the codes themselves."""
        table = self.const(node.table)
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":  # codes held as floats (the f32 fast path): exact small integers
            ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            what = "index code" if isinstance(self.graph.type_of(node.inputs[0]), CodeType) else "token id"
            raise IndexError(f"{what} out of range [0, {table.shape[0]}) in gather %{node.name}")
        return table[ids]


class NumpyCodes(_NumpyBase):
    """``codes`` mode: every node computes on integer codes directly."""

    name: ClassVar[str] = "numpy"
    #: BLAS threads during a run: an int, None (NumPy's default) or "auto" (see :meth:`_blas_threads_for`).
    blas_threads: ClassVar[int | str | None] = "auto"
    #: "auto" runs BLAS single-threaded when no GEMM of the run exceeds this many multiply-adds
    SMALL_GEMM_MACS: ClassVar[int] = 1 << 24

    def _blas_threads_for(self, graph: Graph, feeds: dict[str, np.ndarray]) -> int | None:
        """One BLAS thread when every GEMM of this run is small, else NumPy's default.

        Why: a multi-threaded OpenBLAS pays a thread hand-off per call, which small GEMMs never earn
        back, and on a machine whose cores are busy with other work each call waits for a descheduled
        helper thread (measured: tiny models' runs 2-5x slower with 2 threads under load). Large GEMMs
        (MiniLM: 150M multiply-adds per call) run about 2x faster on 2 idle cores, so they keep the
        default -- unless the machine has no idle core to give (:func:`_no_idle_core`): measured on a
        loaded 2-core machine, MiniLM ran 7x slower with 2 BLAS threads than with 1.
        """
        if self.blas_threads != "auto":
            return self.blas_threads  # type: ignore[return-value]
        if not len(graph.constants):
            return 1
        holder = graph.constants.derived(next(iter(graph.constants)), "np.max_gemm_macs", lambda c: [None, 0])
        if holder[0] is not graph:  # the table may be shared by graphs: remember whose figure it holds
            holder[0], holder[1] = graph, _max_gemm_macs(graph)
        per_chunk = holder[1]
        first = graph.inputs[0] if graph.inputs else None
        chunks = 1
        if first is not None and first.name in feeds:
            per = int(np.prod(first.type.shape, dtype=np.int64)) or 1
            chunks = max(1, int(np.asarray(feeds[first.name]).size) // per)
        return 1 if per_chunk * chunks <= self.SMALL_GEMM_MACS or _no_idle_core() else None

    def run(self, graph: Graph, feeds: dict[str, np.ndarray]):  # noqa: ANN201 - Executor.run's result
        with blas_threads(self._blas_threads_for(graph, feeds)):
            return super().run(graph, feeds)

    def feed(self, node: Input, array: np.ndarray) -> np.ndarray:
        return array

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        if self.collect_stats:
            self._record(node, inputs, output)

    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: np.ndarray) -> np.ndarray:
        t: CodeType = node.type  # type: ignore[assignment]
        return quantize(x, np.asarray(t.scale), np.asarray(t.zero_point), t.bits, t.axis)

    def soma_acc(self, node: Soma | SomaASNC, xs: tuple[np.ndarray, ...]) -> np.ndarray:
        """The exact integer accumulator sum_j term_j(x_j, W_j) + bias (shared by Soma and SomaASNC)."""
        acc = None
        for x, w, form in zip(xs, node.weights, node.forms):
            if form == "matmul":
                term = exact_int_matmul(x, self.const(w), self.const_float(w), self.const_colsum(w))
            else:
                term = x * self.const(w)
            acc = term if acc is None else acc + term
        if node.bias is not None:
            acc = acc + self.const(node.bias)
        return acc

    def _f32_plan(self, node: Soma) -> tuple | None:
        """Per-node constants of the float32 Soma path (None when the node does not qualify).

        A Soma requantized by the ``ort`` rule into at most 24 bits can keep its accumulator in
        float32 from BLAS to the requantization: every partial sum is an integer below 2^24 when
        sum_j |x_j|max * colsum_j + |bias|max < 2^24 (checked per call, since it depends on the data;
        |w|max replaces the column sum for elementwise terms), so float32 holds it exactly and
        ``float32(acc)`` -- the first step of the ``ort`` rule -- is the identity. Cached per node:
        weights and bias as float32, the requantization scale and zero point.
        """
        # Cached on the constant table (it outlives the executor, which run_graph creates per call), in
        # a holder that remembers the node object: a table shared by two graphs never serves a plan
        # made for another node of the same name.
        holder = self.graph.constants.derived(node.weights[0], f"np.f32plan:{node.name}", lambda c: [None, None])
        if holder[0] is node:
            return holder[1]
        plan = None
        out: CodeType = node.type  # type: ignore[assignment]
        if node.requant == "ort" and out.bits <= 24:
            ws = []
            for w, form in zip(node.weights, node.forms):
                wf = self.const_float(w)
                if np.float32 not in wf:
                    wf[np.float32] = self.const(w).astype(np.float32)
                # bound factor: max column sum of |w| for a matmul term, max |w| for an elementwise one
                factor = self.const_colsum(w) if form == "matmul" else _absmax(self.const(w))
                ws.append((wf[np.float32], factor, form == "matmul"))
            bias = bmax = None
            if node.bias is not None:
                b = self.const(node.bias)
                bmax = _absmax(b)
                bias = b.astype(np.float32) if bmax < _F32_EXACT else None
            if node.bias is None or bias is not None:
                scale = requantize_scale(node.scale_in, np.asarray(node.scale_w, dtype=np.float32), out.scale_array())
                plan = (ws, bias, bmax or 0.0, scale, out.zero_point_array().astype(np.float32), out.bits)
        holder[0], holder[1] = node, plan
        return plan

    def _soma_f32(self, node: Soma, xs: tuple[np.ndarray, ...]) -> np.ndarray | None:
        """Codes of ``node`` via the exact float32 path, or None when this call's bound does not allow it."""
        plan = self._f32_plan(node) if self.f32_paths else None
        if plan is None:
            return None
        ws, bias, bmax, scale, zp, bits = plan
        bound = bmax
        for x, (_, factor, _) in zip(xs, ws):
            bound += _absmax(x) * factor
        if bound >= _F32_EXACT:
            return None
        acc = None
        for x, (wf, _, is_mm) in zip(xs, ws):
            xf = x.astype(np.float32) if is_mm else self._elementwise_operand(x, node).astype(np.float32)
            term = _matmul_2d(xf, wf) if is_mm else xf * wf
            acc = term if acc is None else _add_into(acc, term)
        if bias is not None:
            acc = _add_into(acc, bias)
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize_exact_f32(acc, scale, zp, bits)

    def _elementwise_operand(self, x: np.ndarray, node: Soma) -> np.ndarray:
        """Operand of an elementwise (``mul``) term as :meth:`soma_acc` sees it (stacked mode pads it)."""
        return x

    @impl(Soma)
    def soma(self, node: Soma, *xs: np.ndarray) -> np.ndarray:
        fast = self._soma_f32(node, xs)
        if fast is not None:
            return fast
        return self.requant_soma(node, self.soma_acc(node, xs))

    @impl(SomaASNC)
    def soma_asnc(self, node: SomaASNC, *xs: np.ndarray) -> np.ndarray:
        return self.asnc_codes(node, self.soma_acc(node, xs))

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.decode_mac_codes(node, a, b)

    @impl(ASNCSegment)
    def asnc(self, node: ASNCSegment, x: np.ndarray) -> np.ndarray:
        return self.asnc_codes(node, x)

    @impl(WTAMax)
    def wta_max(self, node: WTAMax, x: np.ndarray) -> np.ndarray:
        return x.max(axis=node.axis, keepdims=True)

    @impl(Gather)
    def gather(self, node: Gather, ids: np.ndarray) -> np.ndarray:
        return self._gather_codes(node, ids)

    @impl(Mask)
    def mask(self, node: Mask, x: np.ndarray) -> np.ndarray:
        return np.where(self.const(node.mask), np.int64(node.fill), x)


class NumpyCodesStacked(NumpyCodes):
    """``codes`` mode on several batches at once: every value carries one extra leading axis (the chunk).

    :func:`lasercc.runtime.run_graph` feeds a graph built for batch B several B-row chunks; walking the
    graph once per chunk costs the Python overhead of every node per chunk, which dominates small
    models. Here each value has shape ``(C, *type.shape)`` and every node acts on the trailing axes
    exactly as it does on one chunk -- the same leading-axis discipline as the spiking mode's time
    axis (``axis0 = 1``):

    * data movement shifts its axes by ``axis0`` (shared code in ``_NumpyBase``);
    * ``matmul`` forms contract the last axis (Soma weights) or are batched over leading axes whose
      ranks are equalised first (DecodeMAC), elementwise forms broadcast operands whose lower rank is
      padded *after* the chunk axis, and parameters (scales, zero points, biases, masks, weights of
      ``mul`` forms) broadcast right-aligned, i.e. per sample;
    * WTA and per-axis BSE encoders shift their axis.

    So chunk c of every value equals what :class:`NumpyCodes` computes on chunk c alone; the codes are
    identical (tests/backends/test_numpy_fastpaths.py checks it on random graphs and the example
    models), and so are the statistics (see :meth:`observe`).
    """

    axis0: ClassVar[int] = 1

    def _pad(self, x: np.ndarray, rank: int) -> np.ndarray:
        """Chunk-stacked ``x`` with its per-sample rank raised to ``rank`` (NumPy's right alignment)."""
        r = x.ndim - 1
        return x if r >= rank else x.reshape(x.shape[:1] + (1,) * (rank - r) + x.shape[1:])

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        """Statistics equal to C per-chunk records: spike and synaptic-event counts are sums over
        elements (so the stacked arrays give the C-chunk total at once), neuron updates and MACs
        are per-execution constants (scaled by C). The operand of an elementwise Soma term is padded
        as :meth:`soma_acc` pads it, so its broadcast against the weights is the per-chunk one (leading
        unit axes do not change a sum)."""
        if not self.collect_stats:
            return
        n = output.shape[0]
        if isinstance(node, Soma | SomaASNC) and any(f != "matmul" for f in node.forms):
            rank = len(node.type.shape)
            inputs = [x if f == "matmul" else self._pad(x, rank) for x, f in zip(inputs, node.forms)]
        s = node_stats(node, self.graph, inputs, output)
        s.neuron_updates *= n
        s.macs *= n
        if node.name in self._stats:
            self._stats[node.name].add(s)
        else:
            self._stats[node.name] = s

    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: np.ndarray) -> np.ndarray:
        t: CodeType = node.type  # type: ignore[assignment]
        axis = None if t.axis is None else t.axis + 1
        return quantize(x, np.asarray(t.scale), np.asarray(t.zero_point), t.bits, axis)

    def _elementwise_operand(self, x: np.ndarray, node: Soma) -> np.ndarray:
        return self._pad(x, len(node.type.shape))

    def soma_acc(self, node: Soma | SomaASNC, xs: tuple[np.ndarray, ...]) -> np.ndarray:
        rank = len(node.type.shape)
        return super().soma_acc(node, tuple(x if f == "matmul" else self._pad(x, rank)
                                            for x, f in zip(xs, node.forms)))

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        rank = max(a.ndim, b.ndim) - 1
        return self.decode_mac_codes(node, self._pad(a, rank), self._pad(b, rank))

    @impl(WTAMax)
    def wta_max(self, node: WTAMax, x: np.ndarray) -> np.ndarray:
        return x.max(axis=node.axis + 1, keepdims=True)


class NumpySpikes(_NumpyBase):
    """``spikes`` mode: values are BSE spike trains stepped through time (see module doc).

    Signed (bidirectional) values are int8 ternary trains of d = code - zero_point: the encoder is
    the two-threshold integrate-and-fire neuron, decoders add the zero point back, and a Soma's
    Horner recurrence on ternary spikes yields W(x - zp), to which the compiler-folded constant
    zp * sum(W) is added (:meth:`signed_offset`) so the accumulator equals the codes mode's exactly.
    """

    name: ClassVar[str] = "numpy"
    axis0: ClassVar[int] = 1

    # ---- the encoding of a value's type: the one place that picks BSE or signed trains
    @staticmethod
    def train_of(codes: np.ndarray, t: CodeType) -> np.ndarray:
        """Spike train of codes of type ``t`` (the shared rule: :func:`lasercc.semantics.bse.encode_train`)."""
        return encode_train(codes, t.bits, t.zero_point[0], t.signed)

    @staticmethod
    def codes_of(train: np.ndarray, t: CodeType) -> np.ndarray:
        """Codes of a spike train of type ``t`` (:func:`lasercc.semantics.bse.decode_train`)."""
        return decode_train(train, t.bits, t.zero_point[0], t.signed)

    def signed_offset(self, node: Soma | SomaASNC) -> np.ndarray | None:
        """zp * sum(W) over the signed inputs of a Soma (zp * W for ``mul``): what ternary spikes of
        x - zp leave out of W x. A compiler folds it into the bias; the simulator adds it here."""
        off = None
        for i, w, form in zip(node.inputs, node.weights, node.forms):
            t = self.graph.type_of(i)
            if isinstance(t, CodeType) and t.signed and t.zero_point[0]:
                wi = self.const(w)
                term = np.int64(t.zero_point[0]) * (wi.sum(axis=0) if form == "matmul" else wi)
                off = term if off is None else off + term
        return off

    def run(self, graph: Graph, feeds: dict[str, np.ndarray]):  # noqa: ANN201 - ExecResult
        res = super().run(graph, feeds)
        for o in graph.outputs:  # to_numpy_codes decoded signed trains to offsets: add zero points back
            t = graph.type_of(o)
            if isinstance(t, CodeType) and t.signed:
                res.codes[o] = res.codes[o] + np.int64(t.zero_point[0])
        return res

    def feed(self, node: Input, array: np.ndarray) -> np.ndarray:
        if isinstance(node.type, CodeType):
            return self.train_of(array, node.type)
        return array

    def to_numpy_codes(self, value: Any) -> np.ndarray:
        if value.dtype == np.int8:  # a signed train: its offset (``run`` adds the zero point)
            return bse_decode_signed(value, 0, value.shape[0])
        return bse_decode(value, value.shape[0])

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        if not self.collect_stats:
            return
        ins = [self.codes_of(v, t) if isinstance(t := self.graph.type_of(i), CodeType) else v
               for v, i in zip(inputs, node.inputs)]
        is_code = isinstance(node.type, CodeType)
        out = self.codes_of(output, node.type) if is_code else output  # type: ignore[arg-type]
        spikes = int(np.count_nonzero(output)) if is_code else None  # one spike per nonzero entry
        self._record(node, ins, out, spikes)

    def _encode(self, codes: np.ndarray, node: Node) -> np.ndarray:
        return self.train_of(codes, node.type)  # type: ignore[arg-type]

    def _decode(self, train: np.ndarray, value: str) -> np.ndarray:
        return self.codes_of(train, self.graph.type_of(value))  # type: ignore[arg-type]

    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: np.ndarray) -> np.ndarray:
        t: CodeType = node.type  # type: ignore[assignment]
        return self._encode(quantize(x, np.asarray(t.scale), np.asarray(t.zero_point), t.bits, t.axis), node)

    def soma_acc(self, node: Soma | SomaASNC, trains: tuple[np.ndarray, ...]) -> np.ndarray:
        """Horner integration of weighted spikes, step by step (shared by Soma and SomaASNC)."""
        steps = max(s.shape[0] for s in trains)
        acc = np.int64(0)
        for t in range(steps):
            step = None
            for s, w, form in zip(trains, node.weights, node.forms):
                tj = t - (steps - s.shape[0])  # narrower inputs start later so all LSBs align
                if tj < 0:
                    continue
                if form == "matmul":
                    # spikes are 0/+-1, so the exactness bound is just the column sum of |W|
                    term = exact_int_matmul(s[tj], self.const(w), self.const_float(w), self.const_colsum(w))
                else:
                    term = s[tj].astype(np.int64) * self.const(w)
                step = term if step is None else step + term
            acc = 2 * acc + step  # Horner, LASER Eq. 2
        off = self.signed_offset(node)
        if off is not None:
            acc = acc + off
        if node.bias is not None:
            acc = acc + self.const(node.bias)
        return acc

    @impl(Soma)
    def soma(self, node: Soma, *trains: np.ndarray) -> np.ndarray:
        return self._encode(self.requant_soma(node, self.soma_acc(node, trains)), node)

    @impl(SomaASNC)
    def soma_asnc(self, node: SomaASNC, *trains: np.ndarray) -> np.ndarray:
        # The comparator bank reads the finished accumulator (it is a neuron state, not a spike
        # train, so there is no bit-serial prefix to resolve): select the segment and emit N_out bits.
        return self._encode(self.asnc_codes(node, self.soma_acc(node, trains)), node)

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        codes = self.decode_mac_codes(node, self._decode(a, node.inputs[0]), self._decode(b, node.inputs[1]))
        return self._encode(codes, node)

    @impl(ASNCSegment)
    def asnc(self, node: ASNCSegment, s: np.ndarray) -> np.ndarray:
        if self.graph.type_of(node.inputs[0]).signed:  # type: ignore[union-attr]
            return self._asnc_signed(node, s)
        bits = s.shape[0]
        thr = self.const(node.thresholds)
        # Bit-serial comparator bank: after t bits the prefix p bounds x to [p*2^r, p*2^r + 2^r - 1]
        # (r bits still to come); the segment is pinned once both bounds select the same one.
        prefix = np.zeros(s.shape[1:], dtype=np.int64)
        for t in range(bits):
            prefix = 2 * prefix + s[t]
            rest = bits - 1 - t
            lo_seg = np.searchsorted(thr, prefix << rest, side="right")
            hi_seg = np.searchsorted(thr, (prefix << rest) + ((1 << rest) - 1), side="right")
        if not np.array_equal(lo_seg, hi_seg):  # pragma: no cover - a comparator bug
            raise AssertionError("comparator did not resolve the segment")
        return self._encode(self.asnc_codes(node, prefix, segment=lo_seg), node)

    def _asnc_signed(self, node: ASNCSegment, s: np.ndarray) -> np.ndarray:
        """Bit-serial comparator on a ternary sign-magnitude train: after t digits the offset prefix
        p and the sign seen so far bound x = zp + d (the remaining r digits add at most 2^r - 1 in
        the sign's direction, either way while p = 0); the segment is pinned when both bounds agree."""
        bits, zp = s.shape[0], np.int64(self.graph.type_of(node.inputs[0]).zero_point[0])  # type: ignore[union-attr]
        thr = self.const(node.thresholds)
        prefix = np.zeros(s.shape[1:], dtype=np.int64)
        for t in range(bits):
            prefix = 2 * prefix + s[t]
            rest = bits - 1 - t
            span = np.int64((1 << rest) - 1)
            base = zp + (prefix << rest)
            lo_seg = np.searchsorted(thr, base - np.where(prefix > 0, 0, span), side="right")
            hi_seg = np.searchsorted(thr, base + np.where(prefix < 0, 0, span), side="right")
        if not np.array_equal(lo_seg, hi_seg):  # pragma: no cover - a comparator bug
            raise AssertionError("comparator did not resolve the segment")
        return self._encode(self.asnc_codes(node, zp + prefix, segment=lo_seg), node)

    def _wta_signed(self, node: WTAMax, s: np.ndarray) -> np.ndarray:
        """Winner-take-all on ternary sign-magnitude trains: MSB first, the alive candidates' largest
        digit (+1 > 0 > -1) is emitted and candidates showing less drop out. On sign-magnitude
        digits this lexicographic order is the numeric order of the offsets, so the output train
        is the maximum's own train."""
        ax = self._ax(node.axis) - 1
        alive = np.ones(s.shape[1:], dtype=bool)
        out = np.empty((s.shape[0],) + tuple(node.type.shape), dtype=np.int8)
        for t in range(s.shape[0]):
            best = np.where(alive, s[t], np.int8(-2)).max(axis=ax, keepdims=True)
            out[t] = best
            alive = alive & (s[t] == best)
        return out

    @impl(WTAMax)
    def wta_max(self, node: WTAMax, s: np.ndarray) -> np.ndarray:
        if node.type.signed:  # type: ignore[union-attr]
            return self._wta_signed(node, s)
        ax = self._ax(node.axis) - 1  # axis within one time slice
        alive = np.ones(s.shape[1:], dtype=bool)
        out = np.empty((s.shape[0],) + tuple(node.type.shape), dtype=np.uint8)
        for t in range(s.shape[0]):
            bid = alive & (s[t] == 1)
            any_one = bid.any(axis=ax, keepdims=True)
            out[t] = any_one
            alive = np.where(any_one, bid, alive)  # candidates showing 0 drop out when someone shows 1
        return out

    @impl(Gather)
    def gather(self, node: Gather, ids: np.ndarray) -> np.ndarray:
        if isinstance(self.graph.type_of(node.inputs[0]), CodeType):  # an index code arrives as a spike train
            ids = self._decode(ids, node.inputs[0])
        return self._encode(self._gather_codes(node, ids), node)

    @impl(Mask)
    def mask(self, node: Mask, s: np.ndarray) -> np.ndarray:
        t: CodeType = node.type  # type: ignore[assignment]
        if t.signed:
            fill = bse_encode_signed(np.asarray(node.fill), t.zero_point[0], s.shape[0])
        else:
            fill = bse_encode(np.asarray(node.fill), s.shape[0])
        fill = fill.reshape((s.shape[0],) + (1,) * (s.ndim - 1))
        return np.where(self.const(node.mask)[None], fill, s).astype(s.dtype)


def numpy_executor(mode: str = "codes", collect_stats: bool = True) -> _NumpyBase:
    if mode == "codes":
        return NumpyCodes(collect_stats)
    if mode == "spikes":
        return NumpySpikes(collect_stats)
    raise ValueError(f"unknown mode {mode!r} (expected 'codes' or 'spikes')")
