"""Data-parallel simulation over Ray: rows sharded across workers, outputs in input order, statistics
merged exactly, shards checkpointed so a killed run resumes.

Why Ray: a researcher who wants bit-exact spiking outputs (or perplexity) over thousands of sequences
needs more than one process, on one laptop or a cluster, without writing a scheduler. Ray gives both
with one call: a local instance started on demand (``pip install lasercc[distributed]``, nothing to
set up) or an existing cluster (``address``). Everything Ray-specific lives in this module.

How a run goes (:func:`run_distributed`):

* the rows are cut into **shards** of whole batches (a graph built for batch B takes B rows at a time,
  DESIGN.md section 5); shard ``k`` is a contiguous row range, so concatenating shard outputs in shard
  order *is* input order, whatever order the workers finish in;
* each shard is one Ray task running :func:`lasercc.runtime.run_graph` on its rows -- the same
  executor as a single process, so codes are identical by construction; the task returns codes, the
  per-node statistics and the saturation counts;
* statistics are **merged exactly**: every counter is an integer sum over batches (spikes, synaptic
  events, neuron updates, MACs, saturated codes), so the sum over shards equals the one-process total
  (tested as an identity);
* with a work directory, each finished shard is written atomically as ``shard-NNNNNN.npz`` beside a
  ``plan.json`` that fingerprints the graph, the inputs and the shard boundaries. ``resume=True``
  skips the shards already there (after checking the plan matches); a shard is written once, by the
  driver, so a task that ran twice cannot duplicate rows;
* a worker process that dies (killed, segfault) is retried by Ray (``max_retries``); application
  errors are not retried (the same rows would fail again). Out of memory, a Ray that cannot start, a
  cluster that cannot be reached and a missing shard are each one :class:`~lasercc.errors.LasercError`;
  the output file is only written (by the caller's sink, atomically) after every shard is in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lasercc.backends.stats import NodeStats, summarize
from lasercc.errors import ArtifactError, InputError, LasercError, ResourceError
from lasercc.ir.data import write_atomic
from lasercc.ir.graph import Graph
from lasercc.ir.types import CodeType

PLAN_FILE = "plan.json"
PLAN_VERSION = 1
# How often Ray re-runs a shard whose worker process died before giving up (system failures only).
MAX_RETRIES = 3
# Local Ray's shared-memory object store: Ray's default is 30% of RAM, far more than shards of rows
# need, and on a shared machine it is memory taken from everyone else.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024

# Test hook (fault injection, tests/test_distributed.py): shard index -> fault the worker raises on its
# first attempt: "die" (the worker process exits, as if killed) or "oom" (a MemoryError in the task).
FAULTS: dict[int, str] = {}

Progress = Callable[["ProgressInfo"], None]


@dataclass(frozen=True)
class ProgressInfo:
    """Where a distributed run stands, passed to the ``progress`` callback after every shard."""

    shards_done: int
    shards: int
    rows_done: int
    rows: int
    resumed: int  # shards taken from the work directory instead of computed
    seconds: float


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # first row
    stop: int  # one past the last row
    batches: int


def require_ray() -> Any:
    """The ``ray`` module, or an :class:`InputError` saying how to get it."""
    try:
        import ray  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise InputError("--workers needs Ray, which is not installed: pip install 'lasercc[distributed]' "
                         "(or pip install ray)") from None
    return ray


def plan_shards(graph: Graph, n_rows: int, workers: int, shard_rows: int | None = None) -> list[Shard]:
    """Contiguous shards of whole batches. Default size: about four shards per worker (so a slow or
    retried shard does not leave the others idle, and a killed run loses little), at least one batch."""
    batch = _batch(graph)
    if n_rows % batch:
        raise InputError(f"{n_rows} rows is not a multiple of the graph's batch size {batch}")
    chunks = n_rows // batch
    if shard_rows is not None:
        if shard_rows <= 0 or shard_rows % batch:
            raise InputError(f"--shard-rows must be a positive multiple of the batch size {batch}, got {shard_rows}")
        per = shard_rows // batch
    else:
        per = max(1, -(-chunks // (4 * max(workers, 1))))
    out = []
    for i, c0 in enumerate(range(0, chunks, per)):
        c1 = min(c0 + per, chunks)
        out.append(Shard(i, c0 * batch, c1 * batch, c1 - c0))
    return out


def _batch(graph: Graph) -> int:
    shapes = [tuple(n.type.shape) for n in graph.inputs]
    if not shapes or any(not s for s in shapes) or any(not graph.type_of(o).shape for o in graph.outputs):
        raise InputError("distributed simulation needs every graph input and output to have a batch axis "
                         "(rows on axis 0); run this graph without --workers")
    return shapes[0][0]


# ----------------------------------------------------------------------------------------------- workers


# Worker-side cache: graph object-store id -> the deserialized graph. A worker process runs many shards
# of one graph; rebuilding the validated Graph from the object store for each one cost more than a small
# shard's simulation. Holds one graph (a new run's graph replaces it).
_GRAPHS: dict[str, Graph] = {}


def _graph_of(boxed: list[Any]) -> Graph:
    """The graph behind ``[ObjectRef]`` (boxed so Ray does not resolve it before the cache is asked)."""
    import ray  # noqa: PLC0415 - in the worker process

    ref = boxed[0]
    key = ref.hex()
    if key not in _GRAPHS:
        _GRAPHS.clear()
        _GRAPHS[key] = ray.get(ref)
    return _GRAPHS[key]


def _shard_task(boxed_graph: list[Any], rows: dict[str, np.ndarray], backend: str, mode: str, device: str,
                fault: str | None, marker: str | None) -> dict[str, Any]:
    """One shard on one worker: run the rows, return codes and integer statistics (never floats that
    would make a merge inexact)."""
    from lasercc.runtime import run_graph  # noqa: PLC0415 - imported in the worker process

    graph = _graph_of(boxed_graph)

    if fault is not None and marker is not None and not os.path.exists(marker):
        Path(marker).touch()  # first attempt only: the retry must succeed
        if fault == "die":
            os._exit(77)
        if fault == "oom":
            raise MemoryError("injected")
    t0 = time.perf_counter()
    res = run_graph(graph, rows, backend=backend, mode=mode, device=device)
    return {"codes": res.codes, "nodes": res.stats.get("nodes", {}), "saturation": res.stats.get("saturation", {}),
            "batches": res.stats.get("batches", 0), "seconds": time.perf_counter() - t0, "pid": os.getpid()}


# ------------------------------------------------------------------------------------------ merging stats


class StatsMerger:
    """Exact sums of per-shard statistics (every counter is an integer sum over batches)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: dict[str, NodeStats] = {}
        self.sat: dict[str, list] = {}  # node -> [op, kind, count, total]
        self.batches = 0
        self._sat_batches: list[tuple[int, set[str]]] = []

    def add(self, part: dict[str, Any]) -> None:
        for k, d in part["nodes"].items():
            s = NodeStats(op=d["op"], spikes=int(d["spikes"]), synaptic_events=int(d["synaptic_events"]),
                          neuron_updates=int(d["neuron_updates"]), macs=int(d["macs"]))
            if k in self.nodes:
                self.nodes[k].add(s)
            else:
                self.nodes[k] = s
        b = int(part["batches"])
        self.batches += b
        for k, d in part["saturation"].items():
            rec = self.sat.setdefault(k, [d["op"], d["kind"], 0, 0])
            rec[2] += int(d["count"])
            rec[3] += int(d["total"])
        self._sat_batches.append((b, set(part["saturation"])))

    def result(self) -> dict[str, Any]:
        if not self.nodes and not self.batches:
            return {}
        stats = summarize(self.nodes, self.graph)
        stats["batches"] = self.batches
        sat = {}
        for k, (op, kind, n, tot) in self.sat.items():
            # a shard where the node saturated nothing does not list it; its codes still count in the total
            t = self.graph.type_of(k)
            per_batch = int(np.prod(t.shape)) if isinstance(t, CodeType) else 0
            tot += sum(b * per_batch for b, names in self._sat_batches if k not in names)
            sat[k] = {"op": op, "kind": kind, "count": n, "total": tot, "fraction": n / tot if tot else 0.0}
        stats["saturation"] = dict(sorted(sat.items(), key=lambda kv: -kv[1]["fraction"]))
        return stats


