"""The textual IR (``.lir``): a lark parser and (from :mod:`lasercc.ir.printer`) the printer, with
``parse(print(g)) == g``.

Example::

    graph tiny {
      const @w0 : i8[16, 8]
      input %x : f32[4, 16]
      %x_q = bse_encode(%x) : code<8, 0.05, 128>[4, 16]
      %h = soma(%x_q) {weights = [@w0], forms = [matmul], bias = none, scale_in = 0.05,
                       scale_w = [0.01], requant = ort} : code<8, 0.1, 0>[4, 8]
      output %h
    }

Floats print with ``repr`` (shortest round-trip form), so scales survive exactly. Constant data is
not in the text: ``const`` lines declare dtype and shape and the arrays live in ``weights.npz``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from pydantic import ValidationError

from lasercc.errors import ParseError
from lasercc.ir.graph import ConstantTable, ConstSpec, Graph
from lasercc.ir.nodes import NODE_KINDS, Input, Node
from lasercc.ir.printer import format_node, print_graph
from lasercc.ir.types import CONST_DTYPES, CodeType, TensorType, format_type

__all__ = ["format_node", "format_type", "parse_graph", "print_graph"]


# -------------------------------------------------------------------------------------- parser
@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("lasercc.ir").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


class _Build(Transformer):
    def int_(self, t):
        return int(t[0])

    def float_(self, t):
        return float(t[0])

    def const(self, t):
        return _Const(str(t[0])[1:])

    def string(self, t):
        return json.loads(t[0])

    def word(self, t):
        w = str(t[0])
        return {"true": True, "false": False, "none": None}.get(w, w)

    def list_(self, t):
        return tuple(t)

    def param_list(self, t):
        return tuple(t)

    def shape(self, t):
        return tuple(int(x) for x in t)

    def axis(self, t):
        return int(t[0])

    def encoding(self, t):
        return _Encoding("signed")

    def gname(self, t):
        s = str(t[0])
        return json.loads(s) if s.startswith('"') else s

    @v_args(meta=True)
    def code_type(self, meta, t):
        bits, scale, zp = int(t[0]), t[1], t[2]
        enc = [x for x in t[3:-1] if isinstance(x, _Encoding)]
        rest = [x for x in t[3:-1] if not isinstance(x, _Encoding)]
        axis = rest[0] if rest else None
        encoding = str(enc[0]) if enc else "bse"
        shape = t[-1]
        scale = scale if isinstance(scale, tuple) else (scale,)
        zp = zp if isinstance(zp, tuple) else (zp,)
        return _at(meta, lambda: CodeType(bits=bits, scale=tuple(float(s) for s in scale),
                                          zero_point=tuple(zp), shape=shape, axis=axis, encoding=encoding))

    @v_args(meta=True)
    def tensor_type(self, meta, t):
        return _at(meta, lambda: TensorType(dtype=str(t[0]), shape=t[1]))

    def operands(self, t):
        return tuple(str(x)[1:] for x in t)

    def attr(self, t):
        return (str(t[0]), t[1])

    def attrs(self, t):
        return dict(t)

    @v_args(meta=True)
    def const_decl(self, meta, t):
        name, dt, shape = str(t[0])[1:], str(t[1]), t[2]
        if dt not in CONST_DTYPES:
            raise ParseError(f"unknown constant dtype {dt!r} (one of {', '.join(CONST_DTYPES)})",
                             meta.line, meta.column, dt)
        return ("const", name, ConstSpec(CONST_DTYPES[dt], shape))

    @v_args(meta=True)
    def input_decl(self, meta, t):
        name = str(t[0])[1:]
        return ("node", _at(meta, lambda: Input(name=name, type=t[1])))

    def output_decl(self, t):
        return ("output", tuple(str(x)[1:] for x in t))

    @v_args(meta=True)
    def node(self, meta, t):
        name, op, ins = str(t[0])[1:], str(t[1]), t[2]
        attrs = t[3] if len(t) == 5 else {}
        typ = t[-1]
        cls = NODE_KINDS.get(op)
        if cls is None or cls is Input:
            raise ParseError(f"unknown op {op!r} (known: {', '.join(k for k in NODE_KINDS if k != 'input')})",
                             meta.line, meta.column, op)
        for k, v in attrs.items():
            is_const = k in cls.const_fields
            if _has_const(v) != is_const and v is not None:
                want = "a constant reference @name" if is_const else "a plain value, not @constant"
                raise ParseError(f"attribute {k!r} of {op} must be {want}", meta.line, meta.column, k)
        attrs = {k: _strip(v) for k, v in attrs.items()}
        return ("node", _at(meta, lambda: cls(name=name, inputs=ins, type=typ, **attrs)))

    def start(self, t):
        return t


class _Const(str):
    pass


class _Encoding(str):
    """A spike encoding named in a code type (``signed``); distinct from the axis integer."""


def _has_const(v: Any) -> bool:
    if isinstance(v, tuple):
        return bool(v) and all(_has_const(x) for x in v)
    return isinstance(v, _Const)


def _strip(v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(_strip(x) for x in v)
    return str(v) if isinstance(v, _Const) else v


def _at(meta, make):
    try:
        return make()
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in e.errors())
        raise ParseError(msgs, meta.line, meta.column) from None


def parse_graph(text: str, constants: dict[str, np.ndarray] | None = None) -> Graph:
    """Parse ``.lir`` text. ``constants`` supplies array data for the declared constants; a declared
    constant without data stays a shape-only :class:`ConstSpec`. The result is not verified."""
    try:
        tree = _parser().parse(text)
    except UnexpectedCharacters as e:
        tok = text[e.pos_in_stream:e.pos_in_stream + 1] if e.pos_in_stream is not None else "?"
        raise ParseError(f"unexpected character {tok!r}", e.line, e.column, tok) from None
    except UnexpectedToken as e:
        exp = sorted({_terminal(t) for t in e.expected})[:8]
        raise ParseError(f"unexpected {_tok(e.token)}; expected {' or '.join(exp)}",
                         e.line, e.column, str(e.token)) from None
    except UnexpectedEOF as e:
        raise ParseError("unexpected end of input", getattr(e, "line", None), getattr(e, "column", None)) from None
    except UnexpectedInput as e:  # pragma: no cover - other lark errors
        raise ParseError(str(e), getattr(e, "line", None), getattr(e, "column", None)) from None
    try:
        name, *items = _Build().transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, ParseError):
            raise e.orig_exc from None
        raise ParseError(str(e.orig_exc)) from None
    consts: dict[str, np.ndarray | ConstSpec] = {}
    nodes: list[Node] = []
    outputs: tuple[str, ...] = ()
    data = constants or {}
    for kind, *rest in items:
        if kind == "const":
            cname, spec = rest
            if cname in consts:
                raise ParseError(f"constant @{cname} declared twice")
            arr = data.get(cname)
            if arr is not None:
                arr = np.asarray(arr)
                if arr.dtype != spec.dtype or tuple(arr.shape) != spec.shape:
                    raise ParseError(f"constant @{cname}: declared {spec.dtype}{list(spec.shape)}, "
                                     f"data is {arr.dtype}{list(arr.shape)}")
            consts[cname] = arr if arr is not None else spec
        elif kind == "node":
            nodes.append(rest[0])
        else:
            outputs = outputs + rest[0]
    return Graph(name=name, nodes=tuple(nodes), outputs=outputs, constants=ConstantTable(consts))


def _tok(t: Token) -> str:
    return "end of input" if t.type == "$END" else repr(str(t))


def _terminal(name: str) -> str:
    """A readable form of a lark terminal name: the literal for keywords and punctuation."""
    if name == "$END":
        return "end of input"
    try:
        pat = _parser().get_terminal(name).pattern
    except KeyError:
        return name
    return repr(pat.value) if type(pat).__name__ == "PatternStr" else name.lower().replace("__anon_", "token")
