"""Energy and latency profile of a compiled artifact on Loihi 2 and on a GPU, like for like, with ranges.

The NumPy backend runs the graph and counts events per node (synaptic events, neuron updates,
spikes, DecodeMAC MACs: :mod:`lasercc.backends.stats`); :func:`price` turns counts into energy and
time with :mod:`lasercc.hw.energy` (Loihi 2) and :mod:`lasercc.hw.gpu` (a GPU roofline). The
profile is an *estimate* from cited constants, never a measurement. Both sides are reported the
same way: dynamic energy alone, and total = dynamic + static power x time, at the modelled
throughput or at a throughput the caller states (``tokens_per_s``: a side that idles longer pays
its static power for longer). Every total is a :class:`Range` (low, central, high) with its main
driver: the constant whose own low-to-high swing moves the figure most.

Model (each step stated so a reader can redo it by hand):

* Loihi 2 dynamic energy per node = sum over its events of count x cost
  (:func:`~lasercc.hw.energy.loihi_node_energy`); spike hops from the artifact's
  ``partition.json`` (average E-W / N-S / chip-link hops per message), else 1 mesh hop per spike
  is assumed and the profile says so; DecodeMAC MACs run on the embedded x86 (Lakemont) cores;
* Loihi time per batch = latency_steps x step + DecodeMAC time, a step lasting
  max(``min_step_ns``, neuro-core event time per step spread over the cores in use), the x86 MACs
  spread over ``lakemont_cores_per_chip`` x chips and *not* overlapped with the steps
  (conservative); batches run one after another; static = ``static_power_w_per_chip`` x chips x time;
* GPU: per node, time = max(MACs / peak, DRAM bytes / bandwidth) + launch overhead, dynamic =
  MACs x ``mac_pj`` + DRAM and on-chip bytes x their energies, static = busy power floor x time
  (:mod:`lasercc.hw.gpu`); the Horowitz 45 nm op count is kept as a reference lower bound;
  NVML-measured joules per token (``bench/torch_throughput.py --json``) are shown beside the model.
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
    constant_table,
    gpu_node_energy,
    gpu_node_ops,
    load_constants,
    loihi_node_energy,
    node_work_ns,
    ranged_constants,
    sanafe_node_energy,
)
from lasercc.hw.gpu import GPU_PARTS, GpuSpec, gpu_table, load_gpu, node_cost, ranged_gpu_constants
from lasercc.hw.loihi2 import Loihi2Spec, MeshSpec, SystemSpec
from lasercc.ir.graph import Graph
from lasercc.ir.types import TensorType

PJ = 1e-12
EVENT_KEYS = ("spikes", "synaptic_events", "neuron_updates", "macs")


@dataclass(frozen=True)
class Range:
    """A figure at the low, central and high corners of the constants' ranges, and what drives its spread."""

    low: float
    mid: float
    high: float
    driver: str = ""
    driver_share: float = 0.0  # the driver's own low-to-high swing over (high - low)

    def scaled(self, k: float) -> Range:
        return Range(self.low * k, self.mid * k, self.high * k, self.driver, self.driver_share)

    def as_dict(self) -> dict[str, Any]:
        return {"low": self.low, "mid": self.mid, "high": self.high, "driver": self.driver,
                "driver_share": self.driver_share}

    def fmt(self, unit: float = 1.0, spec: str = ".3g") -> str:
        return (f"{self.mid * unit:{spec}} [{self.low * unit:{spec}} .. {self.high * unit:{spec}}]"
                + (f" driver: {self.driver}" if self.driver else ""))


@dataclass
class NodeCount:
    """One node's counted events (summed over all batches) and its GPU work per batch."""

    name: str
    op: str
    events: dict[str, int]
    gpu_ops: dict[str, float]


@dataclass
class Counts:
    """Everything the pricing needs that does not depend on the constants: counts and placement.

    ``gpu_rows`` scales each node's per-row GPU work (``gpu_ops`` counted for one row) to a batch
    of that many rows; ``gpu_batches`` is how many GPU batches the run takes (default: ``batches``).
    """

    graph: str
    nodes: list[NodeCount]
    batches: int
    rows: int
    tokens: int
    latency_steps: int
    chips: int
    cores: int
    hops: HopModel
    mesh: MeshSpec
    system: SystemSpec
    input_source: str
    gpu_rows: float = 1.0
    gpu_batches: float | None = None


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
    gpu_s: float = 0.0
    gpu45_pj: float = 0.0

    @property
    def loihi_total_pj(self) -> float:
        return float(sum(self.loihi_pj.values()))

    @property
    def gpu_total_pj(self) -> float:
        return float(sum(self.gpu_pj.values()))


