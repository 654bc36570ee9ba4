"""Who produced a results file: commit, date, machine and command, one definition for every bench.

A results file is only checkable if it says which code produced it; benches call :func:`stamp` for the
markdown header line and :func:`record` for the ``"provenance"`` entry of their JSON, so that
``bench/run_all.py`` and ``bench/laser_tables.py`` can show when each figure was last regenerated.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def commit() -> str:
    """Short hash of HEAD, with ``+dirty`` when tracked code (lasercc/, bench/ but its results, examples/,
    pyproject.toml) differs from it: the figure is then not reproducible from the hash alone (prose and
    earlier results are not inputs);
    ``unknown`` outside a git checkout. Cached: the first call (a bench calls it when it starts) wins, so
    files edited while a bench runs do not mark its results dirty."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=_ROOT).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "lasercc",
                                "bench", "examples", "pyproject.toml", ":(exclude)bench/results"], capture_output=True,
                               text=True, check=True, cwd=_ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def date() -> str:
    """UTC date and minute: results regenerated the same day by different commits stay distinguishable."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine() -> str:
    """CPU architecture and count, Python and NumPy versions: what moves timings and float rounding."""
    try:
        import numpy as np
        npv = f", NumPy {np.__version__}"
    except ImportError:  # pragma: no cover - every bench venv has NumPy
        npv = ""
    return f"{platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()}; Python " \
           f"{platform.python_version()}{npv}"


def command(argv: list[str] | None = None) -> str:
    """The command line as typed from the repository root (script path relative to it)."""
    args = list(sys.argv if argv is None else argv)
    if args:
        p = Path(args[0])
        try:
            args[0] = str(p.resolve().relative_to(_ROOT))
        except ValueError:
            pass
    return "python " + " ".join(shlex.quote(a) for a in args)


def record(argv: list[str] | None = None) -> dict[str, str]:
    """The four facts as a JSON-ready dict."""
    return {"commit": commit(), "date": date(), "machine": machine(), "command": command(argv)}


def stamp(argv: list[str] | None = None, seconds: float | None = None) -> str:
    """Markdown header lines (two trailing spaces = line break) for a results file."""
    r = record(argv)
    took = "" if seconds is None else f"; {seconds:.0f} s"
    return f"Command: `{r['command']}`  \nCommit {r['commit']}, {r['date']}{took}  \nMachine: {r['machine']}  "
