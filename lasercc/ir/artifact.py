"""Compiled artifacts: a directory with ``graph.lir``, ``weights.npz`` and ``manifest.json``.

``load`` also accepts a bare ``.lir`` file (with a ``weights.npz`` beside it, if any).
Weights are read with ``allow_pickle=False``: an artifact can never execute code on load.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lasercc.errors import LasercError
from lasercc.ir.graph import ConstSpec, Graph
from lasercc.ir.text import parse_graph, print_graph

GRAPH_FILE = "graph.lir"
WEIGHTS_FILE = "weights.npz"
MANIFEST_FILE = "manifest.json"


def _version() -> str:
    from lasercc import __version__

    return __version__


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
        from lasercc.runtime import run_graph

        if output not in ("float", "codes"):
            raise LasercError(f"output must be 'float' or 'codes', got {output!r}")
        res = run_graph(self.graph, inputs, backend=backend, mode=mode, device=device)
        self.last = res
        self.stats = res.stats
        return res.values if output == "float" else res.codes

    def save(self, directory: str | os.PathLike) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / GRAPH_FILE).write_text(print_graph(self.graph))
        arrays = self.graph.constants.arrays()
        lazy = [k for k, v in self.graph.constants.items() if isinstance(v, ConstSpec)]
        if lazy:
            raise LasercError(f"cannot save shape-only constants: {', '.join(lazy[:5])}")
        np.savez(d / WEIGHTS_FILE, **arrays)
        from lasercc.backends.stats import critical_path

        manifest = {"lasercc_version": _version(), "graph": self.graph.name, **self.manifest,
                    "latency_steps": critical_path(self.graph)}
        (d / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        for rel, content in self.extra_files.items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        self.manifest = manifest
        self.path = d
        return d


def load(path: str | os.PathLike) -> Artifact:
    """Load an artifact directory or a ``.lir`` file; the graph is verified."""
    p = Path(path)
    if not p.exists():
        raise LasercError(f"no such artifact or IR file: {p}")
    if p.is_dir():
        lir, wfile, mfile = p / GRAPH_FILE, p / WEIGHTS_FILE, p / MANIFEST_FILE
        if not lir.exists():
            raise LasercError(f"{p} is not an artifact: it has no {GRAPH_FILE}")
    else:
        lir, wfile, mfile = p, p.with_name(WEIGHTS_FILE), p.with_name(MANIFEST_FILE)
        alt = p.with_suffix(".npz")
        if alt.exists():
            wfile = alt
    weights = _load_weights(wfile) if wfile.exists() else {}
    manifest: dict[str, Any] = {}
    if mfile.exists():
        try:
            manifest = json.loads(mfile.read_text())
        except json.JSONDecodeError as e:
            raise LasercError(f"{mfile}: corrupt manifest ({e})") from None
    try:
        text = lir.read_text()
    except UnicodeDecodeError:
        raise LasercError(f"{lir}: not a text IR file") from None
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


def _load_weights(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise LasercError(f"{path}: corrupt weights file ({e})") from None
