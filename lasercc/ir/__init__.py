"""The spiking IR: types, node kinds, graphs, the verifier and the textual form."""

from lasercc.ir.graph import ConstantTable, ConstSpec, Graph, toposort, verify
from lasercc.ir.nodes import (
    NODE_KINDS,
    ASNCSegment,
    BSEEncode,
    Concat,
    DecodeMAC,
    Gather,
    Input,
    Mask,
    Node,
    Reshape,
    Slice,
    Soma,
    SomaASNC,
    Take,
    Transpose,
    WTAMax,
)
from lasercc.ir.text import format_node, format_type, parse_graph, print_graph
from lasercc.ir.types import CodeType, TensorType, ValueType

__all__ = [
    "ASNCSegment", "BSEEncode", "CodeType", "Concat", "ConstSpec", "ConstantTable", "DecodeMAC", "Gather",
    "Graph", "Input", "Mask", "NODE_KINDS", "Node", "Reshape", "Slice", "Soma", "SomaASNC", "Take", "TensorType",
    "Transpose", "ValueType", "WTAMax", "format_node", "format_type", "parse_graph", "print_graph",
    "toposort", "verify",
]
