"""``lasercc inspect --plot``: a valid PNG occupancy map, from partition.json or a fresh partition."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from lasercc.cli import main
from lasercc.ir.artifact import Artifact, load
from lasercc.passes.partition import partition_graph
from lasercc.passes.partition_plot import PlotError, occupancy_grid, plot_occupancy
from lasercc.testing import mlp_graph

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ir" / "attention_block"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


def test_occupancy_grid_has_one_cell_per_used_core():
    part = partition_graph(mlp_graph(layers=3, width=1024, batch=1), system="kapoho-point").to_json()
    grid, (cw, ch) = occupancy_grid(part)
    assert (cw, ch) == (16, 8)  # 8 x 4 routers of 2 x 2 cores
    assert int(np.isfinite(grid).sum()) == part["cores_used"] > 1
    rows = np.asarray(part["cores"]["rows"], dtype=np.float64)
    mem = rows[:, part["cores"]["columns"].index("memory_bits")] / (part["spec"]["core"]["memory_bytes"] * 8)
    vals = grid[np.isfinite(grid)]
    assert np.all(vals <= 1.0) and vals.max() >= mem.max() - 1e-12  # memory binds this MLP
    assert grid.shape[1] % cw == 0 and grid.shape[0] % ch == 0


def test_inspect_plot_partitions_when_the_artifact_has_none(tmp_path, capsys):
    out = tmp_path / "occ.png"
    assert main(["inspect", str(EXAMPLE), "--no-ir", "--plot", str(out)]) == 0
    assert "fresh partition onto kapoho-point" in capsys.readouterr().out
    w, h = _png_size(out)
    assert w > 300 and h > 150


def test_inspect_prints_and_plots_a_saved_partition(tmp_path, capsys):
    art = load(EXAMPLE)
    part = partition_graph(art.graph, system="oheo-gulch")
    Artifact(graph=art.graph, extra_files=part.extra_files()).save(tmp_path / "art")
    out = tmp_path / "occ.png"
    assert main(["inspect", str(tmp_path / "art"), "--no-ir", "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "partition: oheo-gulch" in text and "binding resource" in text and "from partition.json" in text
    _png_size(out)
    assert main(["inspect", str(tmp_path / "art"), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["partition"]["system"] == "oheo-gulch" and "cores" not in js["partition"]


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    part = partition_graph(load(EXAMPLE).graph).to_json()
    with pytest.raises(PlotError, match=r"lasercc\[plot\]"):
        plot_occupancy(part, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
