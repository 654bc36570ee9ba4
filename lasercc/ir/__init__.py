"""The spiking IR: types, node kinds, graphs, the verifier, analyses and the textual form.

Modules, bottom to top (each imports only those before it): ``types`` < ``kinds`` (the node kinds
with their traits and cost rules; ``nodes`` re-exports them) < ``printer`` <
``analysis`` (use-def, liveness, order, latency) < ``verify`` < ``graph`` < ``text`` (parser) <
``edit`` (the rewrite helper) < ``data`` (input files) < ``artifact``.
"""

from lasercc.ir.analysis import critical_path, latency_steps, live_names, users
from lasercc.ir.edit import GraphEditor
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
    "Graph", "GraphEditor", "Input", "Mask", "NODE_KINDS", "Node", "Reshape", "Slice", "Soma", "SomaASNC", "Take",
    "TensorType",
    "Transpose", "ValueType", "WTAMax", "format_node", "format_type", "parse_graph", "print_graph",
    "critical_path", "latency_steps", "live_names", "toposort", "users", "verify",
]
