"""The packages `make lint` type-checks with mypy: the list in pyproject.toml may only grow."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# Packages that pass mypy today. Add to this set (and to [tool.mypy] files) as more pass; never remove.
TYPED = {"lasercc/ir", "lasercc/semantics"}


def test_mypy_checks_at_least_the_typed_packages():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert TYPED <= set(cfg["files"])
    assert all((ROOT / f).exists() for f in cfg["files"])
