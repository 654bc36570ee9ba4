"""Partitioning and placement onto Loihi 2 cores and chips (the ``partition`` pass).

What it does, in order (every step linear or n log n in the number of tiles):

1. **Resources per layer.** Every compute node (Soma, SomaASNC, ASNC, DecodeMAC, BSEEncode,
   WTAMax) is a population of ``N = out.shape[-1]`` neurons; leading axes (batch, sequence
   positions, heads) are *streamed* through the same neurons and synapses one row per step, as
   a Loihi deployment of a transformer does for batch-1 decoding. Per neuron: a Soma of fan-in
   K holds K synapses (x ``weight_slices`` for weights wider than 8 bits + sign), neuron state,
   and reads K input axons; an ASNC table costs its segments once per core; a DecodeMAC buffers
   decoded operands. Gather (embedding lookup) runs on the host and is not placed.
2. **Tiling.** A layer that exceeds a core is split into tiles of ``nc`` output neurons and,
   when even one neuron's fan-in does not fit (memory or axons), ``kc`` input columns; the
   ``kt`` fan-in tiles of an output block send their partial sums as graded spikes to the first
   one (the aggregator), which costs it ``(kt-1)*nc`` extra axons.
3. **Packing.** Tiles are packed in order into cores (next-fit): small tiles of consecutive
   layers share a core when neurons, memory and axons all fit.
4. **Ordering and placement.** Cores are laid along a locality-preserving serpentine curve:
   through the router mesh of a chip, then through the chips of the system grid in serpentine
   order, so that consecutive cores are always one hop apart. The layer order is the better (by
   the traffic x hops objective below) of the dataflow (topological) order and a spectral
   ordering (Fiedler vector of the layer-level traffic graph, networkx Laplacian), each laid
   along the serpentine or a raster curve -- the "greedy + spectral ordering" refinement: all
   candidates are scored with the objective below and the best is kept; every score is reported.
5. **Objective.** Spike messages per streamed row: a producer tile sends ``bits/2`` spikes per
   code it emits (the expected popcount of a uniform code; pass ``rates`` for measured ones) to
   every consumer tile that reads its columns (one message per destination core, as Loihi
   routes). Cost = messages x Manhattan hops; inter-chip links count separately. Sums over a
   consumer group are computed with sorted coordinates and prefix sums, never pair by pair.
6. **Baseline.** The naive in-order mapping that Lava's open-source mapper performs: each layer
   on fresh cores in graph order, no sharing, cores filled in raster (row-major) order chip by
   chip. The report gives the traffic x hop reduction against it.

The graph is not changed: the :class:`Partition` is returned in ``PassResult.info["partition"]``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lasercc.errors import LasercError
from lasercc.hw.loihi2 import Loihi2Spec, SystemSpec, load_spec
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Input, Node
from lasercc.ir.types import CodeType
from lasercc.passes.base import Pass, PassResult, option, register_pass

PARTITION_FILE = "partition.json"
RESOURCES = ("neurons", "memory", "axons_in")
RASTER_MAX_TILES = 20_000  # the raster candidate only wins on small graphs; skip it above this (time)


AUTO = "auto"
DEFAULT_BOARD = "kapoho-point"


class PartitionError(LasercError):
    """The graph does not fit the chosen system or a layer does not fit any core."""


class CapacityError(PartitionError):
    """The graph's packed cores exceed the system's: a larger system may hold it (``system="auto"`` tries them)."""

    def __init__(self, message: str, cores: int):
        super().__init__(message)
        self.cores = cores


# --------------------------------------------------------------------------------------------
# per-layer resource model and tiling
# --------------------------------------------------------------------------------------------


@dataclass
class Layer:
    """One placed compute node: its shape, tiling and per-tile resources."""

    name: str
    op: str
    n: int  # output neurons
    k: int  # fan-in columns (1 for elementwise)
    kc: int = 0
    nc: int = 0
    kt: int = 1
    nt: int = 1
    matmul: bool = False  # consumer reads all columns of a k-chunk (vs only its own columns)
    spikes_per_code: float = 0.0
    mem_fixed: int = 0  # bits per tile independent of neuron count
    mem_per_neuron: float = 0.0  # bits per neuron (for the chosen kc)
    axons_per_neuron: int = 1
    per_col: float = 0.0  # matmul: memory bits per fan-in column per neuron
    inputs: tuple[str, ...] = ()

    @property
    def tiles(self) -> int:
        return self.kt * self.nt


def _code_bits(t: object) -> int:
    return t.bits if isinstance(t, CodeType) else 8


def _layer(node: Node, graph: Graph, spec: Loihi2Spec, rates: dict[str, float]) -> Layer | None:
    c = spec.core
    out_bits = _code_bits(node.type)
    n = int(node.type.shape[-1]) if node.type.shape else 1
    rate = rates.get(node.name, out_bits / 2)
    state = c.neuron_state_bits
    lay = Layer(node.name, node.op, n, 1, spikes_per_code=rate, inputs=node.inputs)
    fp = node.core_footprint(graph)  # the kind's rule (lasercc.ir.kinds); None: not placed on a core
    if fp is None:
        return None
    lay.k, lay.matmul, lay.axons_per_neuron = fp.k, fp.matmul, fp.axons_per_neuron
    lay.mem_fixed = fp.table_entries * c.table_entry_bits + fp.fixed_bits
    lay.mem_per_neuron = fp.code_bits_per_neuron + state
    if fp.synapses:
        syn = 0.0
        for rows, bits in fp.synapses:
            syn += rows * spec.weight_slices(bits)
        lay.mem_per_neuron = syn * c.synapse_bits + fp.code_bits_per_neuron + state
    _tile(lay, spec)
    return lay


def _tile(lay: Layer, spec: Loihi2Spec) -> None:
    """Choose (kc, nc): keep the whole fan-in on one core when a neuron's column fits, else split K."""
    c = spec.core
    m, a = c.memory_bits, c.max_axons_in
    if not lay.matmul:
        lay.kc, lay.kt = lay.k, 1
        fits = [lay.n, c.max_neurons, int((m - lay.mem_fixed) // max(lay.mem_per_neuron, 1e-9)),
                a // max(lay.axons_per_neuron, 1)]
        lay.nc = min(fits)
        if lay.nc < 1:
            what = "memory" if fits[2] < 1 else "axons_in"
            need = lay.mem_per_neuron + lay.mem_fixed
            raise PartitionError(f"layer %{lay.name} ({lay.op}): one neuron needs {need:.0f} "
                                 f"bits of core memory but a core has {m}; {what} does not fit (raise "
                                 f"core.memory_bytes or lower the code width)")
        lay.nt = math.ceil(lay.n / lay.nc)
        return
    per_col = (lay.mem_per_neuron - c.neuron_state_bits) / max(lay.k, 1)  # synapse bits per fan-in column
    kc = min(lay.k, a)
    while kc >= 1:
        kt = math.ceil(lay.k / kc)
        per_neuron = kc * per_col + c.neuron_state_bits
        agg_axons = (kt - 1)  # partial sums arriving per output neuron at the aggregator
        nc = min(lay.n, c.max_neurons, int((m - lay.mem_fixed) // per_neuron))
        if agg_axons:
            nc = min(nc, (a - kc) // agg_axons) if a > kc else 0
        if nc >= 1:
            lay.kc, lay.kt, lay.nc = kc, kt, nc
            lay.nt = math.ceil(lay.n / nc)
            lay.mem_per_neuron, lay.per_col = per_neuron, per_col
            return
        kc //= 2
    raise PartitionError(f"layer %{lay.name} ({lay.op}): no tiling fits a core (memory {m} bits, "
                         f"{a} axons); a core would need at least {per_col + c.neuron_state_bits + lay.mem_fixed:.0f} "
                         "bits for one neuron of one input column")


# --------------------------------------------------------------------------------------------
# tiles, packing and placement
# --------------------------------------------------------------------------------------------


@dataclass
class _Tiles:
    """Flat arrays, one entry per tile (scales to ~10^5 tiles without Python objects)."""

    layer: np.ndarray
    kidx: np.ndarray
    nidx: np.ndarray
    n0: np.ndarray  # first output column
    neurons: np.ndarray
    memory: np.ndarray
    axons: np.ndarray


def _make_tiles(layers: list[Layer]) -> _Tiles:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("layer", "kidx", "nidx", "n0", "neurons", "memory", "axons")}
    for li, lay in enumerate(layers):
        ni = np.repeat(np.arange(lay.nt), lay.kt)  # n-major, k-minor: fan-in partners adjacent
        ki = np.tile(np.arange(lay.kt), lay.nt)
        n0 = ni * lay.nc
        neu = np.minimum(lay.nc, lay.n - n0)
        kcols = np.minimum(lay.kc, lay.k - ki * lay.kc) if lay.matmul else np.full_like(ki, lay.kc)
        if lay.matmul:
            state = lay.mem_per_neuron - lay.kc * lay.per_col
            mem = lay.mem_fixed + neu * (kcols * lay.per_col + state)
            ax = kcols + np.where(ki == 0, (lay.kt - 1) * neu, 0)
        else:
            mem = lay.mem_fixed + neu * lay.mem_per_neuron
            ax = neu * lay.axons_per_neuron
        for k, v in (("layer", np.full(ni.shape, li)), ("kidx", ki), ("nidx", ni), ("n0", n0), ("neurons", neu),
                     ("memory", mem), ("axons", ax)):
            parts[k].append(np.asarray(v, dtype=np.int64 if k != "memory" else np.float64))
    return _Tiles(**{k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()})


def _pack(t: _Tiles, order: np.ndarray, spec: Loihi2Spec, share: bool) -> np.ndarray:
    """Core index of each tile: next-fit in ``order``; ``share=False`` gives each layer fresh cores."""
    c = spec.core
    core = np.empty(len(t.layer), dtype=np.int64)
    cur, nn, mm, aa, last_layer = -1, 0, 0.0, 0, -1
    cap_m = c.memory_bits
    lay, neu, mem, ax = t.layer.tolist(), t.neurons.tolist(), t.memory.tolist(), t.axons.tolist()
    for i in order.tolist():
        fits = nn + neu[i] <= c.max_neurons and mm + mem[i] <= cap_m and aa + ax[i] <= c.max_axons_in
        if cur < 0 or not fits or (not share and lay[i] != last_layer):
            cur += 1
            nn, mm, aa = 0, 0.0, 0
        nn, mm, aa, last_layer = nn + neu[i], mm + mem[i], aa + ax[i], lay[i]
        core[i] = cur
    return core


def _slot_coords(n_cores: int, spec: Loihi2Spec, system: SystemSpec, serpentine: bool) -> np.ndarray:
    """(chip, chip_x, chip_y, router_x, router_y) for core slots 0..n-1 in placement order."""
    mesh = spec.mesh
    per_chip = spec.cores_per_chip(system)
    gw, gh = system.grid
    # router visiting order within a chip
    rx, ry = [], []
    for y in range(mesh.height):
        xs = range(mesh.width) if (not serpentine or y % 2 == 0) else range(mesh.width - 1, -1, -1)
        for x in xs:
            rx.extend([x] * mesh.cores_per_router)
            ry.extend([y] * mesh.cores_per_router)
    rx_a, ry_a = np.asarray(rx[:per_chip]), np.asarray(ry[:per_chip])
    # chip visiting order on the system grid
    cx, cy = [], []
    n_chips = max(system.chips, -(-n_cores // per_chip))  # the naive mapping may overflow: virtual rows
    for y in range(-(-n_chips // gw)):
        xs = range(gw) if (not serpentine or y % 2 == 0) else range(gw - 1, -1, -1)
        for x in xs:
            cx.append(x)
            cy.append(y)
    cx_a, cy_a = np.asarray(cx[:n_chips]), np.asarray(cy[:n_chips])
    slots = np.arange(n_cores)
    chip = slots // per_chip
    local = slots % per_chip
    if serpentine:  # odd chips traverse their mesh backwards so consecutive chips meet at a shared edge
        local = np.where(chip % 2 == 1, per_chip - 1 - local, local)
    return np.stack([chip, cx_a[chip], cy_a[chip], rx_a[local], ry_a[local]], axis=1)


# --------------------------------------------------------------------------------------------
# traffic and cost
# --------------------------------------------------------------------------------------------


@dataclass
class _Flows:
    """Producer-tile -> consumer-group flows: ``src`` tile, ``group`` id, spike messages per row."""

    src: np.ndarray
    group: np.ndarray
    msgs: np.ndarray
    members: list[np.ndarray]  # tile ids of each consumer group


def _flows(layers: list[Layer], tiles: _Tiles, sources: dict[str, list[str]]) -> _Flows:
    index = {lay.name: i for i, lay in enumerate(layers)}
    start = np.concatenate([[0], np.cumsum([lay.tiles for lay in layers])]).astype(np.int64)
    src_l, grp_l, msg_l, members = [], [], [], []

    def tile_id(li: int, ni: np.ndarray | int, ki: np.ndarray | int) -> np.ndarray:
        return start[li] + np.asarray(ni) * layers[li].kt + np.asarray(ki)

    for vi, v in enumerate(layers):
        # groups of consumer tiles that read the same input columns
        if v.matmul:
            groups = [(kk * v.kc, min(v.k, (kk + 1) * v.kc), tile_id(vi, np.arange(v.nt), kk)) for kk in range(v.kt)]
            span = v.k
        else:
            groups = [(nn * v.nc, min(v.n, (nn + 1) * v.nc), tile_id(vi, nn, np.arange(v.kt))) for nn in range(v.nt)]
            span = v.n
        for u_name in {s for i in v.inputs for s in sources.get(i, [])}:
            ui = index[u_name]
            u = layers[ui]
            for a, b, mem in groups:
                # proportional column mapping (exact for elementwise chains and for matmul fan-in)
                lo = a * u.n // span
                hi = max(lo + 1, -(-b * u.n // span))
                for ni in range(lo // u.nc, (hi - 1) // u.nc + 1):
                    cols = min(hi, (ni + 1) * u.nc, u.n) - max(lo, ni * u.nc)
                    if cols <= 0:
                        continue
                    gid = len(members)
                    members.append(mem)
                    # every fan-in tile of the producer's block emits? only the aggregator (k=0) emits outputs
                    src_l.append(int(tile_id(ui, ni, 0)))
                    grp_l.append(gid)
                    msg_l.append(cols * u.spikes_per_code)
        if v.kt > 1:  # partial sums: fan-in tiles k>0 -> aggregator k=0, one graded spike per neuron
            for nn in range(v.nt):
                gid = len(members)
                members.append(np.asarray([tile_id(vi, nn, 0)]))
                neu = min(v.nc, v.n - nn * v.nc)
                for kk in range(1, v.kt):
                    src_l.append(int(tile_id(vi, nn, kk)))
                    grp_l.append(gid)
                    msg_l.append(float(neu))
    return _Flows(np.asarray(src_l, np.int64), np.asarray(grp_l, np.int64), np.asarray(msg_l, np.float64),
                  members)


def _cost(fl: _Flows, core_of_tile: np.ndarray, coords: np.ndarray, spec: Loihi2Spec,
          system: SystemSpec) -> dict[str, float]:
    """Traffic metrics of a placement (all per streamed row)."""
    mesh = spec.mesh
    tile_xy = coords[core_of_tile]  # tile -> (chip, cx, cy, rx, ry)
    gx = tile_xy[:, 1] * mesh.width + tile_xy[:, 3]
    gy = tile_xy[:, 2] * mesh.height + tile_xy[:, 4]
    chip = tile_xy[:, 0]
    tot = {"messages": 0.0, "inter_core": 0.0, "inter_chip": 0.0, "hops": 0.0, "chip_hops": 0.0, "energy_pj": 0.0}
    order = np.argsort(fl.group, kind="stable")
    g_sorted = fl.group[order]
    bounds = np.searchsorted(g_sorted, np.arange(len(fl.members) + 1))
    for gid, mem in enumerate(fl.members):
        sel = order[bounds[gid]:bounds[gid + 1]]
        if sel.size == 0:
            continue
        src, msgs = fl.src[sel], fl.msgs[sel]
        dst_cores = np.unique(core_of_tile[mem])  # one message per destination core (multicast)
        d = coords[dst_cores]
        dx, dy = d[:, 1] * mesh.width + d[:, 3], d[:, 2] * mesh.height + d[:, 4]
        sx, sy, sc = gx[src], gy[src], chip[src]
        s_core = core_of_tile[src]
        hx, hy = _abs_sum(dx, sx), _abs_sum(dy, sy)
        cxs, cys = _abs_sum(d[:, 1], tile_xy[src, 1]), _abs_sum(d[:, 2], tile_xy[src, 2])
        n = len(dst_cores)
        same_core = np.isin(s_core, dst_cores).astype(np.float64)
        chips_of_dst, cnt = np.unique(d[:, 0], return_counts=True)
        same_chip = cnt[np.clip(np.searchsorted(chips_of_dst, sc), 0, len(cnt) - 1)]
        same_chip = np.where(chips_of_dst[np.clip(np.searchsorted(chips_of_dst, sc), 0, len(cnt) - 1)] == sc,
                             same_chip, 0)
        tot["messages"] += float(msgs.sum() * n)
        tot["inter_core"] += float((msgs * (n - same_core)).sum())
        tot["inter_chip"] += float((msgs * (n - same_chip)).sum())
        tot["hops"] += float((msgs * (hx + hy)).sum())
        tot["chip_hops"] += float((msgs * (cxs + cys)).sum())
        tot["energy_pj"] += float((msgs * (hx * mesh.energy_east_west_pj + hy * mesh.energy_north_south_pj
                                           + (cxs + cys) * system.chip_link_energy_pj)).sum())
    return tot


def _abs_sum(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """sum_j |q - p_j| for every query q, by sorting and prefix sums (n log n, not n*m)."""
    p = np.sort(points.astype(np.float64))
    pre = np.concatenate([[0.0], np.cumsum(p)])
    q = queries.astype(np.float64)
    i = np.searchsorted(p, q, side="right")
    return q * i - pre[i] + (pre[-1] - pre[i]) - q * (len(p) - i)


# --------------------------------------------------------------------------------------------
# the result and the pass
# --------------------------------------------------------------------------------------------


@dataclass
class Placement:
    """One mapping of tiles to cores: core index per tile, coordinates per core, traffic metrics."""

    strategy: str
    core_of_tile: np.ndarray
    coords: np.ndarray
    traffic: dict[str, float]

    @property
    def cores(self) -> int:
        return int(self.core_of_tile.max()) + 1 if self.core_of_tile.size else 0

    @property
    def chips(self) -> int:
        return int(np.unique(self.coords[: self.cores, 0]).size)


@dataclass
class Partition:
    """A graph mapped onto a Loihi 2 system: tiling, core assignment, placement and traffic."""

    graph_name: str
    system: SystemSpec
    spec: Loihi2Spec
    layers: list[Layer]
    tiles: _Tiles
    best: Placement
    naive: Placement
    alternatives: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    # ---- summaries
    def utilisation(self) -> dict[str, float]:
        """Used / capacity of the cores in use, per resource."""
        c = self.spec.core
        n = max(self.best.cores, 1)
        return {"neurons": float(self.tiles.neurons.sum()) / (n * c.max_neurons),
                "memory": float(self.tiles.memory.sum()) / (n * c.memory_bits),
                "axons_in": float(self.tiles.axons.sum()) / (n * c.max_axons_in)}

    def binding_resource(self) -> str:
        """The resource that fills cores first (the one whose per-core utilisation is highest)."""
        c = self.spec.core
        core = self.best.core_of_tile
        n = self.best.cores
        per = {
            "neurons": np.bincount(core, self.tiles.neurons, n) / c.max_neurons,
            "memory": np.bincount(core, self.tiles.memory, n) / c.memory_bits,
            "axons_in": np.bincount(core, self.tiles.axons, n) / c.max_axons_in,
        }
        binding = np.argmax(np.stack([per[r] for r in RESOURCES]), axis=0)
        counts = np.bincount(binding, minlength=3)
        return RESOURCES[int(np.argmax(counts))]

    def reduction(self) -> float:
        """Naive traffic x hops divided by ours (> 1 is better)."""
        ours = self.best.traffic["hops"]
        return self.naive.traffic["hops"] / ours if ours > 0 else float("inf") if self.naive.traffic["hops"] else 1.0

    def summary(self) -> dict[str, Any]:
        return {
            "graph": self.graph_name, "system": self.system.name, "strategy": self.best.strategy,
            "chips_available": self.system.chips, "cores_per_chip": self.spec.cores_per_chip(self.system),
            "cores_used": self.best.cores, "chips_used": self.best.chips, "tiles": int(len(self.tiles.layer)),
            "layers": len(self.layers), "utilisation": {k: round(v, 4) for k, v in self.utilisation().items()},
            "binding_resource": self.binding_resource(),
            "traffic_per_row": {k: round(v, 1) for k, v in self.best.traffic.items()},
            "naive": {"cores_used": self.naive.cores, "chips_used": self.naive.chips,
                      "fits": self.naive.chips <= self.system.chips,
                      "traffic_per_row": {k: round(v, 1) for k, v in self.naive.traffic.items()}},
            "traffic_x_hops_reduction": round(self.reduction(), 3),
            "orderings_hops": {k: round(v, 1) for k, v in self.alternatives.items()},
            "seconds": round(self.seconds, 3),
        }

    def to_json(self, cores: bool = True) -> dict[str, Any]:
        """``partition.json``: the summary, per-layer tiling and (optionally) every core's load."""
        out = self.summary()
        out["spec"] = self.spec.to_json()
        first_core = _first_core_per_layer(self.tiles.layer, self.best.core_of_tile, len(self.layers))
        out["layer_tiling"] = [
            {"node": lay.name, "op": lay.op, "neurons": lay.n, "fan_in": lay.k, "tile_neurons": lay.nc,
             "tile_fan_in": lay.kc, "n_tiles": lay.nt, "k_tiles": lay.kt, "first_core": int(first_core[i])}
            for i, lay in enumerate(self.layers)]
        if cores:
            n = self.best.cores
            core = self.best.core_of_tile
            c = self.best.coords[:n]
            out["cores"] = {
                "columns": ["chip", "chip_x", "chip_y", "router_x", "router_y", "neurons", "memory_bits", "axons_in"],
                "rows": np.column_stack([c, np.bincount(core, self.tiles.neurons, n).astype(np.int64),
                                         np.bincount(core, self.tiles.memory, n).astype(np.int64),
                                         np.bincount(core, self.tiles.axons, n).astype(np.int64)]).tolist(),
            }
        return out

    def report(self) -> str:
        s = self.summary()
        u = s["utilisation"]
        t, nt = s["traffic_per_row"], s["naive"]["traffic_per_row"]
        lines = [
            f"partition of {s['graph']} onto {s['system']} "
            f"({s['chips_available']} chips x {s['cores_per_chip']} cores)",
            f"  layers {s['layers']}, tiles {s['tiles']:,}, cores used {s['cores_used']:,}, "
            f"chips used {s['chips_used']}",
            f"  utilisation of used cores: neurons {u['neurons']:.1%}, memory {u['memory']:.1%}, "
            f"axons {u['axons_in']:.1%}; binding resource: {s['binding_resource']}",
            f"  spike messages per row: {t['messages']:,.0f} (inter-core {t['inter_core']:,.0f}, "
            f"inter-chip {t['inter_chip']:,.0f}); traffic x hops {t['hops']:,.0f}; "
            f"NoC energy {t['energy_pj'] / 1e3:,.1f} nJ/row",
            f"  naive in-order mapping (Lava-style): cores {s['naive']['cores_used']:,}, chips "
            f"{s['naive']['chips_used']}, traffic x hops {nt['hops']:,.0f}, inter-chip {nt['inter_chip']:,.0f}",
            f"  traffic x hops reduction vs naive: {s['traffic_x_hops_reduction']:.2f}x "
            if s["traffic_x_hops_reduction"] != float("inf") else "  traffic x hops reduction vs naive: ours has none "
            f"(ordering {s['strategy']}; candidates {s['orderings_hops']})",
        ]
        return "\n".join(lines)

    def extra_files(self) -> dict[str, str]:
        """What the compile command puts into ``Artifact.extra_files``."""
        return {PARTITION_FILE: json.dumps(self.to_json(), indent=1)}


def _first_core_per_layer(layer: np.ndarray, core: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -1, dtype=np.int64)
    order = np.argsort(layer, kind="stable")
    first = np.searchsorted(layer[order], np.arange(n))
    ok = first < len(order)
    out[ok] = np.minimum.reduceat(core[order], first[ok]) if ok.any() else out[ok]
    return out


def _sources(graph: Graph, placed: set[str]) -> dict[str, list[str]]:
    """For every value, the placed compute nodes whose spikes it carries (through data movement)."""
    out: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n.name in placed:
            out[n.name] = [n.name]
        elif isinstance(n, Input) or not n.inputs:
            out[n.name] = []
        else:
            out[n.name] = sorted({s for i in n.inputs for s in out.get(i, [])})
    return out


def _spectral_order(layers: list[Layer], fl: _Flows, tiles: _Tiles) -> np.ndarray | None:
    """Layer order by the Fiedler vector of the layer-level traffic graph (None if disconnected)."""
    import networkx as nx

    n = len(layers)
    if n < 3:
        return None
    g = nx.Graph()
    g.add_nodes_from(range(n))
    src_layer = tiles.layer[fl.src]
    dst_layer = np.asarray([tiles.layer[m[0]] for m in fl.members])[fl.group]
    w: dict[tuple[int, int], float] = {}
    for a, b, m in zip(src_layer.tolist(), dst_layer.tolist(), fl.msgs.tolist()):
        if a != b:
            key = (min(a, b), max(a, b))
            w[key] = w.get(key, 0.0) + m
    for (a, b), m in w.items():
        g.add_edge(a, b, weight=m)
    if not nx.is_connected(g):
        return None
    lap = nx.laplacian_matrix(g, nodelist=range(n), weight="weight").toarray().astype(np.float64)
    lap /= max(np.abs(lap).max(), 1e-12)
    _, vecs = np.linalg.eigh(lap)
    fiedler = vecs[:, 1]
    # orient so the graph inputs come first
    if fiedler[0] > fiedler[-1]:
        fiedler = -fiedler
    return np.argsort(fiedler, kind="stable")


def partition_graph(graph: Graph, system: str = AUTO, spec: Loihi2Spec | dict | str | None = None,
                    rates: dict[str, float] | None = None) -> Partition:
    """Tile, pack and place ``graph`` on a Loihi 2 system (see the module doc for the model).

    ``system``: a system of the spec (oheo-gulch, kapoho-point, hala-point or one the spec adds), or ``"auto"``:
    the Kapoho Point board when the graph fits it, else the smallest system of the spec (by chips) that holds it.
    Why not always the smallest: a one-chip graph is still laid out for the board most users have, so small
    models' placements do not change with the default; a multi-layer model past 8 chips should not fail on a
    default it never asked for. ``rates``: measured spikes per code per node (e.g. from a profile); default bits/2.
    Raises :class:`PartitionError` when a layer or the whole graph does not fit (:class:`CapacityError` when the
    graph does not fit the system, or with ``"auto"`` no system of the spec).
    """
    if system == AUTO:
        return _partition_auto(graph, load_spec(spec), rates)
    t0 = time.perf_counter()
    hw = load_spec(spec)
    sysm = hw.system(system)
    layers = [lay for n in graph.nodes if n.is_compute and (lay := _layer(n, graph, hw, rates or {})) is not None]
    if not layers:
        raise PartitionError(f"graph {graph.name} has no compute nodes to place")
    tiles = _make_tiles(layers)
    fl = _flows(layers, tiles, _sources(graph, {lay.name for lay in layers}))
    capacity = sysm.chips * hw.cores_per_chip(sysm)

    def place(layer_order: np.ndarray, share: bool, serpentine: bool, label: str) -> Placement:
        rank = np.empty(len(layers), dtype=np.int64)
        rank[layer_order] = np.arange(len(layers))
        tile_order = np.lexsort((np.arange(len(tiles.layer)), rank[tiles.layer]))
        core = _pack(tiles, tile_order, hw, share)
        n_cores = int(core.max()) + 1
        if n_cores > capacity and label != "naive":
            _too_big(graph, hw, sysm, n_cores, tiles, layers)
        coords = _slot_coords(n_cores, hw, sysm, serpentine)
        return Placement(label, core, coords, _cost(fl, core, coords, hw, sysm))

    topo = np.arange(len(layers))
    naive = place(topo, share=False, serpentine=False, label="naive")
    orders = [("dataflow", topo)]
    spec_order = _spectral_order(layers, fl, tiles)
    if spec_order is not None and not np.array_equal(spec_order, topo):
        orders.append(("spectral", spec_order))
    cands = [place(o, share=True, serpentine=serp, label=f"{label}/{'serpentine' if serp else 'raster'}")
             for label, o in orders for serp in (True, False)
             if serp or (label == "dataflow" and len(tiles.layer) <= RASTER_MAX_TILES)]
    best = min(cands, key=lambda p: (p.traffic["hops"], p.cores))
    return Partition(graph.name, sysm, hw, layers, tiles, best, naive,
                     {p.strategy: p.traffic["hops"] for p in cands}, time.perf_counter() - t0)


def _partition_auto(graph: Graph, hw: Loihi2Spec, rates: dict[str, float] | None) -> Partition:
    """``system="auto"``: Kapoho Point, else the smallest larger system whose cores hold what the last try packed
    (each system is tried in chip order, as packing depends on its usable cores per chip)."""
    board = hw.system(DEFAULT_BOARD) if DEFAULT_BOARD in hw.systems else None
    larger = sorted((s for s in hw.systems.values() if board is None or s.chips > board.chips), key=lambda s: s.chips)
    tries = ([board] if board is not None else []) + larger
    err: CapacityError | None = None
    for s in tries:
        if err is not None and s.chips * hw.cores_per_chip(s) < err.cores:
            continue
        try:
            return partition_graph(graph, s.name, hw, rates)
        except CapacityError as e:
            err = e
    assert err is not None  # tries is never empty: the spec always has systems
    raise CapacityError(f"system auto: {err}", err.cores)


def _too_big(graph: Graph, hw: Loihi2Spec, sysm: SystemSpec, n_cores: int, tiles: _Tiles, layers: list[Layer]) -> None:
    have = sysm.chips * hw.cores_per_chip(sysm)
    fits = [s.name for s in sorted(hw.systems.values(), key=lambda s: s.chips)
            if s.chips * hw.cores_per_chip(s) >= n_cores]
    biggest = max(layers, key=lambda lay: lay.tiles)
    need_chips = math.ceil(n_cores / hw.cores_per_chip(sysm))
    raise CapacityError(
        f"graph {graph.name} needs {n_cores:,} cores ({need_chips} chips) but {sysm.name} has {have:,} "
        f"({sysm.chips} chips); largest layer %{biggest.name} ({biggest.op}) alone takes {biggest.tiles:,} tiles "
        f"of memory-bound synapses; fits on: {', '.join(fits) or 'no known system (add one to the spec)'}", n_cores)


@register_pass
@dataclass(frozen=True)
class PartitionPass(Pass):
    """Tile layers to Loihi 2 cores, assign chips and place on the mesh to cut spike traffic x hops."""

    name: ClassVar[str] = "partition"
    system: str = option(AUTO, "auto (kapoho-point when the graph fits it, else the smallest system that does) | "
                               "oheo-gulch | kapoho-point | hala-point (or one defined in spec)")
    hw: str | None = option(None, "JSON file overriding the Loihi 2 resource model")
    memory_kb: int | None = option(None, "per-core synaptic/state SRAM in KB (default 128; some sources say 192)")

    def run(self, graph: Graph) -> PassResult:
        hw: Any = self.hw
        if self.memory_kb is not None:
            base = load_spec(self.hw).to_json()
            base["core"]["memory_bytes"] = self.memory_kb * 1024
            hw = base
        part = partition_graph(graph, system=self.system, spec=hw)
        return PassResult(graph, False, {"partition": part})


def partition_extra_files(part: Partition) -> dict[str, str]:
    """``{"partition.json": text}`` for ``Artifact.extra_files`` (the compile command calls this)."""
    return part.extra_files()
