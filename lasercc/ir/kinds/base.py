"""What every node kind is: a frozen record with a ``check``, declared traits and cost rules.

Why the rules live here, with the kind, and not at the sites that use them: statistics, the expected
events of a shape-only graph, the latency model, the GPU energy model, the Loihi partitioner and the
signed-encoding pass all need to know, per kind, "does it emit spikes", "how many neuron updates does
it cost", "what does a conventional processor compute for it". When each site held its own
``isinstance`` ladder, a new kind that one site forgot was silently free (``{}`` or 0). Now each site
asks the kind, and a kind that does not declare a rule raises :class:`MissingRule` the first time any
site needs it (``tests/ir/test_kinds.py`` walks every kind through every site).

The rules are read-only functions of the node and the graph (through :class:`GraphView`); they know
no hardware: the sites price what the kind counts (``lasercc.hw``) or place it (``lasercc.passes``).
The bit-level semantics (what the node computes) are in ``docs/contract.md`` section 3 and are
implemented once in :mod:`lasercc.semantics`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from lasercc.ir.types import CodeType, Shape, TensorType, ValueType, format_type
from lasercc.semantics.bse import popcount, signed_popcount

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/:]*$")
ACC_LIMIT_BITS = 46  # |accumulator| must stay below 2^46 (see semantics.requant)
ASNC_LIMIT_BITS = 62  # |a*x + c| must stay below 2^62 in ASNC evaluation

RequantMode = Literal["ort", "fixed"]
Form = Literal["matmul", "mul"]


class MissingRule(NotImplementedError):
    """A node kind lacks a rule some site asked for: a bug in the kind, never a user error."""

    def __init__(self, kind: type[Node], rule: str):
        super().__init__(f"node kind {kind.__name__} ({kind.op!r}) declares no {rule!r} rule; define it on the "
                         "kind (lasercc/ir/kinds/)")


class GraphView(Protocol):
    """What a kind's rules read of the graph (a :class:`~lasercc.ir.graph.Graph`)."""

    @property
    def constants(self) -> Mapping[str, Any]: ...

    def type_of(self, name: str) -> ValueType: ...


@dataclass(frozen=True)
class Traits:
    """Classifications of a kind that passes and backends branch on.

    spiking: one of the spiking kinds: placed on a neuro-core, costs spikes and time (``is_compute``).
    emits_spikes: its value's spikes are counted (graph inputs, gathers and the spiking kinds).
    data_movement: rearranges codes; changes no code value and costs no spikes.
    linked: its output carries its input's spike encoding (it forwards or selects spike trains), so
        it and its inputs must share one encoding.
    reads_signed: the NumPy and torch spiking executors read a signed (ternary) input train.
    writes_signed: it can emit a signed train (it encodes its codes with its value's encoding).
    event_driven: its neurons do work only in a step where a synaptic event arrives or they fire
        (a Soma); otherwise every neuron update reads an input bit and counts as active.
    """

    spiking: bool
    emits_spikes: bool
    data_movement: bool = False
    linked: bool = False
    reads_signed: bool = False
    writes_signed: bool = False
    event_driven: bool = False


@dataclass(frozen=True)
class GpuWork:
    """One execution of a kind on a conventional processor, in operations (priced by ``lasercc.hw``).

    ``mac_bits`` is the precision of the multiply-adds (None: the widest of the output and input
    codes); ``weights`` are constants streamed from DRAM once per execution; ``rows_from_table``: the
    output rows are read from a DRAM table (a gather) and no input is read.
    """

    macs: int = 0
    mac_bits: int | None = None
    nonlinear_elements: int = 0
    compares: int = 0
    weights: tuple[str, ...] = ()
    rows_from_table: bool = False


@dataclass(frozen=True)
class Footprint:
    """What one output neuron of a spiking kind holds on a neuro-core (placed by ``passes.partition``).

    ``synapses``: (fan-in rows, weight dtype bits) per weight term, each row one synapse per neuron;
    ``k``: fan-in columns (1 for elementwise); ``matmul``: a consumer tile reads all columns of a
    k-chunk; ``table_entries``: segment-table entries held once per core; ``fixed_bits`` and
    ``code_bits_per_neuron``: code memory per core and per neuron (besides the neuron state);
    ``axons_per_neuron``: input axons each neuron needs.
    """

    k: int = 1
    matmul: bool = False
    synapses: tuple[tuple[int, int], ...] = ()
    table_entries: int = 0
    fixed_bits: int = 0
    code_bits_per_neuron: int = 0
    axons_per_neuron: int = 1


