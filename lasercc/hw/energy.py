"""Energy and time constants of Loihi 2, with ranges, and the per-node energy rules of the profiler.

**Intel publishes no Loihi 2 per-operation energies.** The per-event costs are Loihi 1 silicon
figures [D18] (the central value), bracketed below by Intel's Loihi 2 system efficiency [HP24] and
above by SANA-FE's calibrated Loihi 1 costs [SANA]; static power is a published Loihi 2
measurement [LDL]. Every constant lives in ``energy_constants.json`` beside this module with its
value, low / high range, unit, kind (measured / datasheet / derived / fitted / loihi1 /
assumption) and source, so one file is both the default and the documentation; a user file
overrides any subset (:func:`load_constants`, :func:`constant_table`). Results are computed at the
low, central and high corners (every energy here grows with every constant, so the corners bound
the result). ``bench/energy_validation.py`` checks the model against published Loihi 2 and GPU
measurements. Mesh-hop energies and the chip-to-chip link cost are *not* duplicated here: they
are the resource model's (:mod:`lasercc.hw.loihi2`), so the partitioner's traffic and the
profiler's energy use the same numbers. The GPU side is :mod:`lasercc.hw.gpu`.

Sources:
  [D18]  M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE
         Micro 38(1), 2018, Table 2: 23.6 pJ per synaptic spike op, 81 / 52 pJ per active / inactive
         neuron update, 1.7 pJ within-tile spike, per-hop mesh costs (E-W 3.0 pJ; N-S printed as
         4.0 pJ there, 4.2 pJ in SANA-FE's transcription, which lasercc.hw.loihi2 uses).
  [SANA] SANA-FE (github.com/SLAM-Lab/SANA-FE) arch/loihi.yaml @c55bfa87: per-event energies and
         latencies of its Loihi model, calibrated within 12 % of measured Loihi; used for the
         timestep length and as a second ("SANA-FE-calibrated") energy estimate.
  [L2B]  Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2" (2021): 6 embedded
         x86 (Lakemont) cores per chip; "up to 10x faster" than Loihi 1.
  [HP24] Intel newsroom (Apr 2024): Hala Point, 1,152 Loihi 2 chips, 2.6 kW max, 15 TOPS/W at 8 bits.
  [LDL]  Intel lava-dl tutorials, tutorials/lava/lib/dl/netx/pilotnet_{snn,sdnn}/benchmark.ipynb
         @b9e3691 (Jan 2023): Loihi 2 power-probe measurements of PilotNet (static, dynamic, fps).
  [H14]  M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014: 45 nm
         energies of integer/float add and multiply, SRAM and DRAM accesses, ~70 pJ per instruction
         of a simple core (the DecodeMAC estimate and the 45 nm GPU reference).

Where DecodeMAC runs: on the chip's embedded x86 Lakemont cores, as scalar dense MACs. Its operands
are both activations that change every row, so they cannot sit in a neuro-core's static synaptic
memory; the x86 cores are Loihi 2's only general dense compute. This is the conservative choice and
the one that exposes the LASER review's point that the paper's 200x claim leaves dense MACs out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lasercc.errors import LasercError
from lasercc.hw.loihi2 import MeshSpec, SystemSpec
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import NODE_KINDS, Node
from lasercc.ir.types import CodeType

DEFAULT_FILE = Path(__file__).with_name("energy_constants.json")
_NN = Field(ge=0)


class EnergyConstants(BaseModel):
    """Every constant of the energy model (values only; units and sources in ``energy_constants.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    synaptic_op_pj: float = _NN
    neuron_update_active_pj: float = _NN
    neuron_update_inactive_pj: float = _NN
    spike_in_tile_pj: float = _NN
    sanafe_synapse_pj: float = _NN
    sanafe_neuron_access_pj: float = _NN
    sanafe_neuron_update_pj: float = _NN
    sanafe_spike_out_pj: float = _NN
    synaptic_op_ns: float = _NN
    neuron_update_ns: float = _NN
    spike_out_ns: float = _NN
    min_step_ns: float = _NN
    decodemac_mac_pj: float = _NN
    decodemac_mac_ns: float = _NN
    lakemont_cores_per_chip: int = Field(gt=0)
    static_power_w_per_chip: float = _NN
    hala_point_tops_per_w: float = Field(gt=0)
    hala_point_max_power_w: float = _NN
    hala_point_chips: int = Field(gt=0)
    gpu_int8_add_pj: float = _NN
    gpu_int32_add_pj: float = _NN
    gpu_int8_mult_pj: float = _NN
    gpu_int32_mult_pj: float = _NN
    gpu_fp16_add_pj: float = _NN
    gpu_fp16_mult_pj: float = _NN
    gpu_fp32_add_pj: float = _NN
    gpu_fp32_mult_pj: float = _NN
    gpu_sram_64b_pj: float = _NN
    gpu_dram_64b_pj: float = _NN
    gpu_nonlinear_ops: int = Field(ge=0)


CORNERS = ("low", "mid", "high")
KINDS = ("measured", "datasheet", "derived", "fitted", "loihi1", "assumption", "user")


def read_json_file(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``, or a one-line :class:`LasercError` naming ``what``."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError and UnicodeDecodeError
        raise LasercError(f"cannot read {what} {path}: {e}") from None
    if not isinstance(data, dict):
        raise LasercError(f"{what} {path} must hold a JSON object of constant names to values")
    return data



def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def ranged_entries(data: dict[str, Any], default_source: str = "user override",
                   skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Normalise a constants mapping to ``{name: {value, low, high, unit, kind, source}}``.

    ``{"k": 1.0}`` and ``{"k": {"value": 1.0}}`` both mean an exact figure (low = high = value): a
    number a user supplies replaces the whole range unless the user gives ``low``/``high`` too.
    Keys starting with ``_`` are comments, keys in ``skip`` are descriptive text; any other value
    that is not a number (or a ``value``/``low``/``high`` that is not) is a one-line error.
    """
    out: dict[str, dict[str, Any]] = {}
    for k, v in data.items():
        if k.startswith("_") or k in skip:
            continue
        e = dict(v) if isinstance(v, dict) else {"value": v}
        for f in ("value", "low", "high"):
            if (f == "value" or f in e) and not _number(e.get(f)):
                raise LasercError(f"bad constant {k}: {f} must be a number, got {e.get(f)!r}")
        e.setdefault("low", e["value"])
        e.setdefault("high", e["value"])
        e.setdefault("unit", "")
        e.setdefault("kind", "user")
        e.setdefault("source", default_source)
        out[k] = e
    return out


def corner_values(entries: dict[str, dict[str, Any]], corner: str = "mid",
                  pin: dict[str, str] | None = None) -> dict[str, Any]:
    """``{name: number}`` at ``corner`` (low / mid / high); ``pin`` moves single names to another corner."""
    if corner not in CORNERS:
        raise LasercError(f"unknown corner {corner!r}; use one of {', '.join(CORNERS)}")
    pin = pin or {}
    return {k: e["value" if (pin.get(k, corner)) == "mid" else pin.get(k, corner)] for k, e in entries.items()}


def _override_data(override: dict[str, Any] | str | Path | None, what: str) -> dict[str, Any]:
    if isinstance(override, (str, Path)):
        return read_json_file(Path(override), what)
    return dict(override or {})


def constant_table(override: dict[str, Any] | str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Every Loihi energy constant with its value, range, unit, kind and source (defaults + ``override``)."""
    table = ranged_entries(read_json_file(DEFAULT_FILE, "energy constants"))
    extra = ranged_entries(_override_data(override, "energy constants file"))
    valid = sorted(EnergyConstants.model_fields)
    unknown = sorted(set(extra) - set(valid))
    if unknown:
        raise LasercError(f"unknown energy constant {unknown[0]!r}; valid keys: {', '.join(valid)}")
    table.update(extra)
    for k, e in table.items():
        if not e["low"] <= e["value"] <= e["high"]:
            raise LasercError(f"bad energy constant {k}: need low <= value <= high, got "
                              f"{e['low']} / {e['value']} / {e['high']}")
    return table


def constant_sources() -> dict[str, str]:
    """Key -> "value unit [low, high] (kind) -- source" of the defaults, for reports."""
    return {k: f"{e['value']} {e['unit']} [{e['low']}, {e['high']}] ({e['kind']}) -- {e['source']}"
            for k, e in constant_table().items()}


def ranged_constants(override: dict[str, Any] | str | Path | None = None) -> list[str]:
    """Names of the constants whose low and high differ (the ones that make a result a range)."""
    return [k for k, e in constant_table(override).items() if e["low"] != e["high"]]


def load_constants(override: dict[str, Any] | str | Path | EnergyConstants | None = None, corner: str = "mid",
                   pin: dict[str, str] | None = None) -> EnergyConstants:
    """The constants at ``corner`` (default: the central values) with ``override`` (a dict or a JSON file) merged in.

    ``pin`` puts single constants at another corner (``{"synaptic_op_pj": "high"}``), for
    sensitivity analysis. An unknown key raises a one-line :class:`LasercError` naming it and
    listing the valid keys.
    """
    if isinstance(override, EnergyConstants):
        return override
    values = corner_values(constant_table(override), corner, pin)
    try:
        return EnergyConstants(**values)
    except ValidationError as e:
        first = e.errors()[0]
        raise LasercError(f"bad energy constant {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


# --------------------------------------------------------------------------------------------
# Loihi 2: energy from counted events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HopModel:
    """Mesh and chip-link hops travelled by one spike message, and where that figure comes from."""

    east_west: float
    north_south: float
    chip_links: float
    source: str

    @classmethod
    def from_partition(cls, part: dict[str, Any], mesh: MeshSpec) -> HopModel:
        """Average hops per message of a ``partition.json`` (its traffic is per streamed row).

        The partition reports total Manhattan hops H and NoC energy E = hx*E_ew + hy*E_ns + chip
        hops * E_link; with the spec it was made with this recovers hx and hy (E_ew != E_ns).
        """
        t = part.get("traffic_per_row") or {}
        msgs = float(t.get("messages", 0.0))
        if msgs <= 0:
            return cls(0.0, 0.0, 0.0, "partition.json (no spike traffic)")
        pmesh = MeshSpec(**(part.get("spec") or {}).get("mesh", {}))
        hops, chip = float(t.get("hops", 0.0)), float(t.get("chip_hops", 0.0))
        link = float(t.get("energy_pj", 0.0)) - 0.0  # mesh part below, after removing link energy
        sysd = ((part.get("spec") or {}).get("systems") or {}).get(part.get("system", ""), {})
        link -= chip * float(sysd.get("chip_link_energy_pj", SystemSpec.model_fields["chip_link_energy_pj"].default))
        ew_e, ns_e = pmesh.energy_east_west_pj, pmesh.energy_north_south_pj
        if hops > 0 and ns_e != ew_e:
            hx = min(max((ns_e * hops - link) / (ns_e - ew_e), 0.0), hops)
        else:
            hx = hops / 2
        return cls(hx / msgs, (hops - hx) / msgs, chip / msgs,
                   f"partition.json ({part.get('system')}, {part.get('cores_used')} cores, "
                   f"{part.get('chips_used')} chip(s))")

    @classmethod
    def estimate(cls) -> HopModel:
        """No partition: one mesh hop per spike (half E-W, half N-S), no chip crossings."""
        return cls(0.5, 0.5, 0.0, "ESTIMATE: no partition.json, 1 mesh hop per spike assumed")

    def pj_per_spike(self, c: EnergyConstants, mesh: MeshSpec, system: SystemSpec) -> dict[str, float]:
        return {"spike_in_tile": c.spike_in_tile_pj,
                "spike_hops": self.east_west * mesh.energy_east_west_pj + self.north_south * mesh.energy_north_south_pj,
                "chip_links": self.chip_links * system.chip_link_energy_pj}


LOIHI_PARTS = ("synaptic", "neuron_active", "neuron_inactive", "spike_in_tile", "spike_hops", "chip_links",
               "decodemac_macs")


def active_updates(op: str, st: dict[str, int]) -> int:
    """Neuron updates that do work ([D18] "active"): a Soma's neuron-step is active when a synaptic
    event arrives or it fires, bounded by min(updates, synaptic events + spikes out); ASNC, WTA, BSE
    and DecodeMAC neurons read their input bit every step, so all their updates count as active
    (the kind's ``traits.event_driven``)."""
    n = int(st.get("neuron_updates", 0))
    if NODE_KINDS[op].kind_traits().event_driven:
        return min(n, int(st.get("synaptic_events", 0)) + int(st.get("spikes", 0)))
    return n


def loihi_node_energy(op: str, st: dict[str, int], c: EnergyConstants, spike_pj: dict[str, float]) -> dict[str, float]:
    """Energy (pJ) of one node's counted events, by part. Linear in every event count."""
    act = active_updates(op, st)
    spikes = int(st.get("spikes", 0))
    return {
        "synaptic": int(st.get("synaptic_events", 0)) * c.synaptic_op_pj,
        "neuron_active": act * c.neuron_update_active_pj,
        "neuron_inactive": (int(st.get("neuron_updates", 0)) - act) * c.neuron_update_inactive_pj,
        "spike_in_tile": spikes * spike_pj["spike_in_tile"],
        "spike_hops": spikes * spike_pj["spike_hops"],
        "chip_links": spikes * spike_pj["chip_links"],
        "decodemac_macs": int(st.get("macs", 0)) * c.decodemac_mac_pj,
    }


def sanafe_node_energy(op: str, st: dict[str, int], c: EnergyConstants) -> float:
    """The same events priced with SANA-FE's calibrated Loihi costs (pJ; hops and MACs not included)."""
    n, act = int(st.get("neuron_updates", 0)), active_updates(op, st)
    return (int(st.get("synaptic_events", 0)) * c.sanafe_synapse_pj + n * c.sanafe_neuron_access_pj
            + act * c.sanafe_neuron_update_pj + int(st.get("spikes", 0)) * c.sanafe_spike_out_pj)


def node_work_ns(st: dict[str, int], c: EnergyConstants) -> tuple[float, float]:
    """(neuro-core ns, x86 ns) of one node's events if one core did them all (SANA-FE latencies)."""
    core = (int(st.get("synaptic_events", 0)) * c.synaptic_op_ns + int(st.get("neuron_updates", 0)) * c.neuron_update_ns
            + int(st.get("spikes", 0)) * c.spike_out_ns)
    return core, int(st.get("macs", 0)) * c.decodemac_mac_ns


# --------------------------------------------------------------------------------------------
# GPU: 45 nm estimate from operation counts (Horowitz ISSCC 2014)
# --------------------------------------------------------------------------------------------


def _mac_pj(bits: int, c: EnergyConstants) -> tuple[float, str]:
    """Energy of one multiply-add at matched precision: int8 (int32 accumulate), fp16, else fp32."""
    if bits <= 8:
        return c.gpu_int8_mult_pj + c.gpu_int32_add_pj, "int8"
    if bits <= 16:
        return c.gpu_fp16_mult_pj + c.gpu_fp16_add_pj, "fp16"
    return c.gpu_fp32_mult_pj + c.gpu_fp32_add_pj, "fp32"


def _bits(graph: Graph, name: str) -> int:
    t = graph.type_of(name)
    return t.bits if isinstance(t, CodeType) else 32


def _width(bits: int) -> int:
    """Bits a GPU stores one ``bits``-wide value in: 8, 16 or 32."""
    return 8 if bits <= 8 else 16 if bits <= 16 else 32


def _words(elements: int, bits: int) -> float:
    """64-bit words holding ``elements`` values of ``bits`` bits (8, 16 or 32 bits each on a GPU)."""
    return elements * _width(bits) / 64


def _weight(graph: Graph, name: str) -> tuple[tuple[int, ...], int] | None:
    """(shape, bits per element) of a weight constant: an array or a shape-only ConstSpec."""
    w = graph.constants.get(name)
    if w is None or not hasattr(w, "shape") or not hasattr(w, "dtype"):
        return None
    return tuple(int(d) for d in w.shape), 8 * int(np.dtype(w.dtype).itemsize)


def gpu_node_ops(node: Node, graph: Graph) -> dict[str, float]:
    """One execution's GPU work for ``node``: multiply-adds, their precision bits, memory traffic.

    Soma: a dense matmul (or elementwise product) per weight term, weights read from DRAM once
    per execution (a batch of rows shares them); DecodeMAC: its dense MACs; ASNC: one nonlinear
    evaluation per element (``gpu_nonlinear_ops`` multiply-adds, priced by the caller); WTA max: one
    compare per input element; BSE encode: a quantize (multiply-add) per element; Gather: the
    embedding rows from DRAM. Activations produced inside the graph stay on chip (read and written
    once: ``onchip_bytes``); graph inputs (token ids, a KV cache) come from DRAM per row
    (``dram_input_bytes``).
    """
    work = node.gpu_work(graph)  # the kind's rule (lasercc.ir.kinds); None: no kernel (a view, a host input)
    if work is None or not isinstance(node.type, CodeType):
        return {}
    out = int(np.prod(node.type.shape))
    ob = node.type.bits
    graph_inputs = {n.name for n in graph.inputs}
    in_bytes = {i: int(np.prod(graph.type_of(i).shape)) * _width(_bits(graph, i)) / 8 for i in node.inputs}
    onchip_in = sum(b for i, b in in_bytes.items() if i not in graph_inputs)
    dram_in = sum(b for i, b in in_bytes.items() if i in graph_inputs)
    out_bytes = out * _width(ob) / 8
    ops: dict[str, float] = {"macs": 0.0, "nonlinear_elements": 0.0, "adds": 0.0,
                             "bits": float(max([ob] + [_bits(graph, i) for i in node.inputs])),
                             "onchip_bytes": onchip_in + out_bytes, "dram_input_bytes": dram_in,
                             "dram_weight_bytes": 0.0}
    ops["macs"] += work.macs
    ops["nonlinear_elements"] += work.nonlinear_elements
    ops["adds"] += work.compares
    if work.mac_bits is not None:
        ops["bits"] = float(work.mac_bits)
    for wname in work.weights:
        w = _weight(graph, wname)
        if w is not None:
            ops["dram_weight_bytes"] += int(np.prod(w[0])) * _width(w[1]) / 8
    if work.rows_from_table:
        ops["dram_weight_bytes"], ops["onchip_bytes"], ops["dram_input_bytes"] = out_bytes, out_bytes, 0.0
    return ops


def gpu_node_energy(ops: dict[str, float], c: EnergyConstants) -> dict[str, float]:
    """pJ by part for :func:`gpu_node_ops`'s counts at Horowitz's 45 nm op energies.

    A reference point only (no idle power, 45 nm): the GPU estimate the profile compares against
    is the roofline model of :mod:`lasercc.hw.gpu`.
    """
    if not ops:
        return {"compute": 0.0, "sram": 0.0, "dram": 0.0}
    mac, _ = _mac_pj(int(ops["bits"]), c)
    nl_mac, _ = _mac_pj(max(int(ops["bits"]), 9), c)  # nonlinear functions run in float (fp16 or fp32)
    add = c.gpu_int8_add_pj if ops["bits"] <= 8 else c.gpu_fp16_add_pj if ops["bits"] <= 16 else c.gpu_fp32_add_pj
    compute = ops["macs"] * mac + ops["nonlinear_elements"] * c.gpu_nonlinear_ops * nl_mac + ops["adds"] * add
    dram_words = (ops.get("dram_weight_bytes", 0.0) + ops.get("dram_input_bytes", 0.0)) / 8
    return {"compute": compute, "sram": ops.get("onchip_bytes", 0.0) / 8 * c.gpu_sram_64b_pj,
            "dram": dram_words * c.gpu_dram_64b_pj}
