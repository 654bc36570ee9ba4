"""Artifacts: save/load round trip, the Python API, and safe loading."""

import json

import numpy as np
import pytest

import lasercc
from lasercc.errors import LasercError
from lasercc.testing import random_graph, random_inputs


def test_save_load_run_roundtrip(tmp_path):
    g = random_graph(11)
    art = lasercc.Artifact(graph=g, manifest={"target": "numpy", "passes": []})
    art.save(tmp_path / "a")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["graph.lir", "manifest.json", "weights.npz"]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["lasercc_version"] == lasercc.__version__ and "latency_steps" in manifest
    loaded = lasercc.load(tmp_path / "a")
    assert loaded.graph == g
    inputs = random_inputs(g, 3, rows=2)
    a = art.run(inputs, output="codes")
    b = loaded.run(inputs, output="codes", mode="spikes")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    vals = loaded.run(inputs)
    assert all(v.dtype == np.float32 for v in vals.values())
    assert loaded.stats["total"]["spikes"] > 0


def test_pickled_weights_are_refused(tmp_path):
    g = random_graph(2)
    lasercc.Artifact(graph=g).save(tmp_path / "a")
    np.savez(tmp_path / "a" / "weights.npz", **{k: np.array([object()], dtype=object) for k in g.constants})
    with pytest.raises(LasercError):
        lasercc.load(tmp_path / "a")


def test_missing_weights_named(tmp_path):
    g = random_graph(4)
    lasercc.Artifact(graph=g).save(tmp_path / "a")
    np.savez(tmp_path / "a" / "weights.npz")
    with pytest.raises(LasercError, match="weights.npz: content does not match"):  # the directory: hash check
        lasercc.load(tmp_path / "a")
    with pytest.raises(LasercError, match="missing weights"):  # the .lir itself: no hash check, names the constant
        lasercc.load(tmp_path / "a" / "graph.lir")
