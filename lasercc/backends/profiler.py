"""Energy and latency profile of a compiled artifact on Loihi 2, and the same model on a GPU.

The NumPy backend runs the graph and counts events per node (synaptic events, neuron updates,
spikes, DecodeMAC MACs: :mod:`lasercc.backends.stats`); :mod:`lasercc.hw.energy` prices them. The
profile is an *estimate* built from cited constants, never a measurement: Loihi 2 per-operation
energies are not published, so every Loihi figure is Loihi-1-derived (see ``lasercc.hw.energy``).

Model (each step stated so a reader can redo it by hand):

* dynamic energy per node = sum over its events of count x cost (:func:`loihi_node_energy`); spike
  hops come from the artifact's ``partition.json`` (average E-W / N-S / chip-link hops per spike
  message), else 1 mesh hop per spike is assumed and the profile says so;
* DecodeMAC MACs run on the embedded x86 (Lakemont) cores at ``decodemac_mac_pj`` / ``_ns`` each;
* time per batch = latency_steps x step + DecodeMAC time, where a step lasts
  max(``min_step_ns``, neuro-core event time per step spread over the cores in use) and the x86
  MACs are spread over ``lakemont_cores_per_chip`` x chips and *not* overlapped with the steps
  (conservative); batches run one after another;
* static energy = ``static_power_w_per_chip`` x chips in use x run time;
* GPU: Horowitz 45 nm energies of each node's multiply-adds and memory words (an estimate from
  operation counts, labelled so), plus NVML-measured joules per token from
  ``bench/torch_throughput.py --json`` when given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lasercc.errors import LasercError
from lasercc.hw.energy import (
    LOIHI_PARTS,
    EnergyConstants,
    HopModel,
    gpu_node_energy,
    gpu_node_ops,
    load_constants,
    loihi_node_energy,
    node_work_ns,
    sanafe_node_energy,
)
from lasercc.hw.loihi2 import Loihi2Spec, MeshSpec, SystemSpec
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import DecodeMAC
from lasercc.ir.types import TensorType

PJ = 1e-12
GPU_PARTS = ("compute", "sram", "dram")


@dataclass
class NodeProfile:
    """One node's counted events (summed over all batches) and their energy and work time."""

    name: str
    op: str
    events: dict[str, int]
    loihi_pj: dict[str, float]
    sanafe_pj: float
    core_ns: float
    x86_ns: float
    gpu_pj: dict[str, float]

    @property
    def loihi_total_pj(self) -> float:
        return float(sum(self.loihi_pj.values()))

    @property
    def gpu_total_pj(self) -> float:
        return float(sum(self.gpu_pj.values()))


