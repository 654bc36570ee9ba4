"""Energy and time constants, and the per-node energy rules of the profiler (Loihi 2 and a GPU estimate).

**Loihi 2 per-operation energies are not published by Intel.** Every Loihi figure here is a Loihi 1
(14 nm) figure used as an estimate for Loihi 2 (Intel 4); read results as Loihi-1-derived
estimates, not measurements. The values live in ``energy_constants.json`` beside this module
(value, unit and source per key) so that one file is both the default and the documentation; a
user file overrides any subset (``load_constants``). Mesh-hop energies and the chip-to-chip link
cost are *not* duplicated here: they are the resource model's (:mod:`lasercc.hw.loihi2`), so the
partitioner's traffic and the profiler's energy use the same numbers.

Sources:
  [D18]  M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE
         Micro 38(1), 2018, Table 2: 23.6 pJ per synaptic spike op, 81 / 52 pJ per active / inactive
         neuron update, 1.7 pJ within-tile spike, per-hop mesh costs (E-W 3.0 pJ; N-S printed as
         4.0 pJ there, 4.2 pJ in SANA-FE's transcription, which lasercc.hw.loihi2 uses).
  [SANA] SANA-FE (github.com/SLAM-Lab/SANA-FE) arch/loihi.yaml @c55bfa87: per-event energies and
         latencies of its Loihi model, calibrated within 12 % of measured Loihi; used for the
         timestep length and as a second ("SANA-FE-calibrated") energy estimate.
  [L2B]  Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2" (2021): 6 embedded
         x86 (Lakemont) cores per chip.
  [HP24] Intel newsroom (Apr 2024): Hala Point, 1,152 Loihi 2 chips, 2.6 kW max, 15 TOPS/W at 8 bits.
  [H14]  M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014: 45 nm
         energies of integer/float add and multiply, SRAM and DRAM accesses, ~70 pJ per instruction
         of a simple core. The GPU side is a **45 nm estimate, not a measurement**.

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
from lasercc.ir.nodes import ASNCSegment, BSEEncode, DecodeMAC, Gather, Node, Soma, SomaASNC, WTAMax
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


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError and UnicodeDecodeError
        raise LasercError(f"cannot read {what} {path}: {e}") from None
    if not isinstance(data, dict):
        raise LasercError(f"{what} {path} must hold a JSON object of constant names to values")
    return data


def _values(data: dict[str, Any]) -> dict[str, Any]:
    """``{"k": 1.0}`` or ``{"k": {"value": 1.0, ...}}`` -> ``{"k": 1.0}``; keys starting with _ are comments."""
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v)
            for k, v in data.items() if not k.startswith("_")}


def constant_sources() -> dict[str, str]:
    """Key -> "value unit -- source" of the defaults, for reports."""
    return {k: f"{v['value']} {v['unit']} -- {v['source']}"
            for k, v in _read(DEFAULT_FILE, "energy constants").items() if not k.startswith("_")}


def load_constants(override: dict[str, Any] | str | Path | EnergyConstants | None = None) -> EnergyConstants:
    """The default constants with ``override`` (a dict or a JSON file path) merged in.

    An unknown key raises a one-line :class:`LasercError` naming it and listing the valid keys.
    """
    if isinstance(override, EnergyConstants):
        return override
    base = _values(_read(DEFAULT_FILE, "energy constants"))
    extra: dict[str, Any] = {}
    if isinstance(override, (str, Path)):
        extra = _values(_read(Path(override), "energy constants file"))
    elif override is not None:
        extra = _values(dict(override))
    valid = sorted(EnergyConstants.model_fields)
    unknown = sorted(set(extra) - set(valid))
    if unknown:
        raise LasercError(f"unknown energy constant {unknown[0]!r}; valid keys: {', '.join(valid)}")
    try:
        return EnergyConstants(**{**base, **extra})
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
    and DecodeMAC neurons read their input bit every step, so all their updates count as active."""
    n = int(st.get("neuron_updates", 0))
    if op in (Soma.op, SomaASNC.op):
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