# ------------------------------------------------------------------------------------ the work directory


def fingerprint(graph: Graph, inputs: dict[str, np.ndarray], backend: str, mode: str) -> str:
    """SHA-256 over the graph text, its weights and the input rows: a work directory made for other
    inputs or another graph must not be resumed into this run's output."""
    from lasercc.ir.text import print_graph  # noqa: PLC0415

    h = hashlib.sha256()
    h.update(print_graph(graph).encode())
    for k in sorted(graph.constants.arrays()):
        a = np.ascontiguousarray(graph.constants[k])
        h.update(f"{k}{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    for k in sorted(inputs):
        a = np.ascontiguousarray(inputs[k])
        h.update(f"{k}{a.dtype}{a.shape}".encode())
        for i in range(0, a.shape[0] if a.ndim else 1, 4096):  # a memory-mapped input is read in pieces
            h.update(memoryview(np.ascontiguousarray(a[i:i + 4096] if a.ndim else a)).cast("B"))
    h.update(f"{backend}/{mode}".encode())
    return h.hexdigest()


def work_dir_for(output: str | os.PathLike) -> Path:
    """The work directory of an output file: a hidden sibling, so it is on the same file system and a
    user sees where it is."""
    p = Path(output)
    return p.parent / f".{p.name}.shards"


class WorkDir:
    """Finished shards on disk, one atomic ``.npz`` each, and the plan they belong to."""

    def __init__(self, path: Path, plan: dict[str, Any], resume: bool) -> None:
        self.path = path
        self.plan = plan
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} exists and is not a directory (the shard work directory)")
        old = path / PLAN_FILE
        if resume and old.exists():
            try:
                prev = json.loads(old.read_text())
            except (OSError, ValueError) as e:
                raise ArtifactError(f"{old}: unreadable plan ({e}); remove {path} and run without --resume") from None
            if prev != plan:
                why = [k for k in ("fingerprint", "rows", "shards", "outputs") if prev.get(k) != plan.get(k)]
                raise InputError(f"{path} holds shards of a different run ({', '.join(why) or 'plan'} differ: other "
                                 f"inputs, graph or --shard-rows); remove it or run without --resume")
        else:
            self.clear()
        path.mkdir(parents=True, exist_ok=True)
        write_atomic(path / PLAN_FILE, lambda f: f.write(json.dumps(plan, indent=1, sort_keys=True).encode()))

    def clear(self) -> None:
        if self.path.is_dir():
            for p in list(self.path.glob("shard-*.npz")) + [self.path / PLAN_FILE]:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            for p in self.path.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def file(self, k: int) -> Path:
        return self.path / f"shard-{k:06d}.npz"

    def done(self) -> set[int]:
        out = set()
        for p in self.path.glob("shard-*.npz"):
            with contextlib.suppress(ValueError):
                out.add(int(p.stem.split("-")[1]))
        return out

    def write(self, k: int, part: dict[str, Any]) -> None:
        arrays = {f"codes/{o}": c for o, c in part["codes"].items()}
        meta = {"nodes": part["nodes"], "saturation": part["saturation"], "batches": part["batches"]}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        write_atomic(self.file(k), lambda f: np.savez(f, **arrays))

    def read(self, k: int, shard: Shard, graph: Graph) -> dict[str, Any]:
        f = self.file(k)
        if not f.is_file():
            raise ArtifactError(f"shard {k} (rows {shard.start}..{shard.stop - 1}) is missing from {self.path}; "
                                "run again with --resume to recompute it")
        try:
            with np.load(f, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                codes = {o: z[f"codes/{o}"] for o in graph.outputs}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ArtifactError(f"{f}: corrupt shard ({type(e).__name__}: {e}); delete it and run again with "
                                "--resume") from None
        for o, c in codes.items():
            want = (shard.stop - shard.start, *graph.type_of(o).shape[1:])
            if c.shape != want:
                raise ArtifactError(f"{f}: output {o} has shape {list(c.shape)}, the plan says {list(want)}; "
                                    "delete it and run again with --resume")
        return {"codes": codes, **meta}

    def remove(self) -> None:
        self.clear()
        with contextlib.suppress(OSError):
            self.path.rmdir()


# -------------------------------------------------------------------------------------------------- Ray


def _check_address(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at a Ray address (``ray.init`` retries a
    missing GCS for a long time before it gives up)."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address!r}: expected HOST:PORT of a Ray head node, 'auto' or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as e:
        raise InputError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one with `ray start "
                         "--head` or drop --address to use a local Ray") from None


@contextlib.contextmanager
def ray_session(workers: int, address: str | None = None) -> Iterator[Any]:
    """An initialised Ray: the caller's if it already runs one, else a local one started here (and shut
    down on exit) or a connection to ``address``. Errors are one :class:`LasercError`."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is not None:
        _check_address(address)
    tmp = os.environ.get("LASERCC_RAY_TMPDIR") or os.path.join(tempfile.gettempdir(), f"lasercc-ray-{os.getuid()}")
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        kw.update(num_cpus=workers, object_store_memory=LOCAL_OBJECT_STORE_BYTES, _temp_dir=tmp)
    try:
        ray.init(address=address, **kw)
    except (OSError, RuntimeError, ValueError, ray.exceptions.RayError) as e:  # what ray.init raises when it
        # cannot start or connect (its temp dir, the GCS, a bad address); anything else is a bug and escapes
        with contextlib.suppress(Exception):
            ray.shutdown()
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        where = f"connect to the Ray cluster at {address}" if address else f"start a local Ray (temp dir {tmp})"
        raise ResourceError(f"cannot {where}: {type(e).__name__}: {first}") from None
    try:
        yield ray
    finally:
        _PUT.clear()
        ray.shutdown()


def _error_of(ray: Any, e: BaseException, shard: Shard) -> LasercError | None:
    """The library error for a failed shard task, or None for a bug (re-raised as it is)."""
    where = f"shard {shard.index} (rows {shard.start}..{shard.stop - 1})"
    exc = ray.exceptions
    if isinstance(e, getattr(exc, "OutOfMemoryError", ())):
        return ResourceError(f"a Ray worker ran out of memory on {where}; use smaller shards (--shard-rows), fewer "
                             "workers per machine, or machines with more memory")
    if isinstance(e, (exc.WorkerCrashedError, exc.NodeDiedError)) or type(e).__name__ == "ActorDiedError":
        return ResourceError(f"the Ray worker running {where} died {MAX_RETRIES + 1} times (killed, or out of "
                             f"memory); nothing was written for it -- run again with --resume")
    if isinstance(e, exc.RayTaskError):
        cause = getattr(e, "cause", None)
        if isinstance(cause, LasercError):
            return type(cause)(f"{where}: {cause}")
        if isinstance(cause, MemoryError):
            return ResourceError(f"out of memory on {where}; use smaller shards (--shard-rows) or fewer workers per "
                                 "machine")
        return None
    if isinstance(e, exc.RayError):
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return ResourceError(f"Ray failed on {where}: {type(e).__name__}: {first}")
    return None


def run_distributed(graph: Graph, inputs: dict[str, np.ndarray], *, workers: int, address: str | None = None,
                    backend: str = "numpy", mode: str = "codes", device: str = "cpu",
                    work_dir: str | os.PathLike | None = None, resume: bool = False, shard_rows: int | None = None,
                    sink: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], None] | None = None,
                    commit: Callable[[], None] | None = None, progress: Progress | None = None) -> Any:
    """Run ``graph`` on ``inputs`` sharded across ``workers`` Ray workers; same result as
    :func:`lasercc.runtime.run_graph` (a :class:`~lasercc.runtime.RunResult`: codes and values in input
    order, statistics merged exactly), plus ``stats["distributed"]`` (workers, shards, resumed, address).

    ``work_dir``: checkpoint each finished shard there (``resume=True`` reuses the ones a killed run left).
    ``sink(codes, values)``: receives the output rows shard by shard in input order instead of keeping them
    (as in ``run_graph``); ``commit()`` is called after the last block (the caller renames its output into
    place), and only then is the work directory removed.
    """
    from lasercc.runtime import RunResult, _dequantize, _validate  # noqa: PLC0415

    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if backend == "lava":
        raise InputError("workers run the numpy or torch backend; the lava backend runs in one process")
    if resume and work_dir is None:
        raise InputError("--resume needs an output file (-o): the finished shards are kept beside it")
    feeds, _ = _validate(graph, inputs)
    n_rows = next(iter(feeds.values())).shape[0]
    shards = plan_shards(graph, n_rows, workers, shard_rows)
    t0 = time.perf_counter()
    wd = None
    if work_dir is not None:
        plan = {"version": PLAN_VERSION, "fingerprint": fingerprint(graph, feeds, backend, mode), "rows": n_rows,
                "shards": [[s.start, s.stop] for s in shards], "outputs": list(graph.outputs)}
        wd = WorkDir(Path(work_dir), plan, resume)
    done = wd.done() & {s.index for s in shards} if wd is not None else set()
    merger = StatsMerger(graph)
    parts: dict[int, dict[str, Any]] = {}  # finished, not yet emitted (no work dir) or just its stats
    next_emit = 0
    outputs: dict[str, list[np.ndarray]] = {o: [] for o in graph.outputs}

    def emit_ready() -> None:
        nonlocal next_emit
        while next_emit < len(shards) and next_emit in parts:
            s = shards[next_emit]
            part = parts.pop(next_emit)
            codes = part["codes"] if wd is None else wd.read(s.index, s, graph)["codes"]
            if sink is None:
                for o in graph.outputs:
                    outputs[o].append(codes[o])
            else:
                sink(codes, {o: _dequantize(graph, o, c) for o, c in codes.items()})
            next_emit += 1

    def report() -> None:
        if progress is not None:
            n = len(finished)
            progress(ProgressInfo(n, len(shards), sum(shards[k].stop - shards[k].start for k in finished), n_rows,
                                  len(done), time.perf_counter() - t0))

    finished: set[int] = set()
    for k in sorted(done):  # resumed shards: statistics from disk, rows read back when their turn comes
        part = wd.read(k, shards[k], graph)  # type: ignore[union-attr]
        merger.add(part)
        parts[k] = {"codes": None}
        finished.add(k)
    todo = [s for s in shards if s.index not in done]

    def on_result(s: Shard, part: dict[str, Any]) -> None:
        merger.add(part)
        if wd is not None:
            wd.write(s.index, part)
            parts[s.index] = {"codes": None}
        else:
            parts[s.index] = part
        finished.add(s.index)
        report()
        emit_ready()

    try:
        if todo:
            with ray_session(workers, address) as ray:
                report()
                _schedule(ray, graph, feeds, todo, workers, backend, mode, device, on_result)
    except BaseException:
        if wd is not None and not wd.done():
            wd.remove()  # nothing computed: leave no trace (a failed start must not look resumable)
        raise
    emit_ready()
    if not todo:
        report()
    if commit is not None:
        commit()
    if wd is not None:
        wd.remove()
    stats = merger.result()
    stats["distributed"] = {"workers": workers, "shards": len(shards), "resumed": len(done),
                            "address": address or "local"}
    codes = {} if sink is not None else {o: np.concatenate(p, axis=0) for o, p in outputs.items()}
    values = {o: _dequantize(graph, o, c) for o, c in codes.items()}
    return RunResult(codes=codes, values=values, stats=stats, seconds=time.perf_counter() - t0)


_PUT: dict[tuple[int, str], tuple[Graph, Any]] = {}  # (id(graph), Ray job) -> (graph, its object-store ref)


def _put_graph(ray: Any, graph: Graph) -> Any:
    """The graph in the object store once per session (``eval`` runs one block after another)."""
    key = (id(graph), ray.get_runtime_context().get_job_id())  # a restarted Ray is a new job
    hit = _PUT.get(key)
    if hit is None or hit[0] is not graph:
        _PUT.clear()
        _PUT[key] = hit = (graph, ray.put(graph))
    return hit[1]


def _schedule(ray: Any, graph: Graph, feeds: dict[str, np.ndarray], todo: list[Shard], workers: int, backend: str,
              mode: str, device: str, on_result: Callable[[Shard, dict[str, Any]], None]) -> None:
    """Keep at most ``workers`` shard tasks in flight (bounded memory on the driver and the object store;
    with --address, N workers of a bigger cluster) and hand each result over as it arrives."""
    task = ray.remote(_shard_task).options(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)
    gref = _put_graph(ray, graph)
    markers = Path(tempfile.mkdtemp(prefix="lasercc-faults-")) if FAULTS else None
    pending: dict[Any, Shard] = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                s = queue.pop(0)
                rows = {k: v[s.start:s.stop] for k, v in feeds.items()}
                fault = FAULTS.get(s.index)
                ref = task.remote([gref], rows, backend, mode, device, fault,
                                  str(markers / f"{s.index}") if markers and fault else None)
                pending[ref] = s
            ready, _ = ray.wait(list(pending), num_returns=1)
            s = pending.pop(ready[0])
            try:
                part = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # every failure ray.get reports: mapped below, or re-raised
                err = _error_of(ray, e, s)
                if err is None:
                    raise
                raise err from None
            on_result(s, part)
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if markers is not None:
            shutil.rmtree(markers, ignore_errors=True)
