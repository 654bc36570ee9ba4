"""The ``.lir`` printer: a node or a graph as IR text.

Separate from the parser (:mod:`lasercc.ir.text`) so that the modules below ``Graph`` -- the verifier,
whose every error prints the offending node, and ``Graph.text()`` itself -- can print without
importing the module that builds graphs: the IR's imports run one way (types < nodes < printer <
analysis < verify < graph < text), with no late import tying them back together.
A graph is read through its attributes (``name``, ``constants``, ``nodes``, ``outputs``) only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lasercc.ir.nodes import Input, Node
from lasercc.ir.types import format_num, format_shape, format_type

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEYWORDS = {"true", "false", "none", "code", "axis", "signed", "graph", "const", "input", "output"}

__all__ = ["format_node", "format_type", "print_graph"]


def _fmt_value(v: Any, const: bool) -> str:
    if v is None:
        return "none"
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_fmt_value(x, const) for x in v) + "]"
    if const:
        return f"@{v}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return format_num(v)
    if isinstance(v, str):
        return v if (IDENT.match(v) and v not in KEYWORDS) else json.dumps(v)
    raise TypeError(f"cannot print attribute value {v!r}")


def format_node(n: Node) -> str:
    if isinstance(n, Input):
        return f"input %{n.name} : {format_type(n.type)}"
    ins = ", ".join(f"%{i}" for i in n.inputs)
    attrs = n.attrs()
    a = ""
    if attrs:
        a = " {" + ", ".join(f"{k} = {_fmt_value(v, k in n.const_fields)}" for k, v in attrs.items()) + "}"
    return f"%{n.name} = {n.op}({ins}){a} : {format_type(n.type)}"


def print_graph(g: Any) -> str:
    """The text of a :class:`~lasercc.ir.graph.Graph` (``parse_graph(print_graph(g)) == g``)."""
    name = g.name if (IDENT.match(g.name) and g.name not in KEYWORDS) else json.dumps(g.name)
    lines = [f"graph {name} {{"]
    for k, (dt, shape) in g.constants.specs().items():
        lines.append(f"  const @{k} : {dt}{format_shape(shape)}")
    for n in g.nodes:
        lines.append("  " + format_node(n))
    lines.append("  output " + ", ".join(f"%{o}" for o in g.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"
