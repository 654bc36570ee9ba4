"""Helpers shared by CLI verbs: reading input files and printing tables."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lasercc.errors import InputError


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
