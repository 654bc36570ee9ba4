"""Compiled artifacts: a directory with ``graph.lir``, ``weights.npz`` and ``manifest.json``.

``load`` also accepts a bare ``.lir`` file (with a ``weights.npz`` beside it, if any).
Weights are read with ``allow_pickle=False``: an artifact can never execute code on load.

Saving is atomic and versioned, because a half-written artifact runs and gives wrong codes
(a re-compile killed after ``graph.lir`` left the new graph with the old weights):

* every file is written into a temporary sibling directory (``.NAME.tmp-*``), flushed to disk,
  and the directory is then swapped with the old one in one ``renameat2(RENAME_EXCHANGE)`` (two
  renames where the file system lacks it). A reader sees the whole old artifact or the whole new
  one; stale files of a previous compile (``partition.json``, ``lava/`` of an earlier loihi2
  compile) cannot survive, because the new directory never had them.
* the manifest carries :data:`FORMAT_VERSION` and the SHA-256 of every file; :func:`load` refuses a
  newer format and a directory whose ``graph.lir`` / ``weights.npz`` / ``partition.json`` do not
  match (a torn or edited artifact). A bare ``.lir`` file is the debugging route: loading it by
  name skips the hash check of that file, so an edited graph can still be run on purpose.
* one writer at a time: :func:`artifact_lock` holds an ``flock`` on ``.NAME.lock`` beside the
  directory (released by the kernel if the process dies); a second writer gets a clear error.

Running (:meth:`Artifact.run`) belongs above the IR layer (tests/test_layers.py: ``ir`` imports nothing
above it), so this module does not import the runtime: :mod:`lasercc.runtime` registers its
``run_graph`` here with :func:`register_runner` when it is imported. If nothing is registered yet,
``Artifact.run`` asks the package root facade (``lasercc.run_graph``, resolved lazily), which imports
the runtime and so registers it; ``from lasercc.ir.artifact import Artifact`` and ``lasercc.Artifact``
both keep working without the caller importing the runtime first.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lasercc.errors import ArtifactError, InputError, LasercError, boundary
from lasercc.ir.data import read_npz as read_npz_arrays  # noqa: F401 - the one .npz reader, re-exported
from lasercc.ir.graph import ConstSpec, Graph
from lasercc.ir.text import parse_graph, print_graph

GRAPH_FILE = "graph.lir"
WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "manifest.json"
PARTITION_FILE = "partition.json"  # same name as lasercc.passes.partition.PARTITION_FILE (a higher layer)

# Version of the directory layout and manifest schema. 1: manifest has "format_version" and
# "files" {relative path: {"sha256", "bytes"}}. Manifests without "format_version" are format 0
# (written before hashes existed): loaded without a hash check.
FORMAT_VERSION = 1
# Files whose hash load() checks: what load and the CLI verbs read (lava/ is checked by nobody but
# Lava's own run, which reads a fresh copy written by lava_runner).
CHECKED_FILES = (GRAPH_FILE, WEIGHTS_FILE, PARTITION_FILE)

# Test hook for fault injection (tests/test_artifact_atomic.py): called with the name of each step
# of a save; the default does nothing.
fault_point: Callable[[str], None] = lambda step: None  # noqa: E731


def _version() -> str:
    from lasercc import __version__

    return __version__


# The graph runner behind Artifact.run: lasercc.runtime.run_graph, registered by lasercc.runtime.
_RUNNER: Callable[..., Any] | None = None


def register_runner(fn: Callable[..., Any]) -> None:
    """Set the function :meth:`Artifact.run` calls as ``fn(graph, inputs, backend=, mode=, device=)``,
    returning an object with ``codes``, ``values`` and ``stats`` (a :class:`lasercc.runtime.RunResult`)."""
    global _RUNNER
    _RUNNER = fn


def _runner() -> Callable[..., Any]:
    if _RUNNER is None:
        import lasercc

        lasercc.run_graph  # noqa: B018 - the package facade imports lasercc.runtime, which registers itself
    if _RUNNER is None:
        raise LasercError("no graph runner registered: import lasercc.runtime before calling Artifact.run")
    return _RUNNER


@dataclass
class Artifact:
    """A compiled spiking program: its graph, manifest, and the statistics of the last run."""

    graph: Graph
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, bytes | str] = field(default_factory=dict)

    def run(self, inputs: dict[str, np.ndarray], backend: str = "numpy", mode: str = "codes",
            device: str = "cpu", output: str = "float") -> dict[str, np.ndarray]:
        """Run on ``inputs`` (one array per graph input, rows stacked on axis 0).

        Returns dequantized float32 outputs (``output="float"``) or the int64 codes
        (``output="codes"``); both are kept in ``self.last`` and statistics in ``self.stats``.
        """
        run_graph = _runner()
        if output not in ("float", "codes"):
            raise LasercError(f"output must be 'float' or 'codes', got {output!r}")
        res = run_graph(self.graph, inputs, backend=backend, mode=mode, device=device)
        self.last = res
        self.stats = res.stats
        return res.values if output == "float" else res.codes

    @boundary
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the artifact to ``directory`` atomically (see the module docstring).

        ``directory`` may not exist, be empty, or hold a previous artifact (which is replaced as a
        whole); any other existing path is refused rather than overwritten.
        """
        lazy = [k for k, v in self.graph.constants.items() if isinstance(v, ConstSpec)]
        if lazy:
            raise LasercError(f"cannot save shape-only constants: {', '.join(lazy[:5])}")
        d = output_dir(directory)
        with artifact_lock(d):
            check_replaceable(d)
            manifest = self._write_replace(d)
        self.manifest = manifest
        self.path = d
        return d

    def _write_replace(self, d: Path) -> dict[str, Any]:
        from lasercc.ir.analysis import critical_path

        _remove_leftovers(d)
        tmp = d.parent / f".{d.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            fault_point("mkdir")
            files: dict[str, dict[str, Any]] = {}
            files[GRAPH_FILE] = _write_file(tmp / GRAPH_FILE, print_graph(self.graph).encode())
            fault_point(GRAPH_FILE)
            with open(tmp / WEIGHTS_FILE, "wb") as f:
                np.savez(f, **self.graph.constants.arrays())  # type: ignore[arg-type]
                f.flush()
                os.fsync(f.fileno())
            files[WEIGHTS_FILE] = _file_entry(tmp / WEIGHTS_FILE)
            fault_point(WEIGHTS_FILE)
            for rel, content in self.extra_files.items():
                p = tmp / rel
                bad = rel in (GRAPH_FILE, WEIGHTS_FILE, MANIFEST_FILE) or ".." in Path(rel).parts
                if bad or Path(rel).is_absolute():
                    raise LasercError(f"extra artifact file {rel!r} may not replace a core file or leave the directory")
                p.parent.mkdir(parents=True, exist_ok=True)
                files[rel] = _write_file(p, content if isinstance(content, bytes) else content.encode())
                fault_point(rel)
            manifest = {"lasercc_version": _version(), "graph": self.graph.name, **self.manifest,
                        "latency_steps": critical_path(self.graph), "format_version": FORMAT_VERSION,
                        "files": dict(sorted(files.items()))}
            text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
            _write_file(tmp / MANIFEST_FILE, text.encode())
            fault_point(MANIFEST_FILE)
            _fsync_dir(tmp)
            _swap_into_place(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return manifest


def output_dir(directory: str | os.PathLike) -> Path:
    """The absolute artifact directory for ``directory``, refusing an empty name (``-o ""`` would
    otherwise write into the current directory) and following a symlink to its target (the link
    itself stays, its target is replaced)."""
    if not str(directory).strip():
        raise InputError("the output directory name is empty; pass a directory such as -o out/model")
    d = Path(os.path.abspath(directory))
    if d.is_symlink():
        d = Path(os.path.realpath(d))
    if d.parent == d:
        raise InputError(f"cannot write an artifact to the root directory {d}")
    return d


def check_replaceable(d: Path) -> None:
    """Refuse to replace anything but nothing, an empty directory, or a previous artifact (a clear
    error instead of deleting a user's files or failing half-way on an existing file)."""
    _ensure_parent(d)
    if not d.exists():
        return
    if not d.is_dir():
        raise InputError(f"{d} exists and is not a directory; choose another output directory (-o) or remove it")
    names = {p.name for p in d.iterdir()}
    if names and MANIFEST_FILE not in names and GRAPH_FILE not in names:
        shown = ", ".join(sorted(names)[:4]) + (", ..." if len(names) > 4 else "")
        raise InputError(f"{d} exists and is not a lasercc artifact (it holds {shown}); choose another output "
                         "directory (-o) or empty it first")


def _ensure_parent(d: Path) -> None:
    """Create the missing parents of ``d``, naming the ancestor that is a file when one is."""
    if d.parent.is_dir():
        return
    anc = d.parent
    while not anc.exists() and anc.parent != anc:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"cannot create {d}: {anc} is not a directory")
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {d.parent}: {e.strerror or e}") from None


