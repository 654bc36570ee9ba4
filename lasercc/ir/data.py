"""Input data for a graph: the ``.npz`` input files of docs/contract.md section 5 and seeded synthetic inputs.

Why here, in ``ir``: reading a user's input file and making up inputs for a graph depend only on the
graph's input types, yet backends (the profiler, the Lava runner) need them as much as the CLI verbs
and the tests do. Kept in the CLI helpers (``commands.common``) and the test helpers
(``lasercc.testing``) they pulled backends up the layers; here every layer can use them.
``lasercc.testing.random_inputs`` re-exports :func:`random_inputs`. :func:`read_npz` reads every array
whole; :class:`NpzRows` streams row blocks of them (``simulate``'s input, memory flat in the row count).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from lasercc.errors import InputError
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import BSEEncode, Gather
from lasercc.ir.types import CodeType


def widen_float(a: Any) -> np.ndarray:
    """``a`` as an array, float32 when its dtype is a float type NumPy lacks (``ml_dtypes``' bfloat16 and 8-bit
    floats: dtype kind 'V', which arithmetic and range checks cannot read). Every such value is exactly a float32,
    so this is what a bfloat16 model widened on import (``frontends.onnx.widen``) takes; other arrays are
    returned as they are. Why at the data boundary: ONNX's own test data and torch exports hand such arrays
    over, and the calibration and run-time checks would refuse them as "not real numbers"."""
    a = np.asarray(a)
    if a.dtype.kind == "V" and a.dtype.name.startswith(("bfloat", "float")):
        return a.astype(np.float32)
    return a


def max_array_bytes() -> int:
    """The largest single array an ``.npz`` header may declare (see :mod:`lasercc.limits`): a crafted
    100-byte header can ask for terabytes, so it is refused before NumPy allocates."""
    from lasercc.limits import current

    return current().max_array_bytes


def read_npz(path: str | os.PathLike, what: str = "input file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (pickles refused, headers size-checked before allocation); every
    failure is an :class:`~lasercc.errors.InputError` naming the file."""
    p = _check_npz_path(path, what)
    limit = max_array_bytes()
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {}
            for k in z.files:
                _check_member(p, z, k, limit)
                out[k] = z[k]
            return out
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{p}: not enough memory to read it") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError, TypeError,
            NotImplementedError, RuntimeError) as e:
        raise InputError(f"{p}: cannot read as .npz ({type(e).__name__}: {e})") from None


def _check_npz_path(path: str | os.PathLike, what: str) -> Path:
    """The path of an existing ``.npz`` file (a zip archive), or an :class:`InputError` saying what it is."""
    if not str(path).strip():
        raise InputError(f"the {what} name is empty")
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such {what}: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not an .npz {what}")
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror or e})") from None
    if magic == b"\x93NUMPY":
        raise InputError(f"{p}: expected an .npz archive (one array per name), got a single array (.npy); "
                         "save with np.savez(path, name=array)")
    if not magic.startswith(b"PK"):
        raise InputError(f"{p}: cannot read as .npz (not a zip archive; save with np.savez(path, name=array))")
    return p


def _check_member(p: Path, z: Any, key: str, limit: int) -> None:
    """Read the ``.npy`` header of one member and refuse absurd declared sizes before loading it."""
    from numpy.lib import format as npformat

    names = set(z.zip.namelist())  # NpzFile._files is a dict in NumPy 2, a list in 1.x (the Lava env)
    name = f"{key}.npy" if f"{key}.npy" in names else key
    with z.zip.open(name) as f:
        version = npformat.read_magic(f)
        reader = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, _, dtype = reader(f)  # format 3.0 has 2.0's header layout (utf-8 names only)
    if dtype.hasobject:
        raise InputError(f"{p}: member {key!r} holds Python objects (pickles are refused)")
    n = dtype.itemsize
    for s in shape:
        n *= int(s)
    if n > limit:
        raise InputError(f"{p}: member {key!r} declares shape {list(shape)} of {dtype} ({n:,} bytes), over the "
                         f"limit of {limit:,} bytes; raise LASERCC_MAX_ARRAY_BYTES if this is intended")