# the rules a kind must answer (tests/ir/test_kinds.py calls each on every kind)
RULES = ("traits", "latency", "neuron_updates", "macs", "synaptic_events", "expected_synaptic_events",
         "gpu_work", "core_footprint")


class Node(BaseModel):
    """Base of every node kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: ClassVar[str] = ""
    const_fields: ClassVar[tuple[str, ...]] = ()
    n_inputs: ClassVar[int | None] = 1  # None: any number >= 1
    traits: ClassVar[Traits]  # every kind (or its family) declares them; see Traits

    name: str
    inputs: tuple[str, ...] = ()
    type: CodeType | TensorType

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"bad value name {v!r}: use letters, digits and _ . - / :")
        return v

    @classmethod
    def kind_traits(cls) -> Traits:
        """The kind's declared traits (raises MissingRule for a kind that declares none)."""
        t = getattr(cls, "traits", None)
        if not isinstance(t, Traits):
            raise MissingRule(cls, "traits")
        return t

    @property
    def is_compute(self) -> bool:
        """One of the spiking kinds (costs spikes and time): ``traits.spiking``."""
        return self.kind_traits().spiking

    @property
    def counts_spikes(self) -> bool:
        """Whether this value's spikes are counted: a code value of a kind that emits spikes."""
        return isinstance(self.type, CodeType) and self.kind_traits().emits_spikes

    def attrs(self) -> dict[str, object]:
        """Fields other than name/inputs/type, in declaration order (used by the printer)."""
        return {k: getattr(self, k) for k in type(self).model_fields if k not in ("name", "inputs", "type")}

    def const_refs(self) -> list[str]:
        out: list[str] = []
        for f in self.const_fields:
            v = getattr(self, f)
            if v is None:
                continue
            out.extend(v if isinstance(v, tuple) else [v])
        return out

    def replace(self, **changes: object) -> Node:
        """A copy with some fields changed, validated again."""
        data = {k: getattr(self, k) for k in type(self).model_fields}
        data.update(changes)
        return type(self)(**data)

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        """Raise ValueError if the node is inconsistent with its inputs or constants."""

    # ---------------------------------------------------------------------------- rules
    # Each raises MissingRule here; a kind (or its family base) defines them all.

    def latency(self, t_in: list[int], in_types: list[ValueType]) -> int:
        """T of this value (``docs/contract.md`` section 4) from its inputs' T and types."""
        raise MissingRule(type(self), "latency")

    def neuron_updates(self, graph: GraphView) -> int:
        """Neuron updates of one execution (output neurons x timesteps they integrate)."""
        raise MissingRule(type(self), "neuron_updates")

    def macs(self, graph: GraphView) -> int:
        """Dense multiply-accumulates of one execution on the neuromorphic side (DecodeMAC)."""
        raise MissingRule(type(self), "macs")

    def synaptic_events(self, graph: GraphView, in_codes: list[np.ndarray | None]) -> int:
        """Synaptic events of one execution, counted from the input codes."""
        raise MissingRule(type(self), "synaptic_events")

    def expected_synaptic_events(self, graph: GraphView, density: float) -> float:
        """Synaptic events expected when every ``b``-bit code carries ``density x b`` spikes."""
        raise MissingRule(type(self), "expected_synaptic_events")

    def gpu_work(self, graph: GraphView) -> GpuWork | None:
        """What a GPU kernel does for this node (None: no kernel -- a view, or a host input)."""
        raise MissingRule(type(self), "gpu_work")

    def core_footprint(self, graph: GraphView) -> Footprint | None:
        """What a neuron of this node holds on a neuro-core (None: not placed on a core)."""
        raise MissingRule(type(self), "core_footprint")

    # ---------------------------------------------------------------------------- helpers for kinds
    def _codes_in(self, in_types: list[ValueType]) -> list[CodeType]:
        for i, t in enumerate(in_types):
            if not isinstance(t, CodeType):
                raise ValueError(f"input {i} (%{self.inputs[i]}) must be a code, got {_type_str(t)}")
        return in_types  # type: ignore[return-value]

    def _expect_shape(self, shape: Shape) -> None:
        if tuple(shape) != tuple(self.type.shape):
            raise ValueError(f"result shape should be {list(shape)}, declared {list(self.type.shape)}")

    def _expect_code(self) -> CodeType:
        if not isinstance(self.type, CodeType):
            raise ValueError(f"result must be a code type, got {_type_str(self.type)}")
        return self.type

    def _out_elements(self) -> int:
        return int(np.prod(self.type.shape))


