"""Input data for a graph: the ``.npz`` input files of docs/contract.md section 5 and seeded synthetic inputs.

Why here, in ``ir``: reading a user's input file and making up inputs for a graph depend only on the
graph's input types, yet backends (the profiler, the Lava runner) need them as much as the CLI verbs
and the tests do. Kept in the CLI helpers (``commands.common``) and the test helpers
(``lasercc.testing``) they pulled backends up the layers; here every layer can use them.
``lasercc.testing.random_inputs`` re-exports :func:`random_inputs`. ``commands.common.read_npz`` is
still a copy of :func:`read_npz` (that file belongs to the CLI work; it should become a re-export).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from lasercc.errors import InputError
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import BSEEncode, Gather
from lasercc.ir.types import CodeType


def max_array_bytes() -> int:
    """The largest single array an ``.npz`` header may declare (see :mod:`lasercc.limits`): a crafted
    100-byte header can ask for terabytes, so it is refused before NumPy allocates."""
    from lasercc.limits import current

    return current().max_array_bytes


def read_npz(path: str | os.PathLike, what: str = "input file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (pickles refused, headers size-checked before allocation); every
    failure is an :class:`~lasercc.errors.InputError` naming the file."""
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
