"""Running a graph on user data: input validation, batch chunking, dequantized outputs, statistics.

Inputs follow docs/contract.md section 5: one array per graph input name, samples stacked on axis 0. A
graph built for batch size B is fed B rows at a time (so 64 calibration rows work for a batch-1
model); the outputs of all chunks are concatenated back on axis 0. This layer is shared by every
backend, so the same bad input gives the same one-line error everywhere.

It lives at the backends level (not in :mod:`lasercc.runtime`, which re-exports it) so that layers
below the runtime -- the profiler, the Lava runner, ``passes.signed`` -- can run a graph without an
upward import (tests/test_layers.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lasercc import interrupts
from lasercc.backends import get_executor
from lasercc.backends.saturation import SATURATION_WARN, SaturationCounter, attach  # noqa: F401 - re-exported
from lasercc.backends.stats import NodeStats, summarize
from lasercc.errors import InputError, boundary
from lasercc.ir.data import NpzRows, widen_float
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Input
from lasercc.ir.types import CodeType, TensorType
from lasercc.semantics.quant import dequantize


@dataclass
class RunResult:
    """Outputs of a run: ``codes`` (int64) and ``values`` (dequantized float32) per output name."""

    codes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def validate_inputs(graph: Graph, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Check names, dtypes and shapes; return converted arrays and the number of chunks."""
    n_chunks = validate_shapes(graph, {k: (np.shape(v), np.asarray(v).dtype) for k, v in inputs.items()})
    return {n.name: _convert(n.name, n, np.asarray(inputs[n.name])) for n in graph.inputs}, n_chunks


_validate = validate_inputs  # the old private name, kept for existing callers