class ConstantView:
    """What ``Node.check`` may see of the constant table: dtype, shape and (if loaded) data."""

    def __init__(self, table: object):
        self._table = table

    def has(self, name: str) -> bool:
        return name in self._table  # type: ignore[operator]

    def spec(self, name: str) -> tuple[np.dtype, Shape]:
        c = self._table[name]  # type: ignore[index]
        return np.dtype(c.dtype), tuple(c.shape)

    def data(self, name: str) -> np.ndarray | None:
        c = self._table[name]  # type: ignore[index]
        return c if isinstance(c, np.ndarray) else None


# ---------------------------------------------------------------------------- shared helpers


def _type_str(t: ValueType) -> str:
    return format_type(t)


def _broadcast(*shapes: Shape) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError as e:
        raise ValueError(f"shapes {[list(s) for s in shapes]} do not broadcast") from e


def _require_int(consts: ConstantView, name: str, what: str, ndim: int | None = None) -> tuple[np.dtype, Shape]:
    if not consts.has(name):
        raise ValueError(f"unknown constant @{name} ({what})")
    dt, shape = consts.spec(name)
    if dt.kind not in "iu":
        raise ValueError(f"constant @{name} ({what}) must be integer, got {dt}")
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"constant @{name} ({what}) must have rank {ndim}, got shape {list(shape)}")
    return dt, shape


def code_bits(graph: GraphView, name: str) -> int:
    """Bits of a code value (0 for a real or integer tensor)."""
    t = graph.type_of(name)
    return t.bits if isinstance(t, CodeType) else 0


def elements(graph: GraphView, name: str) -> int:
    return int(np.prod(graph.type_of(name).shape, dtype=np.int64))


# ---------------------------------------------------------------------------- spike counting
# (docs/contract.md section 4: one spike per set bit; signed: per nonzero ternary digit of code - zp)


def bit_counts(codes: np.ndarray) -> np.ndarray:
    """Per-element popcount (spikes each neuron emits), int64."""
    c = np.asarray(codes).astype(np.uint64, copy=False)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(c).astype(np.int64)
    out = np.zeros(c.shape, dtype=np.int64)
    x = c.copy()
    while x.any():
        out += (x & np.uint64(1)).astype(np.int64)
        x >>= np.uint64(1)
    return out


def spike_counts(codes: np.ndarray, t: CodeType) -> np.ndarray:
    """Per-element spikes of codes of type ``t``: popcount(code), or popcount(|code - zp|) if signed."""
    if t.signed:
        return bit_counts(np.abs(np.asarray(codes, dtype=np.int64) - np.int64(t.zero_point[0])))
    return bit_counts(codes)


def value_spikes(codes: np.ndarray, t: CodeType) -> int:
    """Total spikes of a value of type ``t`` (the rule of :func:`spike_counts`), as a Python int."""
    return signed_popcount(codes, t.zero_point[0]) if t.signed else popcount(codes)


# ---------------------------------------------------------------------------- rule families


class NoNeuronCost:
    """Rules of a kind that integrates nothing: no neuron updates, MACs or synaptic events."""

    def neuron_updates(self, graph: GraphView) -> int:
        return 0

    def macs(self, graph: GraphView) -> int:
        return 0

    def synaptic_events(self, graph: GraphView, in_codes: list[np.ndarray | None]) -> int:
        return 0

    def expected_synaptic_events(self, graph: GraphView, density: float) -> float:
        return 0.0


class NoSynapses:
    """Rules of a spiking kind without weights: no synaptic events."""

    def synaptic_events(self, graph: GraphView, in_codes: list[np.ndarray | None]) -> int:
        return 0

    def expected_synaptic_events(self, graph: GraphView, density: float) -> float:
        return 0.0


def spiking_latency(t_in: list[int], bits: int) -> int:
    """A spiking node integrates until its last input bit, fires one step later, emits N_out bits."""
    return max(t_in) + 1 + bits