@dataclass
class Profile:
    """Energy and time of one run (``rows`` inference rows, ``tokens`` tokens) on Loihi 2 and a GPU."""

    graph: str
    nodes: list[NodeProfile]
    batches: int
    rows: int
    tokens: int
    latency_steps: int
    step_ns: float
    time_s: float
    chips: int
    cores: int
    static_pj: float
    hops: HopModel
    input_source: str
    constants: EnergyConstants
    gpu_measured: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # ---- totals ---------------------------------------------------------------------------
    @property
    def dynamic_pj(self) -> float:
        return float(sum(n.loihi_total_pj for n in self.nodes))

    @property
    def loihi_pj(self) -> float:
        """Loihi 2 total: dynamic + static."""
        return self.dynamic_pj + self.static_pj

    @property
    def gpu_pj(self) -> float:
        return float(sum(n.gpu_total_pj for n in self.nodes))

    @property
    def decodemac_pj(self) -> float:
        return float(sum(n.loihi_pj["decodemac_macs"] for n in self.nodes))

    @property
    def sanafe_pj(self) -> float:
        """The same events priced with SANA-FE's calibrated costs (no hops, MACs or static)."""
        return float(sum(n.sanafe_pj for n in self.nodes))

    @property
    def hala_point_pj(self) -> float:
        """Cross-check: synaptic events as 2 ops each at Hala Point's 15 TOPS/W (8 bit)."""
        syn = sum(n.events.get("synaptic_events", 0) for n in self.nodes)
        return 2 * syn / (self.constants.hala_point_tops_per_w * 1e12) / PJ

    def parts(self) -> dict[str, float]:
        """Loihi 2 energy (pJ) by event kind, with static."""
        out = {p: float(sum(n.loihi_pj[p] for n in self.nodes)) for p in LOIHI_PARTS}
        out["static"] = self.static_pj
        return out

    def by_kind(self) -> dict[str, dict[str, float]]:
        """Per node kind (op): count, Loihi pJ, its share of Loihi dynamic energy, GPU estimate pJ."""
        kinds: dict[str, dict[str, float]] = {}
        dyn = self.dynamic_pj or 1.0
        gpu = self.gpu_pj or 1.0
        for n in self.nodes:
            k = kinds.setdefault(n.op, {"nodes": 0, "loihi_pj": 0.0, "gpu_pj": 0.0})
            k["nodes"] += 1
            k["loihi_pj"] += n.loihi_total_pj
            k["gpu_pj"] += n.gpu_total_pj
        for k in kinds.values():
            k["loihi_share"] = k["loihi_pj"] / dyn
            k["gpu_share"] = k["gpu_pj"] / gpu
        return dict(sorted(kinds.items(), key=lambda kv: -kv[1]["loihi_pj"]))

    def totals(self) -> dict[str, Any]:
        per_tok = max(self.tokens, 1)
        out: dict[str, Any] = {
            "loihi_dynamic_pj": self.dynamic_pj, "loihi_static_pj": self.static_pj, "loihi_pj": self.loihi_pj,
            "loihi_sanafe_dynamic_pj": self.sanafe_pj, "hala_point_crosscheck_pj": self.hala_point_pj,
            "decodemac_pj": self.decodemac_pj,
            "decodemac_share_of_loihi": self.decodemac_pj / self.loihi_pj if self.loihi_pj else 0.0,
            "decodemac_share_of_dynamic": self.decodemac_pj / self.dynamic_pj if self.dynamic_pj else 0.0,
            "loihi_time_s": self.time_s, "loihi_step_ns": self.step_ns, "latency_steps": self.latency_steps,
            "gpu_estimate_45nm_pj": self.gpu_pj,
            "loihi_over_gpu_estimate": self.loihi_pj / self.gpu_pj if self.gpu_pj else None,
            "loihi_pj_per_inference": self.loihi_pj / max(self.rows, 1), "loihi_pj_per_token": self.loihi_pj / per_tok,
            "gpu_estimate_pj_per_token": self.gpu_pj / per_tok,
        }
        for name, v in self.gpu_measured.items():
            if v.get("joules_per_token"):
                out[f"gpu_measured_pj_per_token[{name}]"] = v["joules_per_token"] / PJ
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "graph": self.graph, "batches": self.batches, "rows": self.rows, "tokens": self.tokens,
            "chips": self.chips, "cores": self.cores, "input_source": self.input_source,
            "hops": {"east_west_per_spike": self.hops.east_west, "north_south_per_spike": self.hops.north_south,
                     "chip_links_per_spike": self.hops.chip_links, "source": self.hops.source},
            "totals": self.totals(), "parts_pj": self.parts(), "by_kind": self.by_kind(),
            "nodes": {n.name: {"op": n.op, **n.events, "loihi_pj": n.loihi_total_pj, "loihi_parts_pj": n.loihi_pj,
                               "sanafe_pj": n.sanafe_pj, "core_ns": n.core_ns, "x86_ns": n.x86_ns,
                               "gpu_estimate_pj": n.gpu_total_pj, "gpu_parts_pj": n.gpu_pj} for n in self.nodes},
            "gpu_measured": self.gpu_measured, "constants": self.constants.model_dump(), "notes": self.notes,
        }


# --------------------------------------------------------------------------------------------


def default_inputs(art: Any) -> tuple[dict[str, np.ndarray], str]:
    """The manifest's calibration rows when the file is readable, else a seeded synthetic input.

    The synthetic input is :func:`lasercc.ir.data.random_inputs` with seed 0 and one batch: codes
    uniform over each code type, token ids uniform over the embedding table, reals uniform over
    each encoder's range -- spike counts (hence energy) depend on data, so the profile says which.
    """
    from lasercc.ir.data import random_inputs, read_npz

    calib = ((art.manifest or {}).get("options") or {}).get("calibration")
    if calib:
        for cand in (Path(calib), Path(art.path or ".") / calib):
            if cand.is_file():
                try:
                    data = read_npz(str(cand))
                except LasercError:
                    break
                if set(data) == {n.name for n in art.graph.inputs}:
                    return data, f"calibration file {cand}"
                break
    return random_inputs(art.graph, seed=0), "SYNTHETIC: lasercc.testing.random_inputs(graph, seed=0), one batch"


def _partition(art: Any) -> dict[str, Any] | None:
    if getattr(art, "path", None) is None:
        return None
    from lasercc.ir.artifact import read_json_object

    f = Path(art.path) / "partition.json"
    if not f.exists():
        return None
    return read_json_object(f, "partition file")


def read_gpu_measured(path: str | Path | dict | None) -> dict[str, dict[str, float]]:
    """``variants`` of a ``bench/torch_throughput.py --json`` file that carry NVML power (else empty)."""
    if path is None:
        return {}
    if isinstance(path, dict):
        data = path
    else:
        p = Path(path)
        try:
            data = json.loads(p.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as e:  # ValueError: JSONDecodeError and UnicodeDecodeError
            raise LasercError(f"cannot read GPU measurement file {p}: {e}") from None
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, dict):
        raise LasercError("GPU measurement file must hold {'variants': {name: {seconds, power_w, tokens_per_s, "
                          "joules_per_token}}} as written by bench/torch_throughput.py --json")
    keep = ("seconds", "power_w", "tokens_per_s", "joules_per_token")
    return {k: {f: float(v[f]) for f in keep if isinstance(v.get(f), (int, float))}
            for k, v in variants.items() if isinstance(v, dict) and v.get("joules_per_token")}