def validate_shapes(graph: Graph, shapes: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> int:
    """Check input names, dtype kinds and shapes from ``(shape, dtype)`` alone (no data: an
    :class:`~lasercc.ir.data.NpzRows` source is checked before its first row is read); return the number
    of chunks (batches of the graph's batch size)."""
    want = {n.name: n for n in graph.inputs}
    extra = sorted(set(shapes) - set(want))
    missing = sorted(set(want) - set(shapes))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise InputError(f"input names do not match the graph ({'; '.join(parts)}); the graph takes: "
                         + ", ".join(f"{n} {list(t.type.shape)}" for n, t in want.items()))
    chunks: int | None = None
    for name, node in want.items():
        got, dtype = tuple(shapes[name][0]), np.dtype(shapes[name][1])
        _convert(name, node, np.empty((0,), dtype))  # the dtype kind, before any data
        shape = tuple(node.type.shape)
        if not shape:
            if got != ():
                raise InputError(f"input {name!r}: expected a scalar, got shape {list(got)}")
            n_chunks = 1
        elif 0 in shape:  # an empty input (no values, no rows to batch): exactly its shape, any number of batches
            if got != shape:
                raise InputError(f"input {name!r}: expected the empty shape {list(shape)}, got {list(got)}")
            continue
        else:
            b = shape[0]
            if len(got) != len(shape) or got[1:] != shape[1:] or b == 0 or got[0] % b:
                raise InputError(f"input {name!r}: expected shape [n*{b}, {', '.join(map(str, shape[1:]))}] "
                                 f"(rows stacked on axis 0 in multiples of the batch size {b}), "
                                 f"got {list(got)}")
            n_chunks = got[0] // b
            if n_chunks == 0:
                raise InputError(f"input {name!r} has no rows (shape {list(got)}); give at least {b} row(s)")
        if chunks is not None and n_chunks != chunks:
            raise InputError("all inputs must hold the same number of batches of rows")
        chunks = n_chunks
    return chunks or 1


def _blocks(graph: Graph, inputs: Mapping[str, np.ndarray] | NpzRows
            ) -> tuple[int, Iterator[tuple[int, dict[str, np.ndarray]]]]:
    """The number of chunks and an iterator of ``(chunks in block, converted feeds)`` blocks of at most
    :data:`STACK_CHUNKS` chunks each: slices of in-memory arrays (validated and converted whole, first),
    or row blocks read from an :class:`NpzRows` source (shapes checked first, values block by block)."""
    rows = {n.name: (n.type.shape[0] if n.type.shape else 1) for n in graph.inputs}
    if isinstance(inputs, NpzRows):
        n_chunks = validate_shapes(graph, inputs.shapes())
        nodes = {n.name: n for n in graph.inputs}

        def read() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
            left = n_chunks
            for block in inputs.blocks({k: r * STACK_CHUNKS for k, r in rows.items()}, keys=list(rows)):
                k = min(STACK_CHUNKS, left)
                left -= k
                yield k, {name: _convert(name, nodes[name], v) for name, v in block.items()}

        return n_chunks, read()
    feeds, n_chunks = validate_inputs(graph, dict(inputs))

    def sliced() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for c0 in range(0, n_chunks, STACK_CHUNKS):
            c1 = min(c0 + STACK_CHUNKS, n_chunks)
            yield c1 - c0, {k: (v[c0 * rows[k]:c1 * rows[k]] if v.ndim and v.size else v) for k, v in feeds.items()}

    return n_chunks, sliced()


def _convert(name: str, node: Input, arr: np.ndarray) -> np.ndarray:
    t = node.type
    arr = widen_float(arr)  # bfloat16 (ml_dtypes) data: exactly float32
    if isinstance(t, TensorType) and t.dtype == "f32":
        if arr.dtype.kind not in "fiub":
            raise InputError(f"input {name!r}: expected real numbers, got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
            raise InputError(f"input {name!r}: contains NaN or infinity")
        return arr.astype(np.float32)
    if arr.dtype.kind not in ("iub" if isinstance(t, TensorType) else "iu"):  # bool masks are 0/1 integers
        raise InputError(f"input {name!r}: expected integer {'token ids' if isinstance(t, TensorType) else 'codes'}, "
                         f"got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if isinstance(t, CodeType) and arr.size and (arr.min() < 0 or arr.max() > t.hi):
        raise InputError(f"input {name!r}: codes must lie in [0, {t.hi}] for {t.bits} bits")
    return arr


# At most this many batches go through the stacked NumPy codes executor at once (bounds memory).
STACK_CHUNKS = 64

def _stackable(graph: Graph, backend: str, mode: str, executor: Any, n_chunks: int) -> bool:
    """Whether the NumPy codes mode may run its batches as chunk-stacked walks (:class:`NumpyCodesF32`):
    the default executor and no scalar input or output (they have no batch axis). One chunk qualifies
    too: the float32 executor is faster than the plain one even without stacking."""
    return (executor is None and backend == "numpy" and mode == "codes" and n_chunks >= 1
            and all(n.type.shape for n in graph.inputs) and all(graph.type_of(o).shape for o in graph.outputs))


def _run_stacked(graph: Graph, ex: Any, feeds: dict[str, np.ndarray], n_chunks: int,
                 emit: Callable[[dict[str, np.ndarray]], None], per_node: dict[str, NodeStats]) -> None:
    """Batches ``STACK_CHUNKS`` at a time, each as one walk with a leading chunk axis (same codes, same stats)."""
    for c0 in range(0, n_chunks, STACK_CHUNKS):
        c1 = min(c0 + STACK_CHUNKS, n_chunks)
        block = {}
        for k, v in feeds.items():
            if not v.size:  # an empty input: its exact shape for every chunk
                block[k] = np.zeros((c1 - c0,) + v.shape, v.dtype)
                continue
            b = graph.node(k).type.shape[0]
            block[k] = v[c0 * b:c1 * b].reshape((c1 - c0, b) + v.shape[1:])
        res = ex.run(graph, block)
        emit({o: res.codes[o].reshape((res.codes[o].shape[0] * res.codes[o].shape[1],) + res.codes[o].shape[2:])
              for o in graph.outputs})  # not -1: zero-size outputs
        _merge(per_node, res.node_stats)


def _merge(per_node: dict[str, NodeStats], stats: dict[str, NodeStats]) -> None:
    for k, s in stats.items():
        if k in per_node:
            per_node[k].add(s)
        else:
            per_node[k] = s


def _dequantize(graph: Graph, name: str, codes: np.ndarray) -> np.ndarray:
    t: CodeType = graph.type_of(name)  # type: ignore[assignment]
    return dequantize(codes, np.asarray(t.scale), np.asarray(t.zero_point), t.axis)


@boundary
def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray] | NpzRows, backend: str = "numpy", mode: str = "codes",
              device: str = "cpu", collect_stats: bool = True, executor: Any = None,
              sink: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], None] | None = None) -> RunResult:
    """Run ``graph`` on ``inputs`` (validated and chunked by batch) and dequantize the outputs.

    The NumPy ``codes`` mode runs up to :data:`STACK_CHUNKS` batches per graph walk on the float32-valued
    executor :class:`lasercc.backends.numpy_f32.NumpyCodesF32` (identical codes and statistics, far less
    Python overhead per row); other backends and modes walk once per batch.

    ``inputs``: arrays by name, or an :class:`~lasercc.ir.data.NpzRows` source, read
    :data:`STACK_CHUNKS` batches at a time (with a ``sink``, memory is then flat in the number of rows).

    ``sink(codes, values)``: called with each block of output rows (in order) instead of collecting them;
    the result then has empty ``codes``/``values``. Why: ``simulate -o`` of 100k rows held every output
    row in memory twice (codes and values) before writing; a sink writes them as they come.
    """
    if backend == "numpy" and device != "cpu":
        raise InputError(f"device={device!r} needs backend='torch': the numpy backend runs on the CPU only")
    n_chunks, blocks = _blocks(graph, inputs)
    t0 = time.perf_counter()
    parts: dict[str, list[np.ndarray]] = {o: [] for o in graph.outputs}

    def emit(block: dict[str, np.ndarray]) -> None:
        if sink is None:
            for o, c in block.items():
                parts[o].append(c)
        else:
            sink(block, {o: _dequantize(graph, o, c) for o, c in block.items()})

    per_node: dict[str, NodeStats] = {}
    stacked = _stackable(graph, backend, mode, executor, n_chunks)
    if stacked:
        from lasercc.backends.numpy_f32 import NumpyCodesF32

        ex = NumpyCodesF32(collect_stats)
    else:
        ex = executor or get_executor(backend, mode, device, collect_stats)
    sat = SaturationCounter(graph=graph) if collect_stats else None
    if sat is not None:
        attach(ex, sat)
    for nc, feeds in blocks:
        interrupts.check()  # a Ctrl-C that native code swallowed stops the run here (lasercc.interrupts)
        if stacked:
            _run_stacked(graph, ex, feeds, nc, emit, per_node)
            continue
        for c in range(nc):
            chunk = {}
            for k, v in feeds.items():
                b = graph.node(k).type.shape[0] if graph.node(k).type.shape else 1
                chunk[k] = v[c * b:(c + 1) * b] if v.ndim and v.size else v
            interrupts.check()
            res = ex.run(graph, chunk)
            emit({o: res.codes[o] for o in graph.outputs})
            _merge(per_node, res.node_stats)
    seconds = time.perf_counter() - t0
    codes = {} if sink is not None else \
        {o: (np.concatenate(p, axis=0) if p[0].ndim else p[0]) for o, p in parts.items()}
    values = {o: _dequantize(graph, o, c) for o, c in codes.items()}
    stats = summarize(per_node, graph) if collect_stats else {}
    if stats:
        stats["batches"] = n_chunks
        stats["saturation"] = sat.summary() if sat is not None else {}
    return RunResult(codes=codes, values=values, stats=stats, seconds=seconds)
