"""Loihi 2 resource model: a validated, user-overridable spec of cores, chips, systems and the mesh.

Every constant carries its source. Where Intel publishes no figure for Loihi 2 the value is a
stated *assumption* (marked so), kept as a field a user can override from JSON
(``Loihi2Spec.from_json(path)`` or ``load_spec(overrides)``) -- e.g. the 192 KB per-core memory
some sources quote, or a measured inter-chip link cost.

Sources:
  [D18]   M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
          IEEE Micro 38(1), 2018 (Table 2: mesh hop energy and latency).
  [SANA]  SANA-FE, arch/loihi.yaml (github.com/SLAM-Lab/SANA-FE): the [D18] hop costs per
          direction: east/west 3.0 pJ / 4.1 ns, north/south 4.2 pJ / 6.5 ns; 8 x 4 router tiles
          of 4 cores = 128 cores per chip.
  [L2B]   Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2" technology brief
          (2021): 128 neuro-cores per chip, up to 8,192 neurons per core (1M per chip), graded
          spikes with integer payloads, 6 embedded x86 cores.
  [LAVA]  lava-nc 0.10 (github.com/lava-nc/lava): graded spikes carry up to 24-bit payloads;
          weights of ``Dense`` are 8-bit signed (num_weight_bits <= 8, plus sign).
  [HP24]  Intel newsroom, "Intel Builds World's Largest Neuromorphic System" (Apr 2024): Hala
          Point = 1,152 Loihi 2 processors, 140,544 neuromorphic cores, 1.15 billion neurons.
  [KP]    Intel INRC: Kapoho Point board = 8 Loihi 2 chips (stackable); Oheo Gulch = 1 chip.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lasercc.errors import LasercError


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CoreSpec(_Spec):
    """One neuro-core's resources."""

    max_neurons: int = Field(8192, gt=0)  # [L2B] up to 8,192 neurons per core
    memory_bytes: int = Field(128 * 1024, gt=0)  # synaptic + state SRAM; 128 KB default (some sources: 192 KB)
    max_axons_in: int = Field(8192, gt=0)  # ASSUMPTION: = max_neurons (Loihi 1 had 4,096 fan-in axons [D18])
    max_axons_out: int = Field(8192, gt=0)  # ASSUMPTION: as above (Loihi 1: 4,096 fan-out axons [D18])
    weight_bits: int = Field(8, ge=1, le=8)  # [LAVA] 8-bit weight magnitude ...
    weight_sign_bit: bool = True  # [LAVA] ... plus sign (Loihi 1: "1 to 9 bits signed" [D18])
    neuron_state_bits: int = Field(48, gt=0)  # ASSUMPTION: two 24-bit state registers per neuron [LAVA]
    graded_spike_bits: int = Field(24, ge=1, le=32)  # [LAVA] graded-spike payload, used for partial sums
    table_entry_bits: int = Field(96, gt=0)  # ASSUMPTION: an ASNC segment = 3 x 32-bit words (b, a, c)

    @property
    def memory_bits(self) -> int:
        return self.memory_bytes * 8

    @property
    def synapse_bits(self) -> int:
        return self.weight_bits + int(self.weight_sign_bit)


class MeshSpec(_Spec):
    """A chip's network-on-chip: router tiles in a 2-D mesh, cores per router, per-hop costs."""

    width: int = Field(8, gt=0)  # [SANA] 8 x 4 router tiles (Loihi 1 layout; ASSUMPTION for Loihi 2)
    height: int = Field(4, gt=0)
    cores_per_router: int = Field(4, gt=0)  # [SANA] 4 cores per tile
    energy_east_west_pj: float = Field(3.0, ge=0)  # [D18] Table 2 via [SANA]
    latency_east_west_ns: float = Field(4.1, ge=0)  # [D18] Table 2 via [SANA]
    energy_north_south_pj: float = Field(4.2, ge=0)  # [SANA] 4.2 pJ; [D18] Table 2 prints 4.0
    latency_north_south_ns: float = Field(6.5, ge=0)  # [D18] Table 2 via [SANA]

    @property
    def cores(self) -> int:
        return self.width * self.height * self.cores_per_router