def _tokens(graph: Graph, inputs: dict[str, np.ndarray], rows: int) -> int:
    """Tokens processed: elements of the token-id inputs (i64), else one per inference row."""
    ids = [np.asarray(inputs[n.name]).size for n in graph.inputs
           if isinstance(n.type, TensorType) and n.type.dtype == "i64"]
    return int(max(ids)) if ids else rows


def profile(artifact: Any, inputs: dict[str, np.ndarray] | None = None,
            constants: dict[str, Any] | str | Path | EnergyConstants | None = None,
            gpu_measured: str | Path | dict | None = None) -> Profile:
    """Run ``artifact`` (an :class:`~lasercc.ir.artifact.Artifact` or a path) on the NumPy backend and price it.

    ``inputs`` default to :func:`default_inputs`; ``constants`` override :mod:`lasercc.hw.energy`'s
    defaults (dict or JSON file); ``gpu_measured`` is a ``bench/torch_throughput.py --json`` result.
    """
    from lasercc.ir.artifact import Artifact, load
    from lasercc.runtime import run_graph

    art = artifact if isinstance(artifact, Artifact) else load(artifact)
    c = load_constants(constants)
    measured = read_gpu_measured(gpu_measured)
    notes: list[str] = ["Loihi 2 per-operation energies are not published: Loihi figures are Loihi-1-derived "
                        "estimates (Davies et al. 2018, SANA-FE); the GPU side is a Horowitz 45 nm estimate"]
    if inputs is None:
        inputs, source = default_inputs(art)
    else:
        source = "user inputs"
    graph = art.graph
    res = run_graph(graph, inputs, backend="numpy", mode="codes", collect_stats=True)
    st = res.stats
    batches = int(st.get("batches", 1))
    first = graph.inputs[0]
    rows = int(np.asarray(inputs[first.name]).shape[0]) if first.type.shape else batches

    part = _partition(art)
    spec = Loihi2Spec()
    if part is not None:
        mesh = MeshSpec(**(part.get("spec") or {}).get("mesh", {}))
        sysd = ((part.get("spec") or {}).get("systems") or {}).get(part.get("system", ""))
        system = SystemSpec(**sysd) if sysd else spec.system("kapoho-point")
        hops = HopModel.from_partition(part, mesh)
        chips, cores = int(part.get("chips_used") or 1), int(part.get("cores_used") or 1)
    else:
        mesh, system = spec.mesh, spec.system("oheo-gulch")
        hops = HopModel.estimate()
        chips, cores = 1, max(1, sum(1 for n in graph.nodes if n.is_compute))
        notes.append("no partition.json in the artifact: 1 mesh hop per spike and one core per compute node "
                     "assumed (compile with --target loihi2 for a real placement)")
    spike_pj = hops.pj_per_spike(c, mesh, system)

    nodes: list[NodeProfile] = []
    for name, ns in st.get("nodes", {}).items():
        ev = {k: int(ns.get(k, 0)) for k in ("spikes", "synaptic_events", "neuron_updates", "macs")}
        op = str(ns.get("op"))
        core_ns, x86_ns = node_work_ns(ev, c)
        node = graph.node(name)
        gpu = gpu_node_energy(gpu_node_ops(node, graph), c)
        nodes.append(NodeProfile(name=name, op=op, events=ev, loihi_pj=loihi_node_energy(op, ev, c, spike_pj),
                                 sanafe_pj=sanafe_node_energy(op, ev, c), core_ns=core_ns, x86_ns=x86_ns,
                                 gpu_pj={k: v * batches for k, v in gpu.items()}))
    steps = int(st.get("latency_steps", 0))
    core_ns_batch = sum(n.core_ns for n in nodes) / batches
    x86_ns_batch = sum(n.x86_ns for n in nodes) / batches
    step_ns = max(c.min_step_ns, core_ns_batch / (cores * max(steps, 1)))
    batch_ns = steps * step_ns + x86_ns_batch / (c.lakemont_cores_per_chip * chips)
    time_s = batches * batch_ns * 1e-9
    static_pj = c.static_power_w_per_chip * chips * time_s / PJ
    if any(isinstance(n, DecodeMAC) for n in graph.nodes):
        notes.append(f"DecodeMAC runs on the embedded x86 (Lakemont) cores: {c.decodemac_mac_pj} pJ and "
                     f"{c.decodemac_mac_ns} ns per MAC (estimate), not overlapped with the spiking steps")
    return Profile(graph=graph.name, nodes=nodes, batches=batches, rows=rows, tokens=_tokens(graph, inputs, rows),
                   latency_steps=steps, step_ns=step_ns, time_s=time_s, chips=chips, cores=cores,
                   static_pj=static_pj, hops=hops, input_source=source, constants=c, gpu_measured=measured,
                   notes=notes)
