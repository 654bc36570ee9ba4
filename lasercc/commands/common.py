"""Helpers shared by CLI verbs: reading input files, writing output files and printing tables."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO

import numpy as np

from lasercc.errors import InputError
from lasercc.ir.data import write_atomic  # noqa: F401  (re-exported: the CLI verbs import it from here)


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


class NpzStreamWriter:
    """Write an ``.npz`` whose arrays arrive in row blocks, with memory flat in the number of rows.

    Each member's total shape is known before the first block (rows = batches x batch size), so its
    ``.npy`` header is written first and the blocks are appended to a temporary file per member; ``close``
    stores those files into the zip (uncompressed, copied in chunks, as ``np.savez`` does) and renames the
    result into place, so an interrupted run leaves the previous file or none.
    """

    def __init__(self, path: Path, members: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> None:
        from numpy.lib import format as npformat

        self.path = path
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        self.files: dict[str, IO[bytes]] = {}
        self.members = members
        self.written = dict.fromkeys(members, 0)
        for name, (dtype, shape) in members.items():
            f = open(self.tmpdir / f"{len(self.files)}.npy", "wb")  # noqa: SIM115 - closed in close()/abort()
            npformat.write_array_header_2_0(f, {"descr": npformat.dtype_to_descr(np.dtype(dtype)),
                                                "fortran_order": False, "shape": tuple(shape)})
            self.files[name] = f

    def write(self, name: str, block: np.ndarray) -> None:
        dtype, shape = self.members[name]
        a = np.ascontiguousarray(block, dtype=dtype)
        if a.shape[1:] != tuple(shape[1:]):
            raise ValueError(f"block of {name} has shape {a.shape}, expected rows of {shape[1:]}")
        self.files[name].write(a.tobytes())
        self.written[name] += a.shape[0]

    def close(self) -> None:
        import zipfile

        try:
            for name, f in self.files.items():
                f.close()
                if self.written[name] != self.members[name][1][0]:
                    raise RuntimeError(f"{name}: {self.written[name]} rows written, {self.members[name][1][0]} "
                                       "declared")

            def write_zip(out: IO[bytes]) -> None:
                with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
                    for i, name in enumerate(self.files):
                        z.write(self.tmpdir / f"{i}.npy", arcname=f"{name}.npy")

            write_atomic(self.path, write_zip)
        finally:
            self.abort()

    def abort(self) -> None:
        import shutil

        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