@dataclass
class Priced:
    """Counts priced at one set of constants."""

    nodes: list[NodeProfile]
    step_ns: float
    time_s: float
    static_pj: float
    static_w: float
    gpu_time_s: float
    gpu_static_pj: float
    gpu_idle_w: float
    gpu_active_w: float = 0.0

    @property
    def dynamic_pj(self) -> float:
        return float(sum(n.loihi_total_pj for n in self.nodes))

    @property
    def gpu_dynamic_pj(self) -> float:
        return float(sum(n.gpu_total_pj for n in self.nodes))


def price(counts: Counts, c: EnergyConstants, gpu: GpuSpec) -> Priced:
    """Energy and time of ``counts`` on Loihi 2 (constants ``c``) and on ``gpu`` (see the module doc)."""
    spike_pj = counts.hops.pj_per_spike(c, counts.mesh, counts.system)
    nodes: list[NodeProfile] = []
    gpu_s_batch = 0.0
    for nc in counts.nodes:
        core_ns, x86_ns = node_work_ns(nc.events, c)
        gparts, gsec = node_cost(nc.gpu_ops, gpu, c.gpu_nonlinear_ops, counts.gpu_rows)
        gb = counts.gpu_batches if counts.gpu_batches is not None else counts.batches
        g45 = sum(gpu_node_energy(nc.gpu_ops, c).values()) * gb * counts.gpu_rows if nc.gpu_ops else 0.0
        gpu_s_batch += gsec
        nodes.append(NodeProfile(name=nc.name, op=nc.op, events=nc.events,
                                 loihi_pj=loihi_node_energy(nc.op, nc.events, c, spike_pj),
                                 sanafe_pj=sanafe_node_energy(nc.op, nc.events, c), core_ns=core_ns, x86_ns=x86_ns,
                                 gpu_pj={k: v * gb for k, v in gparts.items()}, gpu_s=gsec * gb, gpu45_pj=g45))
    batches = max(counts.batches, 1)
    steps = counts.latency_steps
    core_ns_batch = sum(n.core_ns for n in nodes) / batches
    x86_ns_batch = sum(n.x86_ns for n in nodes) / batches
    step_ns = max(c.min_step_ns, core_ns_batch / (counts.cores * max(steps, 1)))
    batch_ns = steps * step_ns + x86_ns_batch / (c.lakemont_cores_per_chip * counts.chips)
    time_s = counts.batches * batch_ns * 1e-9
    static_w = c.static_power_w_per_chip * counts.chips
    gb = counts.gpu_batches if counts.gpu_batches is not None else counts.batches
    gpu_time = gpu_s_batch * gb
    return Priced(nodes=nodes, step_ns=step_ns, time_s=time_s, static_pj=static_w * time_s / PJ, static_w=static_w,
                  gpu_time_s=gpu_time, gpu_static_pj=gpu.active_w * gpu_time / PJ, gpu_idle_w=gpu.idle_w,
                  gpu_active_w=gpu.active_w)


METRICS = ("loihi_dynamic_pj", "loihi_static_pj", "loihi_total_pj", "loihi_time_s", "gpu_dynamic_pj",
           "gpu_static_pj", "gpu_total_pj", "gpu_time_s", "loihi_over_gpu_dynamic", "loihi_over_gpu_total")


def metrics(counts: Counts, p: Priced, tokens_per_s: float | None = None) -> dict[str, float]:
    """The like-for-like totals of one pricing: dynamic, static and total energy and time, both sides.

    With ``tokens_per_s`` the run lasts ``tokens / tokens_per_s`` on each side (or longer where a
    side cannot keep up): static power is paid over that wall time (the GPU at its busy floor
    while it runs, at idle power for the rest), so total = dynamic + static x wall time on both sides.
    """
    lt, gt = p.time_s, p.gpu_time_s
    g_static = p.gpu_static_pj
    if tokens_per_s:
        wall = counts.tokens / tokens_per_s
        lt = max(lt, wall)
        g_static += p.gpu_idle_w * max(wall - gt, 0.0) / PJ
        gt = max(gt, wall)
    l_static = p.static_w * lt / PJ
    ld, gd = p.dynamic_pj, p.gpu_dynamic_pj
    out = {"loihi_dynamic_pj": ld, "loihi_static_pj": l_static, "loihi_total_pj": ld + l_static, "loihi_time_s": lt,
           "gpu_dynamic_pj": gd, "gpu_static_pj": g_static, "gpu_total_pj": gd + g_static, "gpu_time_s": gt}
    out["loihi_over_gpu_dynamic"] = ld / gd if gd else float("nan")
    out["loihi_over_gpu_total"] = out["loihi_total_pj"] / out["gpu_total_pj"] if out["gpu_total_pj"] else float("nan")
    return out