@dataclass(frozen=True)
class NpzMember:
    """One array of an ``.npz`` as its ``.npy`` header declares it (nothing of its data read)."""

    key: str  # the name np.load gives it (the zip member name without ``.npy``)
    member: str  # the zip member name
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int  # bytes of magic + header before the data, inside the (uncompressed) member

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (one index of axis 0); a 0-d array is one "row"."""
        n = self.dtype.itemsize
        for s in self.shape[1:]:
            n *= int(s)
        return n

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if self.shape else 1


class NpzRows:
    """Row blocks of the arrays of an ``.npz``, read through :mod:`zipfile` without loading any array whole.

    Why: ``np.load(..., mmap_mode=...)`` does not map members of a zip archive, so ``simulate --input`` of
    100k rows held the whole input in memory before the first row ran. Here each member's ``.npy`` header is
    read first (the same checks as :func:`read_npz`: pickles refused, declared sizes against the archive's
    own sizes), then :meth:`blocks` streams fixed-size row blocks of every member in step, decompressing
    ``np.savez_compressed`` members on the way. Memory is one block per member, whatever the row count.

    A Fortran-ordered member of rank >= 2 has no contiguous rows: it is read whole. 0-d members are read
    whole (one value). Declared sizes are checked against :func:`max_array_bytes` as :func:`read_npz` does.
    Every failure is an :class:`~lasercc.errors.InputError` naming the file.
    """

    def __init__(self, path: str | os.PathLike, what: str = "input file") -> None:
        self.path = _check_npz_path(path, what)
        self.what = what
        try:
            with zipfile.ZipFile(self.path) as z:
                self.members = {m.key: m for m in (self._header(z, info) for info in z.infolist())}
        except InputError:
            raise
        except MemoryError:
            raise InputError(f"{self.path}: not enough memory to read it") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError, TypeError,
                NotImplementedError, RuntimeError) as e:
            raise InputError(f"{self.path}: cannot read as .npz ({type(e).__name__}: {e})") from None

    def _header(self, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> NpzMember:
        from numpy.lib import format as npformat

        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        with z.open(info) as f:
            version = npformat.read_magic(f)
            reader = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, fortran, dtype = reader(f)
            offset = f.tell()
        if dtype.hasobject:
            raise InputError(f"{self.path}: member {key!r} holds Python objects (pickles are refused)")
        m = NpzMember(key, info.filename, tuple(int(s) for s in shape), dtype, bool(fortran), offset)
        declared = m.row_bytes * m.rows if m.shape else dtype.itemsize
        limit = max_array_bytes()  # the same limit as read_npz, though only one block is ever held
        if declared > limit:
            raise InputError(f"{self.path}: member {key!r} declares shape {list(m.shape)} of {dtype} "
                             f"({declared:,} bytes), over the limit of {limit:,} bytes; raise "
                             "LASERCC_MAX_ARRAY_BYTES if this is intended")
        if offset + declared != info.file_size:
            raise InputError(f"{self.path}: member {key!r} declares shape {list(m.shape)} of {dtype} "
                             f"({declared:,} bytes) but holds {info.file_size - offset:,}; the file is truncated "
                             "or not written by NumPy")
        return m

    def shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Declared ``(shape, dtype)`` of every array, by name."""
        return {k: (m.shape, m.dtype) for k, m in self.members.items()}

    def blocks(self, rows: Mapping[str, int] | int, keys: Iterable[str] | None = None
               ) -> Iterator[dict[str, np.ndarray]]:
        """Consecutive row blocks of the named arrays (all by default), in step: block ``i`` of member ``k``
        holds its rows ``[i*rows[k], (i+1)*rows[k])`` (the last block may be shorter). Members with fewer
        blocks than others yield empty blocks at the end; 0-d members yield their value every time."""
        names = list(self.members if keys is None else keys)
        per = {k: (rows if isinstance(rows, int) else rows[k]) for k in names}
        if any(r <= 0 for r in per.values()):
            raise ValueError(f"rows per block must be positive, got {per}")
        n_blocks = max([-(-self.members[k].rows // per[k]) for k in names if self.members[k].shape] or [1])
        try:
            with zipfile.ZipFile(self.path) as z, contextlib.ExitStack() as stack:
                readers = {k: self._reader(z, stack, self.members[k]) for k in names}
                for _ in range(n_blocks):
                    yield {k: readers[k](per[k]) for k in names}
        except (InputError, GeneratorExit):
            raise
        except MemoryError:
            raise InputError(f"{self.path}: not enough memory to read it") from None
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error, RuntimeError) as e:
            raise InputError(f"{self.path}: cannot read as .npz ({type(e).__name__}: {e})") from None

    def _reader(self, z: zipfile.ZipFile, stack: contextlib.ExitStack, m: NpzMember):  # noqa: ANN202
        """A function ``n -> next n rows of m`` over one open member."""
        f = stack.enter_context(z.open(m.member))
        f.read(m.data_offset)
        if not m.shape or (m.fortran_order and len(m.shape) >= 2):
            whole = self._read_exact(f, m, m.rows * m.row_bytes if m.shape else m.dtype.itemsize)
            arr = np.frombuffer(whole, m.dtype).reshape(m.shape, order="F" if m.fortran_order else "C")
            pos = [0]

            def take_whole(n: int) -> np.ndarray:
                if not m.shape:
                    return arr
                out = arr[pos[0]:pos[0] + n]
                pos[0] += out.shape[0]
                return out

            return take_whole
        left = [m.rows]

        def take(n: int) -> np.ndarray:
            k = min(n, left[0])
            left[0] -= k
            data = self._read_exact(f, m, k * m.row_bytes)
            return np.frombuffer(data, m.dtype).reshape((k,) + m.shape[1:])

        return take

    def _read_exact(self, f: IO[bytes], m: NpzMember, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            b = f.read(min(n - got, 1 << 24))
            if not b:
                raise InputError(f"{self.path}: member {m.key!r} ends early ({got:,} of {n:,} bytes); the file "
                                 "is truncated")
            parts.append(b)
            got += len(b)
        return parts[0] if len(parts) == 1 else b"".join(parts)


def read_npz_blocks(path: str | os.PathLike, rows: Mapping[str, int] | int, what: str = "input file"
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Row blocks of every array of an ``.npz``, in step (``NpzRows(path, what).blocks(rows)``); the file's
    headers are checked before the first block is yielded. See :class:`NpzRows` for the shapes up front."""
    return NpzRows(path, what).blocks(rows)


def random_inputs(graph: Graph, seed: int, rows: int | None = None) -> dict[str, np.ndarray]:
    """Inputs for ``graph``: reals spanning each encoder's range, token ids, or codes."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    consumers = graph.users()
    for n in graph.inputs:
        shape = tuple(n.type.shape)
        if rows is not None and shape:
            shape = (rows * shape[0],) + shape[1:]
        if isinstance(n.type, CodeType):
            out[n.name] = rng.integers(0, n.type.hi + 1, size=shape).astype(np.int64)
        elif n.type.dtype == "i64":
            tables = [graph.constants[c.table].shape[0] for c in consumers[n.name] if isinstance(c, Gather)]
            out[n.name] = rng.integers(0, min(tables) if tables else 10, size=shape).astype(np.int64)
        else:
            encs = [c.type for c in consumers[n.name] if isinstance(c, BSEEncode) and isinstance(c.type, CodeType)]
            span = max([t.scale[0] * 2**t.bits for t in encs] + [1.0])
            out[n.name] = rng.uniform(-span / 1.6, span / 1.6, size=shape).astype(np.float32)
    return out


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through a temporary sibling and rename it into place: an interrupted write leaves the
    previous file (or none), never a truncated one that a later step would read as valid. One definition for
    the CLI's output files and the distributed runner's shard checkpoints."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