def _words(elements: int, bits: int) -> float:
    """64-bit words holding ``elements`` values of ``bits`` bits (8, 16 or 32 bits each on a GPU)."""
    width = 8 if bits <= 8 else 16 if bits <= 16 else 32
    return elements * width / 64


def gpu_node_ops(node: Node, graph: Graph) -> dict[str, float]:
    """One execution's GPU work for ``node``: multiply-adds, their precision bits, SRAM and DRAM words.

    Soma: a dense matmul (or elementwise product) per weight term, weights read once from DRAM;
    DecodeMAC: its dense MACs; ASNC: ``gpu_nonlinear_ops`` multiply-adds per element (filled in by
    the caller); WTA max: one compare (add) per element; BSE encode: a quantize (multiply-add) per
    element; Gather: the embedding rows from DRAM. Data movement is assumed fused (free).
    """
    if not isinstance(node.type, CodeType):
        return {}
    out = int(np.prod(node.type.shape))
    ob = node.type.bits
    in_words = sum(_words(int(np.prod(graph.type_of(i).shape)), _bits(graph, i)) for i in node.inputs)
    ops: dict[str, float] = {"macs": 0.0, "nonlinear_elements": 0.0, "adds": 0.0,
                             "bits": float(max([ob] + [_bits(graph, i) for i in node.inputs])),
                             "sram_words": in_words + _words(out, ob), "dram_words": 0.0}
    if isinstance(node, (Soma, SomaASNC)):
        for wname, form in zip(node.weights, node.forms):
            w = graph.constants.get(wname)
            if not isinstance(w, np.ndarray):
                continue
            ops["macs"] += out * (w.shape[0] if form == "matmul" else 1)
            ops["dram_words"] += _words(int(w.size), 8 if w.dtype.itemsize == 1 else 8 * w.dtype.itemsize)
        ops["bits"] = float(max(_bits(graph, i) for i in node.inputs))
        if isinstance(node, SomaASNC):
            ops["nonlinear_elements"] = out
    elif isinstance(node, DecodeMAC):
        a = graph.type_of(node.inputs[0])
        ops["macs"] = out * (a.shape[-1] if node.form == "matmul" else 1)
        ops["bits"] = float(max(_bits(graph, i) for i in node.inputs))
    elif isinstance(node, ASNCSegment):
        ops["nonlinear_elements"] = out
    elif isinstance(node, WTAMax):
        ops["adds"] = in_words * 64 / max(ob, 1)
    elif isinstance(node, BSEEncode):
        ops["macs"] = out
        ops["bits"] = 32.0
    elif isinstance(node, Gather):
        ops["dram_words"], ops["sram_words"] = _words(out, ob), 0.0
    else:
        return {}
    return ops


def gpu_node_energy(ops: dict[str, float], c: EnergyConstants) -> dict[str, float]:
    """pJ by part for :func:`gpu_node_ops`'s counts (45 nm estimate, not a measurement)."""
    if not ops:
        return {"compute": 0.0, "sram": 0.0, "dram": 0.0}
    mac, _ = _mac_pj(int(ops["bits"]), c)
    nl_mac, _ = _mac_pj(max(int(ops["bits"]), 9), c)  # nonlinear functions run in float (fp16 or fp32)
    add = c.gpu_int8_add_pj if ops["bits"] <= 8 else c.gpu_fp16_add_pj if ops["bits"] <= 16 else c.gpu_fp32_add_pj
    compute = ops["macs"] * mac + ops["nonlinear_elements"] * c.gpu_nonlinear_ops * nl_mac + ops["adds"] * add
    return {"compute": compute, "sram": ops["sram_words"] * c.gpu_sram_64b_pj,
            "dram": ops["dram_words"] * c.gpu_dram_64b_pj}