def ranges(counts: Counts, constants: dict[str, Any] | str | Path | None = None, gpu: str | None = None,
           gpu_constants: dict[str, Any] | str | Path | None = None, tokens_per_s: float | None = None
           ) -> dict[str, Range]:
    """Every metric of :func:`metrics` as a :class:`Range` over the constants' low / high corners.

    Every energy and time grows with every Loihi or GPU constant, so the all-low and all-high
    corners bound each side; a Loihi / GPU ratio is bounded by (Loihi low / GPU high, Loihi high /
    GPU low). The driver of a figure is the constant whose swing from its low to its high value,
    the others central, moves that figure most.
    """
    def at(corner: str, pin_c: dict[str, str] | None = None, pin_g: dict[str, str] | None = None) -> dict[str, float]:
        c = load_constants(constants, corner, pin_c)
        g = load_gpu(gpu, gpu_constants, corner, pin_g)
        return metrics(counts, price(counts, c, g), tokens_per_s)

    lo, mid, hi = at("low"), at("mid"), at("high")
    lo_x = metrics_cross(counts, constants, gpu, gpu_constants, tokens_per_s, ("low", "high"))
    hi_x = metrics_cross(counts, constants, gpu, gpu_constants, tokens_per_s, ("high", "low"))
    for k in ("loihi_over_gpu_dynamic", "loihi_over_gpu_total"):
        lo[k], hi[k] = lo_x[k], hi_x[k]
    swings: dict[str, dict[str, float]] = {k: {} for k in METRICS}
    for name in ranged_constants(constants):
        a, b = at("mid", {name: "low"}), at("mid", {name: "high"})
        for k in METRICS:
            swings[k][name] = abs(b[k] - a[k])
    for name in ranged_gpu_constants(gpu, gpu_constants):
        a, b = at("mid", None, {name: "low"}), at("mid", None, {name: "high"})
        for k in METRICS:
            swings[k][f"gpu.{name}"] = abs(b[k] - a[k])
    out: dict[str, Range] = {}
    for k in METRICS:
        sw = swings[k]
        drv = max(sw, key=lambda n: sw[n]) if sw and max(sw.values()) > 0 else ""
        spread = hi[k] - lo[k]
        out[k] = Range(lo[k], mid[k], hi[k], drv, (sw[drv] / spread) if drv and spread > 0 else 0.0)
    return out


def metrics_cross(counts: Counts, constants: Any, gpu: str | None, gpu_constants: Any,
                  tokens_per_s: float | None, corners: tuple[str, str]) -> dict[str, float]:
    """Metrics with the Loihi constants at ``corners[0]`` and the GPU's at ``corners[1]`` (ratio bounds)."""
    c = load_constants(constants, corners[0])
    lp = price(counts, c, load_gpu(gpu, gpu_constants, corners[1]))
    gp = price(counts, load_constants(constants, corners[1]), load_gpu(gpu, gpu_constants, corners[1]))
    mixed = Priced(nodes=[NodeProfile(n.name, n.op, n.events, n.loihi_pj, n.sanafe_pj, n.core_ns, n.x86_ns,
                                      g.gpu_pj, g.gpu_s, g.gpu45_pj) for n, g in zip(lp.nodes, gp.nodes)],
                   step_ns=lp.step_ns, time_s=lp.time_s, static_pj=lp.static_pj, static_w=lp.static_w,
                   gpu_time_s=gp.gpu_time_s, gpu_static_pj=gp.gpu_static_pj, gpu_idle_w=gp.gpu_idle_w,
                   gpu_active_w=gp.gpu_active_w)
    return metrics(counts, mixed, tokens_per_s)