def _write_file(p: Path, data: bytes) -> dict[str, Any]:
    with open(p, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _file_entry(p: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(p), "bytes": p.stat().st_size}


def sha256_file(p: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (weights may be hundreds of MiB)."""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False when unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_into_place(tmp: Path, d: Path) -> None:
    """Make ``tmp`` the artifact at ``d``; the previous one (if any) is deleted afterwards."""
    if not d.exists():
        os.rename(tmp, d)
        fault_point("renamed")
        _fsync_dir(d.parent)
        return
    if _exchange(tmp, d):  # tmp now holds the old artifact
        fault_point("exchanged")
        _fsync_dir(d.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = d.parent / f".{d.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # pragma: no cover - non-Linux
    os.rename(d, old)
    fault_point("moved-old")
    os.rename(tmp, d)
    _fsync_dir(d.parent)
    shutil.rmtree(old, ignore_errors=True)


def _leftovers(d: Path) -> list[Path]:
    return sorted(d.parent.glob(f".{d.name}.tmp-*")) + sorted(d.parent.glob(f".{d.name}.old-*"))


def _remove_leftovers(d: Path) -> None:
    """Temporary directories of saves that were killed (only called under the lock, so none is live)."""
    for p in _leftovers(d):
        shutil.rmtree(p, ignore_errors=True)


_held: set[Path] = set()
_held_guard = threading.Lock()


@contextlib.contextmanager
def artifact_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Exclusive right to write the artifact ``directory`` (re-entrant within one process).

    The lock is an ``flock`` on ``.NAME.lock`` in the parent directory: the kernel releases it when
    the holder dies, so a killed compile never leaves the directory locked. A second writer fails at
    once with an :class:`~lasercc.errors.ArtifactError` instead of racing the first. The CLI's
    ``compile`` takes it before compiling, so a concurrent compile fails in a second, not at the end.
    """
    d = output_dir(directory)
    with _held_guard:
        if d in _held:
            reentrant = True
        else:
            reentrant = False
            _held.add(d)
    if reentrant:
        yield d
        return
    fd = None
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: no lock, saves stay atomic
            yield d
            return
        _ensure_parent(d)
        lock = d.parent / f".{d.name}.lock"
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise InputError(f"cannot create the lock file {lock}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                fd = None
                raise ArtifactError(f"{d} is being written by another lasercc process (lock {lock}); wait for it "
                                    "or choose another output directory") from None
            try:  # the file we locked must still be the one at that path (a finishing holder unlinks it)
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = None
        yield d
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(d.parent / f".{d.name}.lock")
            os.close(fd)
        with _held_guard:
            _held.discard(d)


@boundary
def load(path: str | os.PathLike) -> Artifact:
    """Load an artifact directory or a ``.lir`` file; the graph is verified, the files' hashes and the
    format version are checked against the manifest (see the module docstring)."""
    if not str(path).strip():
        raise InputError("the artifact path is empty")
    p = Path(path)
    if not p.exists():
        left = _leftovers(Path(os.path.abspath(p))) if p.parent.exists() else []
        hint = f" (an interrupted save left {left[0].name} beside it; compile again)" if left else ""
        raise LasercError(f"no such artifact or IR file: {p}{hint}")
    if p.is_dir():
        lir, wfile, mfile = p / GRAPH_FILE, p / WEIGHTS_FILE, p / MANIFEST_FILE
        if not lir.exists():
            raise LasercError(f"{p} is not an artifact: it has no {GRAPH_FILE}")
    else:
        lir, wfile, mfile = p, p.with_name(WEIGHTS_FILE), p.with_name(MANIFEST_FILE)
        alt = p.with_suffix(".npz")
        if alt.exists() and alt != p:
            wfile = alt
    manifest = _read_manifest(mfile) if mfile.exists() else {}
    if p.is_dir():
        verify_files(p, manifest)
    if wfile.is_dir():
        raise InputError(f"{wfile} is a directory, not a weights file")
    weights = _load_weights(wfile) if wfile.exists() else {}
    if lir.is_dir():
        raise InputError(f"{lir} is a directory, not a {GRAPH_FILE} file")
    try:
        text = lir.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LasercError(f"{lir}: not a text IR file") from None
    except OSError as e:
        raise InputError(f"{lir}: cannot read ({e.strerror or e})") from None
    from lasercc.errors import ParseError

    try:
        graph = parse_graph(text, weights)
    except ParseError as e:
        err = ParseError(f"{lir}: {e}", None, None, e.token)
        err.line, err.column = e.line, e.column
        raise err from None
    missing = [k for k, v in graph.constants.items() if isinstance(v, ConstSpec)]
    if missing:
        raise LasercError(f"{wfile}: missing weights for constant(s) {', '.join('@' + m for m in missing[:8])}")
    graph.verify()
    return Artifact(graph=graph, manifest=manifest, path=p if p.is_dir() else p.parent)


def read_json_object(f: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``f`` (UTF-8), or an :class:`ArtifactError` naming the file: non-UTF-8 bytes, bad
    JSON and a non-object top level are all "corrupt", never a UnicodeDecodeError or AttributeError later."""
    try:
        data = json.loads(f.read_bytes().decode("utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ArtifactError(f"{f}: corrupt {what} ({e}); re-run lasercc compile") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{f}: corrupt {what} (a JSON object expected, got {type(data).__name__})")
    return data


def _read_manifest(mfile: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(mfile.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mfile}: corrupt manifest ({e}); re-run lasercc compile") from None
    except OSError as e:
        raise ArtifactError(f"{mfile}: cannot read ({e.strerror or e})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mfile}: corrupt manifest (a JSON object expected, got {type(manifest).__name__})")
    fv = manifest.get("format_version", 0)
    if not isinstance(fv, int) or isinstance(fv, bool) or fv < 0:
        raise ArtifactError(f"{mfile}: corrupt manifest (format_version {fv!r} is not a non-negative integer)")
    if fv > FORMAT_VERSION:
        raise ArtifactError(f"{mfile}: artifact format {fv} was written by a newer lasercc "
                            f"({manifest.get('lasercc_version', '?')}); this lasercc {_version()} reads format "
                            f"{FORMAT_VERSION} and older: upgrade lasercc or re-compile")
    if fv >= 1 and not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{mfile}: corrupt manifest (format {fv} needs a 'files' table of hashes)")
    return manifest


def verify_files(d: Path, manifest: dict[str, Any]) -> None:
    """Check the hashed files of an artifact directory against its manifest (format >= 1).

    A missing, extra or changed ``graph.lir`` / ``weights.npz`` / ``partition.json`` means a torn
    or hand-edited artifact: running it could give wrong codes with exit status 0, so it is refused.
    """
    if manifest.get("format_version", 0) < 1:
        return
    files = manifest["files"]
    for rel in CHECKED_FILES:
        f = d / rel
        entry = files.get(rel)
        if entry is None:
            if f.exists():
                raise ArtifactError(f"{f}: not part of this artifact (the manifest does not list it): a stale or "
                                    "foreign file; re-run lasercc compile")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise ArtifactError(f"{d / MANIFEST_FILE}: corrupt manifest (bad 'files' entry for {rel})")
        if not f.is_file():
            raise ArtifactError(f"{f}: missing from the artifact (a torn artifact); re-run lasercc compile")
        if sha256_file(f) != entry["sha256"]:
            raise ArtifactError(f"{f}: content does not match the manifest's sha256 (a torn or edited artifact); "
                                f"re-run lasercc compile, or load the .lir file itself to run an edited graph")


def _load_weights(path: Path) -> dict[str, np.ndarray]:
    try:
        return read_npz_arrays(path, "weights file")
    except InputError as e:
        raise ArtifactError(f"corrupt weights file: {e}") from None
