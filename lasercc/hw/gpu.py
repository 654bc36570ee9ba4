"""A roofline-style GPU energy and time model, like for like with the Loihi 2 model.

Per node (one kernel) and per batch of rows:

* time = max(multiply-adds / peak rate at the node's precision, DRAM bytes / bandwidth)
  + ``kernel_overhead_us`` (launch and synchronisation, not overlapped);
* dynamic energy = multiply-adds x ``mac_pj`` + DRAM bytes x ``dram_pj_per_byte`` + on-chip
  activation bytes x ``onchip_pj_per_byte``;
* static energy = ``active_w`` x time: the power floor of a board that is running kernels (idle
  power plus clocks and leakage at load), fitted to a published measurement; at a stated
  throughput the board then idles at ``idle_w`` for the rest of the wall time.

Weights are read from DRAM once per batch (a batch of B rows shares them, so weight traffic per
token falls as 1/B); graph inputs (token ids, a KV cache) come from DRAM per row; activations
made inside the graph stay on chip. ``mac_pj`` = ``mac_fraction_of_tdp`` x TDP / (peak dense
multiply-adds per second at that precision): the datasheet bounds it (fraction 1 is the whole
board at peak), the fraction is a stated assumption. Nonlinear functions (ASNC nodes on Loihi)
run on the CUDA cores at the FP32 rate. Every constant has a value, a low / high range, a kind
and a source in ``gpu_constants.json``; ``active_w`` of the H100 is fitted to one published
measurement (bench/energy_validation.py names it and holds the others out).

Sources: [A100DS] NVIDIA A100 Tensor Core GPU datasheet; [H100DS] NVIDIA H100 Tensor Core GPU
datasheet; [ORINDS] NVIDIA Jetson Orin Nano series datasheet; [OC17] M. O'Connor et al.,
"Fine-Grained DRAM: Energy-Efficient DRAM for Extreme Bandwidth Systems", MICRO 2017; [MLE] The
ML.ENERGY leaderboard data (github.com/ml-energy/leaderboard, public/data, @0cd52da); [H14]
Horowitz ISSCC 2014.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lasercc.errors import LasercError
from lasercc.hw.energy import corner_values, ranged_entries, read_json_file

GPU_FILE = Path(__file__).with_name("gpu_constants.json")
_POS = Field(gt=0)
_NN = Field(ge=0)


class GpuSpec(BaseModel):
    """One GPU at one corner of its constants' ranges."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    label: str
    int8_tops: float = _POS
    fp16_tflops: float = _POS
    fp32_tflops: float = _POS
    mem_gb_s: float = _POS
    tdp_w: float = _POS
    idle_w: float = _NN
    active_w: float = _NN
    dram_pj_per_byte: float = _NN
    mac_fraction_of_tdp: float = Field(ge=0, le=1)
    onchip_pj_per_byte: float = _NN
    kernel_overhead_us: float = _NN

    def macs_per_s(self, bits: int) -> float:
        """Peak dense multiply-adds per second for ``bits``-wide operands (int8, fp16, else fp32)."""
        peak = self.int8_tops if bits <= 8 else self.fp16_tflops if bits <= 16 else self.fp32_tflops
        return peak * 1e12 / 2

    def mac_pj(self, bits: int) -> float:
        """Energy of one multiply-add: a fraction of the board's power at peak throughput."""
        return self.mac_fraction_of_tdp * self.tdp_w / self.macs_per_s(bits) * 1e12


def _data() -> dict[str, Any]:
    return read_json_file(GPU_FILE, "GPU constants")


def gpu_names() -> list[str]:
    return sorted(_data()["gpus"])


def default_gpu() -> str:
    return str(_data()["default"])


