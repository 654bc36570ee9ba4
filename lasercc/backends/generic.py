"""What every executor shares, written once against the array namespace ``self.xp`` (NumPy or torch).

The two modes (:class:`.exec_codes.CodesExecutor`, :class:`.exec_spikes.SpikesExecutor`) derive from
:class:`XPExecutor`; a backend (:mod:`.numpy_ref`, :mod:`.torch_exec`) derives from the mode and
fills in only the hooks below -- where its values live and how it multiplies exactly:

``xp``
    the array namespace (:class:`.xp.NumpyXP` or :class:`.xp.TorchXP`);
``const(name)``
    a graph constant in the backend's representation (int64; bool masks stay bool);
``matmul_const(node, j, x, lo, hi)``
    the exact integer product ``x @ W_j`` for input ``j`` of a Soma (``x`` in ``[lo, hi]``);
``matmul_dyn(node, a, b)``
    the exact batched integer product of two decoded DecodeMAC operands;
``accept(node, array)``
    a graph input (validated) in the backend's representation; ``to_host(value)``: back to NumPy.

Arithmetic (quantization, requantization, ASNC, BSE) comes from :mod:`lasercc.semantics`;
statistics from :func:`.stats.node_stats`. Plans a backend makes (weight layouts, matmul plans)
are cached executor-side (:mod:`.plans` or the executor's own dicts), never on the IR.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from lasercc.backends.base import Executor, impl
from lasercc.backends.stats import NodeStats, node_stats
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import (
    ASNCSegment,
    Concat,
    DecodeMAC,
    Gather,
    Node,
    Reshape,
    Slice,
    Soma,
    SomaASNC,
    Take,
    Transpose,
)
from lasercc.ir.types import CodeType
from lasercc.semantics import asnc_evaluate, quantize, requantize


class XPExecutor(Executor):
    """Constants, statistics, the shared arithmetic and data movement of both modes (see module doc).

    ``axis0`` is the number of leading axes a value has beyond its IR shape: the time axis of a
    spike train, or the chunk axis of the stacked NumPy codes walk.
    """

    axis0: ClassVar[int] = 0
    xp: Any
    #: run_tensors: return outputs as they are (device tensors / trains), not as host codes
    _keep_on_device: bool = False

    def __init__(self, collect_stats: bool = True):
        self.collect_stats = collect_stats
        self._stats: dict[str, NodeStats] = {}

    def prepare(self, graph: Graph) -> None:
        super().prepare(graph)
        self._stats = {}

    # ---- hooks a backend fills in -------------------------------------------------------------
    def const(self, name: str) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: a backend provides const() (its constants as arrays)")

    def matmul_const(self, node: Soma | SomaASNC, j: int, x: Any, lo: int, hi: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: a backend provides matmul_const() (codes x constant "
                                  "weights, exact)")

    def matmul_dyn(self, node: DecodeMAC, a: Any, b: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: a backend provides matmul_dyn() (codes x codes, exact)")

    def accept(self, node: Node, array: Any) -> Any:
        return array

    def to_host(self, value: Any) -> np.ndarray:
        return self.xp.to_host(value)

    # ---- statistics ---------------------------------------------------------------------------
    def collected_stats(self) -> dict[str, Any]:
        out, self._stats = self._stats, {}
        return out

    def _record(self, node: Node, in_codes: list, out_codes: Any, spikes: int | None = None) -> None:
        s = node_stats(node, self.graph, in_codes, out_codes, spikes)
        if node.name in self._stats:
            self._stats[node.name].add(s)
        else:
            self._stats[node.name] = s

    # ---- arithmetic shared by both modes (the rules themselves live in semantics/) -------------
    def _pad(self, x: Any, rank: int) -> Any:
        """``x`` with its per-sample rank raised to ``rank`` by unit axes right after the leading axes,
        so that it broadcasts against per-sample parameters as one sample would (NumPy's right alignment)."""
        if not self.axis0:
            return x
        r = x.ndim - self.axis0
        if r >= rank:
            return x
        lead = tuple(x.shape[: self.axis0])
        return x.reshape(lead + (1,) * (rank - r) + tuple(x.shape[self.axis0:]))

    def quantize_input(self, node: Node, x: Any, lead: int = 0) -> Any:
        """Codes of real input ``x`` (``lead`` leading axes before the IR shape)."""
        t: CodeType = node.type  # type: ignore[assignment]
        axis = None if t.axis is None else t.axis + lead
        return quantize(x, np.asarray(t.scale), np.asarray(t.zero_point), t.bits, axis)

    def requant_soma(self, node: Soma, acc: Any) -> Any:
        out: CodeType = node.type  # type: ignore[assignment]
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize(acc, node.scale_in, np.asarray(node.scale_w, dtype=np.float32), out.scale_array(),
                          out.zero_point_array(), out.bits, node.requant)

    def decode_mac_codes(self, node: DecodeMAC, a: Any, b: Any) -> Any:
        """Requantized product of two code operands (already aligned for broadcasting)."""
        ta, tb = (self.graph.type_of(i) for i in node.inputs)
        out: CodeType = node.type  # type: ignore[assignment]
        da = a - int(ta.zero_point[0])  # type: ignore[union-attr]
        db = b - int(tb.zero_point[0])  # type: ignore[union-attr]
        acc = self.matmul_dyn(node, da, db) if node.form == "matmul" else da * db
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize(acc, ta.scale[0], tb.scale[0], out.scale_array(), out.zero_point_array(),  # type: ignore[union-attr]
                          out.bits, node.requant)

    def asnc_codes(self, node: ASNCSegment | SomaASNC, x: Any, segment: Any = None) -> Any:
        """The ASNC table on ``x`` (a code, or a fused SomaASNC's accumulator)."""
        if self.acc_observer is not None and isinstance(node, SomaASNC):
            self.acc_observer(node, x)
        return asnc_evaluate(x, self.const(node.thresholds), self.const(node.slopes), self.const(node.intercepts),
                             node.shift, node.type.bits, segment=segment)  # type: ignore[union-attr]

    def gather_codes(self, node: Gather, ids: Any) -> Any:
        """``table[ids]``: ``ids`` are token ids or, for an index code input, the codes themselves."""
        table = self.const(node.table)
        ids = self.xp.as_index(ids)
        if self.xp.numel(ids):
            lo, hi = self.xp.min_max(ids)
            if lo < 0 or hi >= table.shape[0]:
                what = "index code" if isinstance(self.graph.type_of(node.inputs[0]), CodeType) else "token id"
                raise IndexError(f"{what} out of range [0, {table.shape[0]}) in gather %{node.name}")
        return table[ids]

    # ---- data movement: the same code for code arrays and spike trains --------------------------
    def _ax(self, axis: int) -> int:
        return axis + self.axis0

    @impl(Reshape)
    def reshape(self, node: Reshape, x: Any) -> Any:
        return x.reshape(tuple(x.shape[: self.axis0]) + tuple(node.type.shape))

    @impl(Transpose)
    def transpose(self, node: Transpose, x: Any) -> Any:
        return self.xp.permute(x, tuple(range(self.axis0)) + tuple(p + self.axis0 for p in node.perm))

    @impl(Slice)
    def slice_(self, node: Slice, x: Any) -> Any:
        for a, b, e, s in zip(node.axes, node.starts, node.stops, node.steps):
            x = self.xp.slice_axis(x, self._ax(a), b, e, s)
        return x

    @impl(Concat)
    def concat(self, node: Concat, *xs: Any) -> Any:
        return self.xp.concat(xs, self._ax(node.axis))

    @impl(Take)
    def take(self, node: Take, x: Any) -> Any:
        ax = self._ax(node.axis)
        n = x.shape[ax]
        return self.xp.take(x, [i % n for i in node.indices], ax)
