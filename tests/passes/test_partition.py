"""Partitioner and Loihi 2 model: resource accounting, feasibility errors, traffic, scaling, JSON."""

from __future__ import annotations

import json
import math
import time

import pytest

from lasercc.errors import LasercError
from lasercc.hw.loihi2 import Loihi2Spec, load_spec
from lasercc.passes.base import PassManager
from lasercc.passes.partition import CapacityError, PartitionError, partition_extra_files, partition_graph
from lasercc.testing import mlp_graph, random_graph


def test_spec_defaults_and_overrides(tmp_path):
    s = Loihi2Spec()
    assert s.mesh.cores == 128 and s.core.max_neurons == 8192 and s.core.memory_bytes == 128 * 1024
    hp = s.system("hala-point")
    assert hp.chips * s.cores_per_chip(hp) == 140_544
    assert s.system("kapoho-point").chips == 8 and s.system("oheo-gulch").chips == 1
    f = tmp_path / "hw.json"
    f.write_text(json.dumps({"core": {"memory_bytes": 192 * 1024}}))
    assert Loihi2Spec.from_json(f).core.memory_bytes == 192 * 1024
    with pytest.raises(LasercError, match="core.max_neurons"):
        load_spec({"core": {"max_neurons": 0}})
    with pytest.raises(LasercError, match="unknown Loihi 2 system 'nope'"):
        partition_graph(mlp_graph(layers=1, width=8, batch=1), system="nope")


def test_tiling_accounts_synaptic_memory_exactly():
    g = mlp_graph(layers=2, width=4096, batch=1)
    p = partition_graph(g, system="kapoho-point")
    spec = p.spec
    fc = next(lay for lay in p.layers if lay.name == "fc0")
    per_neuron = 4096 * spec.core.synapse_bits + spec.core.neuron_state_bits  # int8 weights: one synapse each
    assert fc.kt == 1 and fc.nc == spec.core.memory_bits // per_neuron
    assert fc.nt == math.ceil(4096 / fc.nc)
    # no core exceeds any resource
    rows = p.to_json()["cores"]["rows"]
    assert all(r[5] <= spec.core.max_neurons and r[6] <= spec.core.memory_bits and r[7] <= spec.core.max_axons_in
               for r in rows)
    assert p.binding_resource() == "memory"
    # weights are all placed: total synapse memory = 2 * 4096 * 4096 * 9 bits (+ state)
    total = sum(r[6] for r in p.to_json()["cores"]["rows"])
    assert total >= 2 * 4096 * 4096 * spec.core.synapse_bits


def test_fan_in_split_when_a_column_does_not_fit():
    g = mlp_graph(layers=1, width=4096, batch=1)
    p = partition_graph(g, system="hala-point", spec={"core": {"memory_bytes": 2048}})
    fc = next(lay for lay in p.layers if lay.name == "fc0")
    assert fc.kt > 1 and fc.kc * fc.kt >= 4096


def test_infeasible_names_layer_resource_and_what_fits():
    g = mlp_graph(layers=4, width=4096, batch=1)
    with pytest.raises(PartitionError) as e:
        partition_graph(g, system="oheo-gulch")
    msg = str(e.value)
    assert "needs" in msg and "oheo-gulch" in msg and "%fc" in msg and "fits on: kapoho-point" in msg


def test_better_than_naive_and_json(tmp_path):
    g = mlp_graph(layers=4, width=2048, batch=1)
    (_, rec) = PassManager("partition{system=kapoho-point}").run(g)
    part = rec[0].info["partition"]
    assert not rec[0].changed
    assert part.best.traffic["hops"] <= part.naive.traffic["hops"] and part.reduction() >= 1
    assert part.best.cores <= part.naive.cores
    data = json.loads(partition_extra_files(part)["partition.json"])
    assert data["cores_used"] == part.best.cores and len(data["cores"]["rows"]) == part.best.cores
    assert "traffic x hops reduction" in part.report()


def test_small_random_graphs_partition():
    for s in range(8):
        p = partition_graph(random_graph(s), system="oheo-gulch")
        assert p.best.cores >= 1 and p.best.chips == 1


@pytest.mark.bench  # wall-clock ratios: noisy on a loaded machine, so not in the default run
def test_not_quadratic_in_tiles():
    """Doubling the layer count must roughly double (not quadruple) the time."""
    def t(layers):
        g = mlp_graph(layers=layers, width=1024, batch=1, bits=8)
        g = g.replace(constants={k: v for k, v in g.constants.items()})
        t0 = time.perf_counter()
        partition_graph(g, system="hala-point")
        return time.perf_counter() - t0

    t(2)
    a, b = t(16), t(64)
    assert b < a * 4 * 1.8 + 0.5  # linear: ~4x; quadratic would be ~16x


def test_auto_keeps_the_board_when_the_graph_fits_it():
    g = mlp_graph(layers=2, width=256, batch=1)
    auto, board = partition_graph(g), partition_graph(g, system="kapoho-point")
    assert auto.system.name == "kapoho-point" and auto.best.cores == board.best.cores
    (_, rec) = PassManager("partition").run(g)  # the pass's default is auto too
    assert rec[0].info["partition"].system.name == "kapoho-point"


def test_auto_takes_the_smallest_system_that_holds_the_graph():
    """2,051 cores at 2 KB per core: more than Kapoho Point's 1,024; a 24-chip system added by the spec holds them
    (3,072 cores) and is chosen over Hala Point; without it, Hala Point."""
    g = mlp_graph(layers=2, width=1024, batch=1)
    small = {"core": {"memory_bytes": 2048}}
    with pytest.raises(CapacityError) as e:
        partition_graph(g, system="kapoho-point", spec=small)
    assert e.value.cores > 1024
    mid = {**small, "systems": {"three-boards": {"chips": 24, "grid": [6, 4]}}}
    assert partition_graph(g, spec=mid).system.name == "three-boards"
    assert partition_graph(g, spec=small).system.name == "hala-point"


def test_auto_says_when_no_system_holds_the_graph():
    g = mlp_graph(layers=2, width=1024, batch=1)
    tiny = {"core": {"memory_bytes": 2048}, "systems": {"hala-point": {"chips": 2, "grid": [2, 1]}}}
    with pytest.raises(CapacityError, match="system auto: .*needs .* cores"):
        partition_graph(g, spec=tiny)
