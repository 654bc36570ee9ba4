"""Input data for a graph: the ``.npz`` input files of DESIGN.md section 5 and seeded synthetic inputs.

Why here, in ``ir``: reading a user's input file and making up inputs for a graph depend only on the
graph's input types, yet backends (the profiler, the Lava runner) need them as much as the CLI verbs
and the tests do. Kept in the CLI helpers (``commands.common``) and the test helpers
(``lasercc.testing``) they pulled backends up the layers; here every layer can use them.
``lasercc.testing.random_inputs`` re-exports :func:`random_inputs`. ``commands.common.read_npz`` is
still a copy of :func:`read_npz` (that file belongs to the CLI work; it should become a re-export).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lasercc.errors import InputError
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import BSEEncode, Gather
from lasercc.ir.types import CodeType


def read_npz(path: str) -> dict[str, np.ndarray]:
    """An ``.npz`` of one array per graph input name (pickles refused)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such input file: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise InputError(f"{p}: expected an .npz archive (one array per input name), got a single array")
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise InputError(f"{p}: cannot read as .npz ({e})") from None


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
            encs = [c.type for c in consumers[n.name] if isinstance(c, BSEEncode)]
            span = max([t.scale[0] * 2**t.bits for t in encs] + [1.0])
            out[n.name] = rng.uniform(-span / 1.6, span / 1.6, size=shape).astype(np.float32)
    return out
