"""Nothing read or written outside the named paths: compile and simulate (numpy and torch) with HOME, TMPDIR and
XDG_CACHE_HOME pointed at empty directories and an empty working directory leave those directories empty and
write only the named artifact and output file (README, "Reliability": the caches third-party libraries keep)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_compile_and_simulate_write_only_the_named_paths(tmp_path: Path) -> None:
    home, tmp, cache, work, out = (tmp_path / n for n in ("home", "tmp", "cache", "work", "out"))
    for d in (home, tmp, cache, work):
        d.mkdir()
    inputs = {}
    for name in ("tiny_gpt.onnx", "tiny_gpt.calib.npz", "tiny_gpt.input.npz"):
        shutil.copy(MODELS / name, work / name)
        inputs[name] = _digest(work / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "TORCH", "ORT_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), XDG_CACHE_HOME=str(cache), PYTHONPATH=str(ROOT))

    def lasercc(*argv: str) -> None:
        r = subprocess.run([sys.executable, "-m", "lasercc", *argv], cwd=work, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr

    lasercc("compile", "tiny_gpt.onnx", "--calibration", "tiny_gpt.calib.npz", "-o", str(out))
    lasercc("simulate", str(out), "-i", "tiny_gpt.input.npz", "-o", "y.npz")
    lasercc("simulate", str(out), "-i", "tiny_gpt.input.npz", "--backend", "torch", "--json")
    assert _tree(home) == [] and _tree(tmp) == [] and _tree(cache) == []
    assert _tree(work) == sorted([*inputs, "y.npz"])
    assert {n: _digest(work / n) for n in inputs} == inputs  # inputs are read, never rewritten
    assert _tree(out) == ["graph.lir", "manifest.json", "report.json", "weights.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "home", "out", "tmp", "work"]  # no lock left
