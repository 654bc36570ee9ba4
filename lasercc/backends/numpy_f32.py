"""The NumPy ``codes`` mode's fast executor: codes held as float32 between nodes, plans proven once per graph.

:func:`lasercc.runtime.run_graph` runs every NumPy ``codes`` walk through :class:`NumpyCodesF32`; its
results are those of the reference :class:`~lasercc.backends.numpy_ref.NumpyCodes` code for code
(tests/backends/test_numpy_fastpaths.py). It lives apart from the reference so that the reference
stays the short, readable definition and this module holds only the speed work.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from lasercc.backends.base import ExecResult, impl, values_freed_after
from lasercc.backends.numpy_ref import (
    _F32_EXACT,
    _F64_EXACT,
    NumpyCodesStacked,
    _absmax,
    _matmul_2d,
    blas_threads,
)
from lasercc.backends.plans import GRAPHS, cached
from lasercc.errors import ExecutionError, LasercError
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
    Soma,
    SomaASNC,
    Transpose,
)
from lasercc.ir.printer import format_node
from lasercc.ir.types import CodeType
from lasercc.semantics import (
    requantize_exact_f32,
    requantize_scale,
)
from lasercc.semantics.asnc import asnc_table


def _add_into(acc: np.ndarray, y: np.ndarray) -> np.ndarray:
    """acc + y, in place when the result has acc's shape (acc is a temporary of the caller)."""
    if acc.shape == y.shape or np.broadcast_shapes(acc.shape, y.shape) == acc.shape:
        return np.add(acc, y, out=acc)
    return acc + y


def _f32_code(t: Any) -> bool:
    """Whether values of type ``t`` travel as float32 in :class:`NumpyCodesF32` (codes of at most 24 bits)."""
    return isinstance(t, CodeType) and t.bits <= 24


def _ints(x: np.ndarray) -> np.ndarray:
    """int64 codes of a value of :class:`NumpyCodesF32` (float32 codes are exact integers)."""
    return x.astype(np.int64) if x.dtype == np.float32 else x