@dataclass
class Profile:
    """Energy and time of one run (``rows`` inference rows, ``tokens`` tokens) on Loihi 2 and a GPU.

    Node figures and the plain properties are at the central constants; :attr:`ranges` holds every
    total at the low / central / high corners.
    """

    counts: Counts
    priced: Priced
    constants: EnergyConstants
    gpu: GpuSpec
    ranges: dict[str, Range]
    tokens_per_s: float | None = None
    gpu_measured: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    constant_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpu_sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ---- the counts and the central pricing, under their familiar names --------------------
    graph = property(lambda self: self.counts.graph)
    batches = property(lambda self: self.counts.batches)
    rows = property(lambda self: self.counts.rows)
    tokens = property(lambda self: self.counts.tokens)
    latency_steps = property(lambda self: self.counts.latency_steps)
    chips = property(lambda self: self.counts.chips)
    cores = property(lambda self: self.counts.cores)
    hops = property(lambda self: self.counts.hops)
    input_source = property(lambda self: self.counts.input_source)
    nodes = property(lambda self: self.priced.nodes)
    step_ns = property(lambda self: self.priced.step_ns)
    time_s = property(lambda self: self.priced.time_s)
    static_pj = property(lambda self: self.priced.static_pj)

    @property
    def dynamic_pj(self) -> float:
        return self.priced.dynamic_pj

    @property
    def loihi_pj(self) -> float:
        """Loihi 2 total at the modelled throughput: dynamic + static."""
        return self.dynamic_pj + self.static_pj

    @property
    def gpu_pj(self) -> float:
        """GPU dynamic energy (roofline model, central constants)."""
        return self.priced.gpu_dynamic_pj

    @property
    def gpu_total_pj(self) -> float:
        return self.priced.gpu_dynamic_pj + self.priced.gpu_static_pj

    @property
    def gpu45_pj(self) -> float:
        return float(sum(n.gpu45_pj for n in self.nodes))

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

    def gpu_parts(self) -> dict[str, float]:
        out = {p: float(sum(n.gpu_pj[p] for n in self.nodes)) for p in GPU_PARTS}
        out["static"] = self.priced.gpu_static_pj
        return out

    def by_kind(self) -> dict[str, dict[str, float]]:
        """Per node kind (op): count, Loihi pJ and its share of Loihi dynamic energy, GPU dynamic pJ and share."""
        kinds: dict[str, dict[str, float]] = {}
        dyn = self.dynamic_pj or 1.0
        gpu = self.gpu_pj or 1.0
        for n in self.nodes:
            k = kinds.setdefault(n.op, {"nodes": 0, "loihi_pj": 0.0, "gpu_pj": 0.0, "gpu_s": 0.0})
            k["nodes"] += 1
            k["loihi_pj"] += n.loihi_total_pj
            k["gpu_pj"] += n.gpu_total_pj
            k["gpu_s"] += n.gpu_s
        for k in kinds.values():
            k["loihi_share"] = k["loihi_pj"] / dyn
            k["gpu_share"] = k["gpu_pj"] / gpu
        return dict(sorted(kinds.items(), key=lambda kv: -kv[1]["loihi_pj"]))

    def totals(self) -> dict[str, Any]:
        per_tok = max(self.tokens, 1)
        r = self.ranges
        out: dict[str, Any] = {
            "loihi_dynamic_pj": self.dynamic_pj, "loihi_static_pj": self.static_pj, "loihi_pj": self.loihi_pj,
            "loihi_sanafe_dynamic_pj": self.sanafe_pj, "hala_point_crosscheck_pj": self.hala_point_pj,
            "decodemac_pj": self.decodemac_pj,
            "decodemac_share_of_loihi": self.decodemac_pj / self.loihi_pj if self.loihi_pj else 0.0,
            "decodemac_share_of_dynamic": self.decodemac_pj / self.dynamic_pj if self.dynamic_pj else 0.0,
            "loihi_time_s": self.time_s, "loihi_step_ns": self.step_ns, "latency_steps": self.latency_steps,
            "gpu": self.gpu.name, "gpu_dynamic_pj": self.gpu_pj, "gpu_static_pj": self.priced.gpu_static_pj,
            "gpu_total_pj": self.gpu_total_pj, "gpu_time_s": self.priced.gpu_time_s,
            "gpu_45nm_reference_pj": self.gpu45_pj,
            "loihi_over_gpu_dynamic": self.dynamic_pj / self.gpu_pj if self.gpu_pj else None,
            "loihi_over_gpu_total": self.loihi_pj / self.gpu_total_pj if self.gpu_total_pj else None,
            "loihi_pj_per_inference": self.loihi_pj / max(self.rows, 1), "loihi_pj_per_token": self.loihi_pj / per_tok,
            "gpu_total_pj_per_token": self.gpu_total_pj / per_tok,
            "tokens_per_s_stated": self.tokens_per_s,
            "at_stated_throughput": {k: r[k].mid for k in ("loihi_total_pj", "gpu_total_pj", "loihi_time_s",
                                                             "gpu_time_s")} if self.tokens_per_s else None,
        }
        for name, v in self.gpu_measured.items():
            if v.get("joules_per_token"):
                meas = v["joules_per_token"] / PJ
                out[f"gpu_measured_pj_per_token[{name}]"] = meas
                out[f"gpu_model_over_measured[{name}]"] = (self.gpu_total_pj / per_tok) / meas
        return out

    def ranges_json(self) -> dict[str, Any]:
        per_tok = 1.0 / max(self.tokens, 1)
        out = {k: v.as_dict() for k, v in self.ranges.items()}
        for k in ("loihi_dynamic_pj", "loihi_total_pj", "gpu_dynamic_pj", "gpu_total_pj"):
            out[k.replace("_pj", "_pj_per_token")] = self.ranges[k].scaled(per_tok).as_dict()
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "graph": self.graph, "batches": self.batches, "rows": self.rows, "tokens": self.tokens,
            "chips": self.chips, "cores": self.cores, "input_source": self.input_source,
            "hops": {"east_west_per_spike": self.hops.east_west, "north_south_per_spike": self.hops.north_south,
                     "chip_links_per_spike": self.hops.chip_links, "source": self.hops.source},
            "totals": self.totals(), "ranges": self.ranges_json(), "parts_pj": self.parts(),
            "gpu_parts_pj": self.gpu_parts(), "by_kind": self.by_kind(),
            "nodes": {n.name: {"op": n.op, **n.events, "loihi_pj": n.loihi_total_pj, "loihi_parts_pj": n.loihi_pj,
                               "sanafe_pj": n.sanafe_pj, "core_ns": n.core_ns, "x86_ns": n.x86_ns,
                               "gpu_pj": n.gpu_total_pj, "gpu_parts_pj": n.gpu_pj, "gpu_s": n.gpu_s,
                               "gpu_45nm_pj": n.gpu45_pj} for n in self.nodes},
            "gpu_measured": self.gpu_measured,
            "constants": self.constant_sources,
            "gpu": {"name": self.gpu.name, "label": self.gpu.label, "constants": self.gpu_sources},
            "notes": self.notes,
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


