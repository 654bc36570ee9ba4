"""Helpers shared by CLI verbs: reading input files, writing output files and printing tables."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from lasercc.errors import InputError


def read_npz(path: str, what: str = "input file") -> dict[str, np.ndarray]:
    """An ``.npz`` of one array per graph input name (pickles refused, declared sizes checked before
    allocation; see :func:`lasercc.ir.artifact.read_npz_arrays`)."""
    from lasercc.ir.artifact import read_npz_arrays

    return read_npz_arrays(path, what)


def check_output_file(path: str, option: str = "-o") -> Path:
    """An output file path that can be written: a name, an existing parent directory, not a directory.

    Checked before the (possibly long) run, so a typo costs a second, not the run.
    """
    if not str(path).strip():
        raise InputError(f"the output file name is empty; pass a file such as {option} out.npz")
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a directory; {option} needs a file name")
    if not p.parent.is_dir():
        raise InputError(f"{p}: directory {p.parent} does not exist; create it first or choose another {option}")
    return p


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through a temporary sibling and rename it into place: an interrupted write leaves the
    previous file (or none), never a truncated one that a later step would read as valid."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def table(rows: list[list[object]], header: list[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
