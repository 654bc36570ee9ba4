"""The NumPy backend: the generic executors of :mod:`.exec_codes` and :mod:`.exec_spikes` on NumPy.

Two modes that must produce identical codes (the test suite proves it on random graphs):

``codes``
    Values are int64 code arrays; every spiking node computes its result directly from codes
    (:class:`NumpyCodes`, the readable int64 reference). :func:`lasercc.runtime.run_graph` uses the
    fast variant :class:`~lasercc.backends.numpy_f32.NumpyCodesF32` (batches stacked on a leading axis,
    codes of at most 24 bits held as float32, per-node plans proven from the code types), which gives
    the same codes and statistics.
``spikes``
    Values are real BSE spike trains, uint8 arrays of shape ``(bits, *shape)``, MSB first (int8
    ternary trains for signed values); see :mod:`.exec_spikes`.

The node kinds are implemented once, in the generic executors; this module adds the NumPy hooks:
int64 constants (cached per constant table, executor-side), exact integer matmuls (BLAS in float32
or float64 where a proven bound keeps every partial sum an exact integer) and BLAS thread control.
Every rule comes from :mod:`lasercc.semantics`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ClassVar

import numpy as np

from lasercc.backends.exec_codes import CodesExecutor
from lasercc.backends.exec_spikes import SpikesExecutor
from lasercc.backends.generic import XPExecutor
from lasercc.backends.plans import CONSTANTS, GRAPHS, cached
from lasercc.backends.stats import node_stats
from lasercc.backends.xp import NUMPY_XP
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import DecodeMAC, Node, Soma, SomaASNC

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


def _absmax(x: np.ndarray) -> float:
    """max |x| as a float, without the temporary array of np.abs (two reductions instead)."""
    return float(max(int(x.max()), -int(x.min()))) if x.size else 0.0


def exact_int_batched_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = a.shape[-1]
    bound = _absmax(a) * _absmax(b) * k
    if bound < _F64_EXACT:  # sums of integer products below 2^53 are exact integers in float64: no rounding
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


class _NumpyBackend(XPExecutor):
    """The NumPy hooks of the generic executors: int64 constants and exact integer matmuls.

    Constants and their float copies are cached per constant table (:data:`.plans.CONSTANTS`):
    the table outlives the executor, which :func:`lasercc.runtime.run_graph` creates per call.
    """

    name: ClassVar[str] = "numpy"
    xp = NUMPY_XP

    def prepare(self, graph: Graph) -> None:
        super().prepare(graph)
        self._cc: dict = CONSTANTS.of(graph.constants)

    def const(self, name: str) -> np.ndarray:
        """Constant as int64 (bool masks stay bool)."""
        c = self._cc.get((name, "int64"))
        if c is None:
            a = np.asarray(self.graph.constants[name])
            c = self._cc[(name, "int64")] = a if a.dtype == np.bool_ else a.astype(np.int64)
        return c

    def const_float(self, name: str) -> dict:
        """Cache of float copies of a weight (for exact BLAS matmuls), keyed by dtype."""
        return cached(self._cc, (name, "float"), dict)

    def const_colsum(self, name: str) -> float:
        return cached(self._cc, (name, "colsum"),
                      lambda: float(np.abs(self.const(name)).sum(axis=0).max(initial=0)))

    def matmul_const(self, node: Soma | SomaASNC, j: int, x: np.ndarray, lo: int, hi: int) -> np.ndarray:
        w = node.weights[j]
        return exact_int_matmul(x, self.const(w), self.const_float(w), self.const_colsum(w))

    def matmul_dyn(self, node: DecodeMAC, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return exact_int_batched_matmul(a, b)


class NumpyCodes(_NumpyBackend, CodesExecutor):
    """``codes`` mode (:class:`.exec_codes.CodesExecutor`) on NumPy: the readable int64 reference.

    The speed work (codes held as float32, per-node plans, table lookups) lives in
    :class:`~lasercc.backends.numpy_f32.NumpyCodesF32`, which :func:`lasercc.runtime.run_graph` uses."""

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
        per_chunk = cached(GRAPHS.of(graph), "np.max_gemm_macs", lambda: _max_gemm_macs(graph))
        first = graph.inputs[0] if graph.inputs else None
        chunks = 1
        if first is not None and first.name in feeds:
            per = int(np.prod(first.type.shape, dtype=np.int64)) or 1
            chunks = max(1, int(np.asarray(feeds[first.name]).size) // per)
        return 1 if per_chunk * chunks <= self.SMALL_GEMM_MACS or _no_idle_core() else None

    def run(self, graph: Graph, feeds: dict[str, np.ndarray]):  # noqa: ANN201 - Executor.run's result
        with blas_threads(self._blas_threads_for(graph, feeds)):
            return super().run(graph, feeds)


class NumpyCodesStacked(NumpyCodes):
    """``codes`` mode on several batches at once: every value carries one extra leading axis (the chunk).

    :func:`lasercc.runtime.run_graph` feeds a graph built for batch B several B-row chunks; walking the
    graph once per chunk costs the Python overhead of every node per chunk, which dominates small
    models. Here each value has shape ``(C, *type.shape)`` and every node acts on the trailing axes
    exactly as it does on one chunk: the generic codes executor with ``axis0 = 1`` (data movement,
    WTA and per-axis encoders shift their axes; elementwise operands of lower rank are padded *after*
    the chunk axis; parameters broadcast right-aligned, i.e. per sample; Soma weights contract the
    last axis and DecodeMAC batches over equalised leading axes).

    So chunk c of every value equals what :class:`NumpyCodes` computes on chunk c alone; the codes are
    identical (tests/backends/test_numpy_fastpaths.py checks it on random graphs and the example
    models), and so are the statistics (see :meth:`observe`).
    """

    axis0: ClassVar[int] = 1

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


class NumpySpikes(_NumpyBackend, SpikesExecutor):
    """``spikes`` mode (:class:`.exec_spikes.SpikesExecutor`) on NumPy: uint8 BSE / int8 signed trains."""

    stack_steps: ClassVar[bool] = False


def numpy_executor(mode: str = "codes", collect_stats: bool = True) -> NumpyCodes | NumpySpikes:
    if mode == "codes":
        return NumpyCodes(collect_stats)
    if mode == "spikes":
        return NumpySpikes(collect_stats)
    raise ValueError(f"unknown mode {mode!r} (expected 'codes' or 'spikes')")