def count(artifact: Any, inputs: dict[str, np.ndarray] | None = None) -> tuple[Counts, list[str]]:
    """Run ``artifact`` on the NumPy backend and count its events and GPU work (no constants involved)."""
    from lasercc.backends.run import run_graph
    from lasercc.ir.artifact import Artifact, load

    art = artifact if isinstance(artifact, Artifact) else load(artifact)
    notes: list[str] = []
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
    if any(n.macs(graph) for n in graph.nodes):  # dense MACs (DecodeMAC): each kind's `macs` rule
        notes.append("DecodeMAC runs on the embedded x86 (Lakemont) cores, not overlapped with the spiking steps")
    nodes = [NodeCount(name=name, op=str(ns.get("op")), events={k: int(ns.get(k, 0)) for k in EVENT_KEYS},
                       gpu_ops=gpu_node_ops(graph.node(name), graph))
             for name, ns in st.get("nodes", {}).items()]
    counts = Counts(graph=graph.name, nodes=nodes, batches=batches, rows=rows, tokens=_tokens(graph, inputs, rows),
                    latency_steps=int(st.get("latency_steps", 0)), chips=chips, cores=cores, hops=hops, mesh=mesh,
                    system=system, input_source=source)
    return counts, notes


def shape_counts(graph: Graph, density: float, tokens: int = 1, part: dict[str, Any] | None = None,
                 gpu_rows: float = 1.0) -> Counts:
    """Counts of ``tokens`` executions of ``graph`` (one token each) from its shapes alone.

    Events are :func:`lasercc.hw.activity.expected_events` at spike ``density`` (for graphs with
    shape-only weights, which cannot run); placement from ``part`` (a ``partition.json`` dict),
    else one core per compute node on one chip. The GPU runs ``gpu_rows`` tokens per batch.
    """
    from lasercc.hw.activity import expected_events
    from lasercc.ir.analysis import critical_path

    spec = Loihi2Spec()
    if part is not None:
        mesh = MeshSpec(**(part.get("spec") or {}).get("mesh", {}))
        sysd = ((part.get("spec") or {}).get("systems") or {}).get(part.get("system", ""))
        system = SystemSpec(**sysd) if sysd else spec.system("kapoho-point")
        hops = HopModel.from_partition(part, mesh)
        chips, cores = int(part.get("chips_used") or 1), int(part.get("cores_used") or 1)
    else:
        mesh, system, hops = spec.mesh, spec.system("oheo-gulch"), HopModel.estimate()
        chips, cores = 1, max(1, sum(1 for n in graph.nodes if n.is_compute))
    nodes = []
    for n in graph.nodes:
        ev = expected_events(n, graph, density)
        nodes.append(NodeCount(name=n.name, op=n.op, events={k: int(round(v * tokens)) for k, v in ev.items()},
                               gpu_ops=gpu_node_ops(n, graph)))
    return Counts(graph=graph.name, nodes=nodes, batches=tokens, rows=tokens, tokens=tokens,
                  latency_steps=critical_path(graph), chips=chips, cores=cores, hops=hops, mesh=mesh, system=system,
                  input_source=f"EXPECTED events at spike density {density:.3g} (shapes only)", gpu_rows=gpu_rows,
                  gpu_batches=tokens / gpu_rows)