class SystemSpec(_Spec):
    """A Loihi 2 system: chips in a 2-D grid and the cost of crossing a chip-to-chip link."""

    name: str
    chips: int = Field(gt=0)
    grid: tuple[int, int]  # chips as (columns, rows); ASSUMPTION for the physical arrangement
    usable_cores_per_chip: int | None = None  # None: all mesh cores
    chip_link_energy_pj: float = Field(30.0, ge=0)  # ASSUMPTION: ~10x an on-chip hop (no public figure)
    chip_link_latency_ns: float = Field(50.0, ge=0)  # ASSUMPTION
    source: str = ""

    @model_validator(mode="after")
    def _grid(self) -> SystemSpec:
        if self.grid[0] * self.grid[1] < self.chips:
            raise ValueError(f"grid {self.grid} holds fewer than {self.chips} chips")
        return self


SYSTEMS: dict[str, SystemSpec] = {
    s.name: s
    for s in (
        SystemSpec(name="oheo-gulch", chips=1, grid=(1, 1), source="[KP] single-chip board"),
        SystemSpec(name="kapoho-point", chips=8, grid=(4, 2), source="[KP] 8 chips, 2 x 4 board"),
        # [HP24] 140,544 cores / 1,152 chips = 122 usable neuro-cores per chip
        SystemSpec(name="hala-point", chips=1152, grid=(36, 32), usable_cores_per_chip=122,
                   source="[HP24] 1,152 chips, 140,544 cores"),
    )
}


class Loihi2Spec(_Spec):
    """The whole resource model. ``Loihi2Spec()`` is the cited default; override any field."""

    core: CoreSpec = CoreSpec()
    mesh: MeshSpec = MeshSpec()  # 8 x 4 x 4 = 128 cores per chip [L2B]
    systems: dict[str, SystemSpec] = Field(default_factory=lambda: dict(SYSTEMS))

    def system(self, name: str) -> SystemSpec:
        if name not in self.systems:
            raise LasercError(f"unknown Loihi 2 system {name!r}; known: {', '.join(self.systems)}")
        return self.systems[name]

    def cores_per_chip(self, system: SystemSpec) -> int:
        n = self.mesh.cores
        return min(n, system.usable_cores_per_chip) if system.usable_cores_per_chip else n

    def weight_slices(self, weight_dtype_bits: int) -> int:
        """Synapses needed per weight: a signed b-bit weight has b-1 magnitude bits, 8 per synapse."""
        return max(1, math.ceil((weight_dtype_bits - 1) / self.core.weight_bits))

    @classmethod
    def from_json(cls, path: str | Path) -> Loihi2Spec:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LasercError(f"cannot read hardware spec {p}: {e}") from None
        return load_spec(data)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def load_spec(overrides: dict[str, Any] | str | Path | Loihi2Spec | None = None) -> Loihi2Spec:
    """The default spec with user overrides merged in (nested dicts merge; a JSON path is read)."""
    if overrides is None:
        return Loihi2Spec()
    if isinstance(overrides, Loihi2Spec):
        return overrides
    if isinstance(overrides, (str, Path)):
        return Loihi2Spec.from_json(overrides)
    base = Loihi2Spec().model_dump()
    systems = dict(base.pop("systems"))
    for name, s in (overrides.get("systems") or {}).items():
        systems[name] = {**systems.get(name, {"name": name}), **s, "name": name}
    merged = {k: ({**base[k], **overrides[k]} if isinstance(base.get(k), dict) else overrides[k])
              for k in overrides if k != "systems"}
    try:
        return Loihi2Spec(**{**base, **merged, "systems": systems})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise LasercError(f"bad hardware spec: {where}: {first['msg']}") from None
