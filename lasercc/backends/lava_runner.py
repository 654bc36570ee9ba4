"""``run_lava(artifact, inputs)``: run a graph in Lava's fixed-point CPU simulator from the main environment.

Lava (lava-nc 0.10.0) needs Python 3.10 and numpy < 2, so it lives in a second environment; this module
runs :mod:`lasercc.backends.lava.run` there in a subprocess and reads the codes back. The interpreter is
the ``python`` argument (``lasercc simulate --lava-python``), else ``$LASERCC_LAVA_PYTHON``, else
``.venv-lava/bin/python`` of the lasercc installation (the repository lasercc was imported from) -- never
one found from the working directory: running lasercc in an untrusted directory (a downloaded model's
folder) must not execute an interpreter planted there.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lasercc.errors import LasercError

ENV_VAR = "LASERCC_LAVA_PYTHON"


def installation_root() -> Path:
    """The directory holding the ``lasercc`` package (the repository root of a source or editable install)."""
    return Path(__file__).resolve().parents[2]


def lava_python(explicit: str | os.PathLike | None = None) -> Path:
    """The Lava environment's interpreter (see the module docstring for the order), or a one-line
    LasercError saying how to create or name it."""
    for given, how in ((explicit, "--lava-python"), (os.environ.get(ENV_VAR) or None, ENV_VAR)):
        if given is None:
            continue
        p = Path(given)
        if not p.is_file() or not os.access(p, os.X_OK):
            raise LasercError(f"{how} {given} is not an executable file; point {ENV_VAR} (or --lava-python) at "
                              "the Python 3.10 interpreter of a lava-nc environment")
        return p
    cand = installation_root() / ".venv-lava" / "bin" / "python"
    if cand.exists():
        return cand
    raise LasercError(f"no Lava environment at {cand}: create it with `make .venv-lava/.stamp` in the lasercc "
                      f"repository (Python 3.10 + lava-nc 0.10.0), or set {ENV_VAR} (or --lava-python) to its python")


def run_lava(artifact: Any, inputs: dict[str, np.ndarray], timeout: float | None = None,
             python: str | os.PathLike | None = None):
    """Run ``artifact`` (an Artifact, or a path to one) in Lava; returns a :class:`lasercc.backends.run.RunResult`.

    ``stats`` are the NumPy reference's event counts for the same inputs (Lava does not count synaptic
    events) plus ``stats["lava"]``: timesteps, simulator speed, process count, and the spikes Lava really
    emitted per node with ``spikes_match_reference``.
    """
    from lasercc.backends.run import RunResult, run_graph
    from lasercc.ir.artifact import Artifact, load
    from lasercc.semantics.quant import dequantize

    art = artifact if isinstance(artifact, Artifact) else load(artifact)
    py = lava_python(python)
    ref = run_graph(art.graph, inputs)  # validates inputs first: same one-line errors as other backends
    with tempfile.TemporaryDirectory(prefix="lasercc-lava-") as td:
        d = Path(td)
        adir = d / "artifact"
        Artifact(graph=art.graph, manifest=dict(art.manifest)).save(adir)
        np.savez(d / "in.npz", **{k: np.asarray(v) for k, v in inputs.items()})
        cmd = [str(py), "-W", "ignore", "-m", "lasercc.backends.lava.run", str(adir), "--input", str(d / "in.npz"),
               "--output", str(d / "out.npz"), "--stats", str(d / "stats.json")]
        repo = installation_root()
        envv = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=envv)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise LasercError(f"the Lava run failed: {tail}")
        with np.load(d / "out.npz", allow_pickle=False) as z:
            codes = {o: z[f"{o}.codes"].astype(np.int64) for o in art.graph.outputs}
        facts = json.loads((d / "stats.json").read_text())
    values = {}
    for o, c in codes.items():
        t = art.graph.type_of(o)
        values[o] = dequantize(c, np.asarray(t.scale), np.asarray(t.zero_point), t.axis)
    stats = dict(ref.stats)
    ref_spikes = {k: v["spikes"] for k, v in stats.get("nodes", {}).items()}
    facts["spikes_match_reference"] = all(ref_spikes.get(k) == v for k, v in facts["spikes"].items()
                                          if k in ref_spikes)
    facts["codes_match_reference"] = all(np.array_equal(ref.codes[o], codes[o]) for o in codes)
    stats["lava"] = facts
    return RunResult(codes=codes, values=values, stats=stats, seconds=facts["run_seconds"])