def profile_counts(counts: Counts, constants: dict[str, Any] | str | Path | EnergyConstants | None = None,
                   gpu: str | None = None, gpu_constants: dict[str, Any] | str | Path | None = None,
                   gpu_measured: str | Path | dict | None = None, tokens_per_s: float | None = None,
                   notes: list[str] | None = None) -> Profile:
    """Price ``counts`` at the central constants and at the corners of their ranges."""
    if tokens_per_s is not None and not tokens_per_s > 0:
        raise LasercError(f"tokens per second must be positive, got {tokens_per_s}")
    fixed = constants if isinstance(constants, EnergyConstants) else None
    over = None if fixed is not None else constants
    c = fixed or load_constants(over)
    g = load_gpu(gpu, gpu_constants)
    if fixed is not None:  # an explicit constants object is exact: no range on the Loihi side
        rng = ranges(counts, fixed.model_dump(), gpu, gpu_constants, tokens_per_s)
    else:
        rng = ranges(counts, over, gpu, gpu_constants, tokens_per_s)
    all_notes = ["Intel publishes no Loihi 2 per-operation energies: Loihi per-event costs are Loihi 1 silicon "
                 "figures bracketed by Loihi 2 system figures (ranges); static power is a published Loihi 2 "
                 "measurement; the GPU side is a roofline model of the " + g.label] + list(notes or [])
    return Profile(counts=counts, priced=price(counts, c, g), constants=c, gpu=g, ranges=rng,
                   tokens_per_s=tokens_per_s, gpu_measured=read_gpu_measured(gpu_measured), notes=all_notes,
                   constant_sources=constant_table(fixed.model_dump() if fixed is not None else over),
                   gpu_sources=gpu_table(g.name, gpu_constants))


def profile(artifact: Any, inputs: dict[str, np.ndarray] | None = None,
            constants: dict[str, Any] | str | Path | EnergyConstants | None = None,
            gpu_measured: str | Path | dict | None = None, gpu: str | None = None,
            gpu_constants: dict[str, Any] | str | Path | None = None,
            tokens_per_s: float | None = None) -> Profile:
    """Run ``artifact`` (an :class:`~lasercc.ir.artifact.Artifact` or a path) on the NumPy backend and price it.

    ``inputs`` default to :func:`default_inputs`; ``constants`` override :mod:`lasercc.hw.energy`'s
    defaults (dict or JSON file); ``gpu`` names the GPU (``lasercc.hw.gpu.gpu_names()``, default
    the one the cited Loihi results compared against), ``gpu_constants`` overrides its constants;
    ``gpu_measured`` is a ``bench/torch_throughput.py --json`` result; ``tokens_per_s`` states the
    throughput at which both sides' totals are reported.
    """
    counts, notes = count(artifact, inputs)
    return profile_counts(counts, constants, gpu, gpu_constants, gpu_measured, tokens_per_s, notes)