def _as_f32(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.float32 else x.astype(np.float32)


class NumpyCodesF32(NumpyCodesStacked):
    """The chunk-stacked codes mode with codes held in float32 between nodes: what :func:`run_graph` uses.

    Why: the exact float32 Soma and DecodeMAC paths already compute in float32, so int64 values cost
    two conversions per node, and their per-call exactness checks (max |x| of every operand) cost two
    reductions each. Here

    * a value whose type has at most 24 bits is a float32 array of its codes -- the same integers, since
      float32 holds every integer up to 2^24 exactly; wider values stay int64. Outputs (and the
      statistics, when collected) are converted back to int64, so results are those of
      :class:`NumpyCodes` code for code (tests/backends/test_numpy_fastpaths.py checks it);
    * the exactness bound of a float32 accumulator is proven once per node from the code types
      (every operand code lies in [0, 2^bits - 1] and |code - zp| <= 2^bits - 1); only a node whose
      static bound reaches 2^24 checks its data per call, as before, and falls back to the int64 path;
    * an ASNC table over a narrow input becomes a lookup of its output for every input code
      (:func:`lasercc.semantics.asnc.asnc_table`, computed by the rule itself);
    * these per-node plans are made once per graph and cached executor-side (:mod:`.plans`).

    Arithmetic stays in :mod:`lasercc.semantics` (``requantize_exact_f32``, ``asnc_table``); every node
    kind or case without a float32 plan runs :class:`NumpyCodesStacked`'s implementation on int64 codes.
    """

    #: exact float accumulators where operand bounds allow (off: the int64 reference paths, for tests)
    f32_paths: ClassVar[bool] = True
    #: ASNC inputs up to this many bits use a lookup of the whole table (2^bits entries)
    LUT_MAX_BITS: ClassVar[int] = 16

    def prepare(self, graph: Graph) -> None:
        super().prepare(graph)
        # plans belong to one graph's nodes: cached per graph, executor-side (run_graph makes an executor per call)
        key = f"np.f32exec:{type(self).__module__}.{type(self).__qualname__}:{self.f32_paths}:{self.LUT_MAX_BITS}"
        self._plans: dict[str, Any] = cached(GRAPHS.of(graph), key, dict)

    def _schedule(self, graph: Graph) -> list[tuple]:
        """The walk of :meth:`Executor.run`, resolved once per graph: per node its implementation, its
        input names and the values it is the last user of (freed after it). Cached with the plans."""
        sched = self._plans.get("")
        if sched is None:
            self.check_supported(graph)
            sched = []
            for n, frees in zip(graph.nodes, values_freed_after(graph)):
                fn = None if n.op == "input" else getattr(type(self), self._table[type(n)])
                sched.append((n, fn, tuple(n.inputs), frees))
            self._plans[""] = sched
        return sched

    def run(self, graph: Graph, feeds: dict[str, np.ndarray]) -> ExecResult:
        """:meth:`Executor.run` (same values, errors and statistics) with its per-node bookkeeping precomputed:
        for small models that bookkeeping is a visible share of a run."""
        with blas_threads(self._blas_threads_for(graph, feeds)):
            if getattr(self, "graph", None) is not graph:
                self.prepare(graph)
            env: dict[str, Any] = {}
            stats = self.collect_stats
            node = None
            try:
                for n, fn, ins, frees in self._schedule(graph):
                    if fn is None:
                        node = None  # a failing feed is raised as is, as Executor.run does
                        env[n.name] = self.feed(n, feeds[n.name])
                        continue
                    node = n
                    args = [env[v] for v in ins]
                    out = fn(self, node, *args)
                    if stats:
                        self.observe(node, args, out)
                    env[node.name] = out
                    for v in frees:
                        del env[v]
            except LasercError:
                raise
            except Exception as e:  # re-raise with the node's text, as Executor.run does
                if node is None:
                    raise
                raise ExecutionError(f"{self.name} backend failed at %{node.name}: {type(e).__name__}: {e}\n"
                                     f"    {format_node(node)}") from e
            return ExecResult(codes={o: self.to_numpy_codes(env[o]) for o in graph.outputs},
                              node_stats=self.collected_stats())

    def _plan(self, node: Node, make: Any) -> Any:
        p = self._plans.get(node.name, self)
        if p is self:
            p = self._plans[node.name] = make(node)
        return p

    # ---- value representation
    def feed(self, node: Input, array: np.ndarray) -> np.ndarray:
        return array.astype(np.float32) if _f32_code(node.type) else array

    def to_numpy_codes(self, value: Any) -> np.ndarray:
        return _ints(np.asarray(value))

    def _value(self, codes: np.ndarray, node: Node) -> np.ndarray:
        return _as_f32(codes) if _f32_code(node.type) else _ints(codes)

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        if self.collect_stats:
            super().observe(node, [_ints(x) if isinstance(self.graph.type_of(i), CodeType) else x
                                   for x, i in zip(inputs, node.inputs)], _ints(output))

    def _generic(self, node: Node, *xs: np.ndarray) -> np.ndarray:
        """The int64 implementation of :class:`NumpyCodesStacked`, converted to this representation."""
        return self._value(getattr(super(), self._table[type(node)])(node, *[_ints(x) for x in xs]), node)

    # ---- the data-checked float32 Soma path: the fallback of a Soma without a static plan
    def _f32_plan(self, node: Soma) -> tuple | None:
        """Per-node constants of the float32 Soma path (None when the node does not qualify).

        A Soma requantized by the ``ort`` rule into at most 24 bits can keep its accumulator in
        float32 from BLAS to the requantization: every partial sum is an integer below 2^24 when
        sum_j |x_j|max * colsum_j + |bias|max < 2^24 (checked per call, since it depends on the data;
        |w|max replaces the column sum for elementwise terms), so float32 holds it exactly and
        ``float32(acc)`` -- the first step of the ``ort`` rule -- is the identity. Cached per node:
        weights and bias as float32, the requantization scale and zero point.
        """
        # Cached per graph, executor-side (it outlives the executor, which run_graph creates per call).
        plans = GRAPHS.of(self.graph)
        key = ("np.f32plan", node.name)
        if key in plans:
            return plans[key]
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
        plans[key] = plan
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
        return self._pad(x, len(node.type.shape))

    def decode_mac_codes(self, node: DecodeMAC, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The int64 DecodeMAC with a float32 accumulator where this call's data proves it exact."""
        ta, tb = (self.graph.type_of(i) for i in node.inputs)
        out: CodeType = node.type  # type: ignore[assignment]
        if self.f32_paths and node.requant == "ort" and out.bits <= 24:
            # float32 accumulator when every partial sum is an integer below 2^24 (see Soma's float32 path)
            da = a - np.int64(ta.zero_point[0])  # type: ignore[union-attr]
            db = b - np.int64(tb.zero_point[0])  # type: ignore[union-attr]
            k = da.shape[-1] if node.form == "matmul" else 1
            if _absmax(da) * _absmax(db) * k < _F32_EXACT:
                fa, fb = da.astype(np.float32), db.astype(np.float32)
                facc = np.matmul(fa, fb) if node.form == "matmul" else fa * fb
                if self.acc_observer is not None:
                    self.acc_observer(node, facc)
                scale = requantize_scale(ta.scale[0], tb.scale[0], out.scale_array())  # type: ignore[union-attr]
                return requantize_exact_f32(facc, scale, out.zero_point_array(), out.bits)
        return super().decode_mac_codes(node, a, b)

    # ---- Soma
    def _weights_as(self, name: str, ft: Any) -> np.ndarray:
        cache = self.const_float(name)
        if ft not in cache:
            cache[ft] = self.const(name).astype(ft)
        return cache[ft]

    def _soma_plan(self, node: Soma) -> tuple | None:
        """Float accumulator plan of an ``ort`` Soma with at most 24 output bits (None: the int64 path).

        Static bound B = sum_j hi_j * factor_j + max|bias| (hi_j: the largest code of input j; factor:
        max column sum of |W_j| for a matmul term, max |W_j| for an elementwise one) bounds every
        partial sum. B < 2^24: float32 (exact). Else B < 2^53: float64 (exact), preceded for nodes with
        a wide matmul term by a per-call check of the data that may still allow float32 (BLAS float32
        is twice as fast as float64).
        """
        out: CodeType = node.type  # type: ignore[assignment]
        if not (self.f32_paths and node.requant == "ort" and _f32_code(out)):
            return None
        bound, factors, is_mm = 0.0, [], []
        for i, w, form in zip(node.inputs, node.weights, node.forms):
            t = self.graph.type_of(i)
            factor = self.const_colsum(w) if form == "matmul" else _absmax(self.const(w))
            bound += (float(t.hi) if isinstance(t, CodeType) else np.inf) * factor
            factors.append(factor)
            is_mm.append(form == "matmul")
        bmax = _absmax(self.const(node.bias)) if node.bias is not None else 0.0
        bound += bmax
        if bound >= _F64_EXACT:
            return None
        ft = np.float32 if bound < _F32_EXACT else np.float64
        wide = ft is np.float64 and bmax < _F32_EXACT and any(
            m and self.graph.constants[w].shape[-1] >= 16 for m, w in zip(is_mm, node.weights))
        weights = {f: [self._weights_as(w, f) for w in node.weights] for f in ({ft, np.float32} if wide else {ft})}
        bias = None if node.bias is None else {f: self._weights_as(node.bias, f) for f in weights}
        scale = requantize_scale(node.scale_in, np.asarray(node.scale_w, dtype=np.float32), out.scale_array())
        return (ft, wide, weights, bias, factors, is_mm, bmax, scale, out.zero_point_array().astype(np.float32),
                out.bits, tuple(out.shape))

    @impl(Soma)
    def soma(self, node: Soma, *xs: np.ndarray) -> np.ndarray:
        plan = self._plan(node, self._soma_plan)
        if plan is None:
            fast = self._soma_f32(node, xs)
            return self._generic(node, *xs) if fast is None else self._value(fast, node)
        ft, wide, weights, bias, factors, is_mm, bmax, scale, zp, bits, shape = plan
        if wide and bmax + sum(_absmax(x) * f for x, f in zip(xs, factors)) < _F32_EXACT:
            ft = np.float32  # this call's data keeps every partial sum below 2^24
        acc = None
        for x, wf, mm in zip(xs, weights[ft], is_mm):
            if mm:
                term = _matmul_2d(x.astype(ft, copy=False), wf)
            else:  # float32 codes times float64 weights multiply in float64: exact below 2^53
                xe = self._elementwise_operand(x, node)
                term = (xe if xe.dtype == np.float32 else xe.astype(ft)) * wf
            if acc is None:
                acc = term
            elif acc.shape[1:] == shape:  # acc already has the output's shape (a temporary): add in place
                np.add(acc, term, out=acc)
            else:
                acc = acc + term
        if bias is not None:  # the bias broadcasts against one sample (the verifier checks it)
            b = bias[ft]
            acc = np.add(acc, b, out=acc) if acc.shape[1:] == shape else acc + b
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize_exact_f32(acc, scale, zp, bits, as_float32=True)

    @impl(SomaASNC)
    def soma_asnc(self, node: SomaASNC, *xs: np.ndarray) -> np.ndarray:
        return self._generic(node, *xs)

    # ---- DecodeMAC
    def _decode_mac_plan(self, node: DecodeMAC) -> tuple | None:
        """Float plan of an ``ort`` DecodeMAC on codes of at most 24 bits (None: the int64 path).

        Codes and zero points lie in [0, hi] (the type verifier checks zero points), so
        |code - zp| <= hi and every partial sum is bounded by k * hi_a * hi_b: float32 below 2^24,
        else float64 below 2^53 (a matmul first checks the call's data for float32, as the Soma does).
        """
        ta, tb = (self.graph.type_of(i) for i in node.inputs)
        out: CodeType = node.type  # type: ignore[assignment]
        if not (self.f32_paths and node.requant == "ort" and _f32_code(out) and _f32_code(ta) and _f32_code(tb)):
            return None
        za, zb = int(ta.zero_point[0]), int(tb.zero_point[0])  # type: ignore[union-attr]
        is_mm = node.form == "matmul"
        k = ta.shape[-1] if is_mm else 1
        bound = float(ta.hi) * float(tb.hi) * k  # type: ignore[union-attr]
        if bound >= _F64_EXACT:
            return None
        ft = np.float32 if bound < _F32_EXACT else np.float64
        scale = requantize_scale(ta.scale[0], tb.scale[0], out.scale_array())  # type: ignore[union-attr]
        return (np.float32(za) if za else None, np.float32(zb) if zb else None, is_mm, ft, scale,
                out.zero_point_array().astype(np.float32), out.bits, k)

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        plan = self._plan(node, self._decode_mac_plan)
        if plan is None or a.dtype != np.float32 or b.dtype != np.float32:
            return self._generic(node, a, b)
        za, zb, is_mm, ft, scale, zp, bits, k = plan
        rank = max(a.ndim, b.ndim) - 1
        da = self._pad(a, rank) if za is None else self._pad(a, rank) - za  # exact: |code - zp| < 2^24
        db = self._pad(b, rank) if zb is None else self._pad(b, rank) - zb
        if is_mm:
            if ft is np.float64 and _absmax(da) * _absmax(db) * k < _F32_EXACT:
                ft = np.float32  # this call's data keeps every partial sum below 2^24
            acc = np.matmul(da, db) if ft is np.float32 else np.matmul(da.astype(ft), db.astype(ft))
        else:
            acc = np.multiply(da, db, dtype=ft)
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize_exact_f32(acc, scale, zp, bits, as_float32=True)

    # ---- ASNC
    def _asnc_plan(self, node: ASNCSegment) -> np.ndarray | None:
        t = self.graph.type_of(node.inputs[0])
        if not (_f32_code(node.type) and isinstance(t, CodeType) and t.bits <= self.LUT_MAX_BITS):
            return None
        return asnc_table(self.const(node.thresholds), self.const(node.slopes), self.const(node.intercepts),
                          node.shift, node.type.bits, t.bits).astype(np.float32)  # type: ignore[union-attr]

    @impl(ASNCSegment)
    def asnc(self, node: ASNCSegment, x: np.ndarray) -> np.ndarray:
        table = self._plan(node, self._asnc_plan)
        if table is None:
            return self._generic(node, x)
        # Codes of the input type lie in [0, 2^bits - 1], so every one indexes the table and mode="clip"
        # (which skips the bounds check) never clips. float32 -> int32 -> intp is faster than one cast.
        return np.take(table, x.astype(np.int32).astype(np.intp), mode="clip")

    # ---- the other node kinds: same operations on float32 codes
    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: np.ndarray) -> np.ndarray:
        return self._value(super().bse_encode(node, x), node)

    @impl(Gather)
    def gather(self, node: Gather, ids: np.ndarray) -> np.ndarray:
        table = cached(self._cc, (node.table, "f32table"), lambda: np.asarray(self.graph.constants[node.table],
                                                                                np.float32)) \
            if _f32_code(node.type) else self.const(node.table)
        if ids.dtype.kind not in "iu":  # an index code input held as float32 codes: exact small integers
            ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            what = "index code" if isinstance(self.graph.type_of(node.inputs[0]), CodeType) else "token id"
            raise IndexError(f"{what} out of range [0, {table.shape[0]}) in gather %{node.name}")
        return table[ids]

    @impl(Transpose)
    def transpose(self, node: Transpose, x: np.ndarray) -> np.ndarray:
        """A view (no copy): every consumer here accepts strided operands (a reshape copies if it must)."""
        return np.transpose(x, (0,) + tuple(p + 1 for p in node.perm))

    @impl(Concat)
    def concat(self, node: Concat, *xs: np.ndarray) -> np.ndarray:
        """Operands in this node's representation first, so mixed inputs cannot promote to float64."""
        return super().concat(node, *[self._value(x, node) for x in xs])

    @impl(Mask)
    def mask(self, node: Mask, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32 or abs(node.fill) > _F32_EXACT:
            return self._generic(node, x)
        return np.where(self.const(node.mask), np.float32(node.fill), x)