def gpu_table(name: str | None = None, override: dict[str, Any] | str | Path | None = None
              ) -> dict[str, dict[str, Any]]:
    """Every constant of GPU ``name`` (shared ones included) with value, range, unit, kind and source.

    ``override`` (dict or JSON file): shared keys at the top level, per-GPU keys under the GPU's
    name, e.g. ``{"kernel_overhead_us": 3, "h100": {"idle_w": 80}}``.
    """
    data = _data()
    name = name or str(data["default"])
    if name not in data["gpus"]:
        raise LasercError(f"unknown GPU {name!r}; known: {', '.join(sorted(data['gpus']))}")
    table = {**ranged_entries(data["shared"]), **ranged_entries(data["gpus"][name], skip=("label",))}
    extra: dict[str, Any] = {}
    if override is not None:
        raw = read_json_file(Path(override), "GPU constants file") if isinstance(override, (str, Path)) \
            else dict(override)
        extra = {k: v for k, v in raw.items() if k not in data["gpus"]}
        per_gpu = raw.get(name) or {}
        if not isinstance(per_gpu, dict):
            raise LasercError(f"GPU constants for {name!r} must be a JSON object of constant names to values")
        extra.update(per_gpu)
    extra_e = ranged_entries(extra)
    valid = sorted(set(GpuSpec.model_fields) - {"name", "label"})
    unknown = sorted(set(extra_e) - set(valid))
    if unknown:
        raise LasercError(f"unknown GPU constant {unknown[0]!r}; valid keys: {', '.join(valid)}")
    table.update(extra_e)
    for k, e in table.items():
        if not e["low"] <= e["value"] <= e["high"]:
            raise LasercError(f"bad GPU constant {k}: need low <= value <= high")
    return table


def ranged_gpu_constants(name: str | None = None, override: dict[str, Any] | str | Path | None = None) -> list[str]:
    return [k for k, e in gpu_table(name, override).items() if e["low"] != e["high"]]


def load_gpu(name: str | None = None, override: dict[str, Any] | str | Path | None = None, corner: str = "mid",
             pin: dict[str, str] | None = None) -> GpuSpec:
    """GPU ``name`` (default: ``gpu_constants.json``'s ``default``) at ``corner``, ``pin`` as in load_constants."""
    data = _data()
    name = name or str(data["default"])
    table = gpu_table(name, override)
    try:
        return GpuSpec(name=name, label=str(data["gpus"][name].get("label", name)), **corner_values(table, corner, pin))
    except ValidationError as e:
        first = e.errors()[0]
        raise LasercError(f"bad GPU constant {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


GPU_PARTS = ("compute", "dram", "onchip")


def node_cost(ops: dict[str, float], gpu: GpuSpec, nonlinear_ops: float, rows: float = 1.0
              ) -> tuple[dict[str, float], float]:
    """(pJ by part, seconds) of one node's work per batch (``lasercc.hw.energy.gpu_node_ops``).

    ``rows`` scales the per-row work (MACs, activations, graph inputs) of an ``ops`` counted for
    one row, leaving the weight traffic (read once per batch) as it is; ``rows=1`` prices ``ops``
    as counted. A node with no GPU work costs nothing and takes no time (it is a view or fused).
    """
    if not ops:
        return {p: 0.0 for p in GPU_PARTS}, 0.0
    bits = int(ops["bits"])
    macs = ops["macs"] * rows
    nl = ops["nonlinear_elements"] * nonlinear_ops * rows
    adds = ops["adds"] * rows
    dram = ops["dram_weight_bytes"] + ops["dram_input_bytes"] * rows
    onchip = ops["onchip_bytes"] * rows
    compute = macs * gpu.mac_pj(bits) + nl * gpu.mac_pj(32) + adds * gpu.mac_pj(bits) / 2
    t_compute = macs / gpu.macs_per_s(bits) + (nl + adds / 2) / gpu.macs_per_s(32)
    t_mem = dram / (gpu.mem_gb_s * 1e9)
    seconds = max(t_compute, t_mem) + gpu.kernel_overhead_us * 1e-6
    return {"compute": compute, "dram": dram * gpu.dram_pj_per_byte, "onchip": onchip * gpu.onchip_pj_per_byte}, seconds
