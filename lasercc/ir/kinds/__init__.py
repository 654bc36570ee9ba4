"""The node kinds of the spiking IR, one module per family, each kind with its fields, ``check``,
traits and cost rules (:mod:`lasercc.ir.kinds.base` says why they live together).

Adding a kind: a module here (or a class in its family's module) defining the fields, ``check``,
``traits`` and every rule of :data:`~lasercc.ir.kinds.base.RULES`; one entry in :data:`NODE_KINDS`;
then one method per executor (see ``notes/new_node_kind.md`` for the exact touch points).
"""

from lasercc.ir.kinds.asnc import ASNCSegment
from lasercc.ir.kinds.base import (
    ACC_LIMIT_BITS,
    ASNC_LIMIT_BITS,
    NAME_RE,
    RULES,
    ConstantView,
    Footprint,
    Form,
    GpuWork,
    GraphView,
    MissingRule,
    Node,
    RequantMode,
    Traits,
    bit_counts,
    spike_counts,
    value_spikes,
)
from lasercc.ir.kinds.blocks import SegmentTable, WeightedSum
from lasercc.ir.kinds.decode_mac import DecodeMAC
from lasercc.ir.kinds.gather import Gather
from lasercc.ir.kinds.move import Concat, Mask, Move, Reshape, Slice, Take, Transpose, slice_shape
from lasercc.ir.kinds.soma import Soma, SomaASNC
from lasercc.ir.kinds.source import BSEEncode, Input
from lasercc.ir.kinds.wta import WTAMax

NODE_KINDS: dict[str, type[Node]] = {
    cls.op: cls
    for cls in (Input, BSEEncode, Soma, DecodeMAC, ASNCSegment, WTAMax, Reshape, Transpose, Slice, Concat,
                Gather, Take, Mask, SomaASNC)
}

__all__ = [
    "ACC_LIMIT_BITS", "ASNC_LIMIT_BITS", "ConstantView", "Footprint", "Form", "GpuWork", "GraphView", "MissingRule",
    "Move", "NAME_RE", "NODE_KINDS", "Node", "RULES", "RequantMode", "SegmentTable", "Traits", "WeightedSum",
    "bit_counts", "slice_shape", "spike_counts", "value_spikes",
    # the kinds (tests/ir/test_kinds.py checks that every NODE_KINDS entry is listed)
    "ASNCSegment", "BSEEncode", "Concat", "DecodeMAC", "Gather", "Input", "Mask", "Reshape", "Slice", "Soma",
    "SomaASNC", "Take", "Transpose", "WTAMax",
]
