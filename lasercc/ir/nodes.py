"""The node kinds of the spiking IR: four spiking kinds plus data movement.

Every node is a small frozen, validated record (pydantic). A node defines exactly one SSA value,
named like the node; ``inputs`` name the values it reads; ``type`` is the type of its result.
Weights and tables are never inline: fields listed in ``const_fields`` name entries of the
graph's constant table. ``check`` verifies a node against its input types and the constants and
raises ``ValueError`` with a plain message; :func:`lasercc.ir.verify.verify` adds the node's text.

Semantics (what each node computes, to the bit) are in DESIGN.md section 3 and are implemented
once in :mod:`lasercc.semantics`; this module only describes structure.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from lasercc.ir.bounds import abs_max, check_requant_scales, column_abs_sum_max
from lasercc.ir.types import CodeType, Shape, TensorType, ValueType, format_type

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/:]*$")
ACC_LIMIT_BITS = 46  # |accumulator| must stay below 2^46 (see semantics.requant)
ASNC_LIMIT_BITS = 62  # |a*x + c| must stay below 2^62 in ASNC evaluation

RequantMode = Literal["ort", "fixed"]
Form = Literal["matmul", "mul"]


class Node(BaseModel):
    """Base of every node kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: ClassVar[str] = ""
    const_fields: ClassVar[tuple[str, ...]] = ()
    n_inputs: ClassVar[int | None] = 1  # None: any number >= 1
    is_compute: ClassVar[bool] = False  # one of the four spiking kinds (costs spikes and time)

    name: str
    inputs: tuple[str, ...] = ()
    type: CodeType | TensorType

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"bad value name {v!r}: use letters, digits and _ . - / :")
        return v

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

    # helpers for subclasses
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


# --------------------------------------------------------------------------------------------
# graph inputs
# --------------------------------------------------------------------------------------------


class Input(Node):
    """A graph input: real ``f32`` values to be encoded, ``i64`` token ids, or codes given directly."""

    op: ClassVar[str] = "input"
    n_inputs: ClassVar[int | None] = 0


# --------------------------------------------------------------------------------------------
# the four spiking kinds
# --------------------------------------------------------------------------------------------


class BSEEncode(Node):
    """Real input -> code spike train: quantize (ONNX QuantizeLinear rule) and BSE-encode."""

    op: ClassVar[str] = "bse_encode"
    is_compute: ClassVar[bool] = True

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (t,) = in_types
        if not (isinstance(t, TensorType) and t.dtype == "f32"):
            raise ValueError(f"bse_encode reads a real f32 tensor, got {_type_str(t)}")
        self._expect_code()
        self._expect_shape(t.shape)


class Soma(Node):
    """Weighted spike integration (LASER Eq. 2-3) + requantize + re-encode.

    ``acc = sum_j term_j + bias`` on the raw input codes, where term_j is ``x_j @ W_j`` (form
    ``matmul``: x [..., K], W [K, N]) or ``x_j * W_j`` (form ``mul``, NumPy broadcasting). The
    input zero points are already folded into ``bias`` by the compiler. The accumulator is then
    requantized with ``scale_in * scale_w / scale_out`` (``scale_w`` per tensor or per output
    channel, i.e. the last axis) in mode ``requant``.
    """

    op: ClassVar[str] = "soma"
    const_fields: ClassVar[tuple[str, ...]] = ("weights", "bias")
    n_inputs: ClassVar[int | None] = None
    is_compute: ClassVar[bool] = True

    weights: tuple[str, ...]
    forms: tuple[Form, ...]
    bias: str | None = None
    scale_in: float
    scale_w: tuple[float, ...]
    requant: RequantMode = "ort"

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        self._check_soma(in_types, consts)

    def _check_soma(self, in_types: list[ValueType], consts: ConstantView) -> int:
        """Validate the weighted-sum part; return the bound on |acc| (0 when weights are shape-only).

        Shared with :class:`SomaASNC`, whose accumulator is exactly this one."""
        codes = self._codes_in(in_types)
        out = self._expect_code()
        if not (len(self.weights) == len(self.forms) == len(codes)):
            raise ValueError(f"soma needs one weight and one form per input ({len(codes)} inputs, "
                             f"{len(self.weights)} weights, {len(self.forms)} forms)")
        shapes = []
        bound = 0
        for x, w, form in zip(codes, self.weights, self.forms):
            _, ws = _require_int(consts, w, "weight", 2 if form == "matmul" else None)
            if form == "matmul":
                if not x.shape or x.shape[-1] != ws[0]:
                    raise ValueError(f"matmul of input {list(x.shape)} with weight @{w} {list(ws)}: "
                                     "inner dimensions differ")
                shapes.append(tuple(x.shape[:-1]) + (ws[1],))
            else:
                shapes.append(_broadcast(x.shape, ws))
            data = consts.data(w)
            if data is not None and data.size:  # exact Python ints (lasercc.ir.bounds: INT64_MIN, wrap-around)
                bound += x.hi * (column_abs_sum_max(data) if form == "matmul" else abs_max(data))
        shape = _broadcast(*shapes)
        if self.bias is not None:
            _, bs = _require_int(consts, self.bias, "bias")
            _broadcast(shape, bs)
            b = consts.data(self.bias)
            if b is not None and b.size:
                bound += abs_max(b)
        self._expect_shape(shape)
        if bound >= 1 << ACC_LIMIT_BITS:
            raise ValueError(f"accumulator can reach {bound} >= 2^{ACC_LIMIT_BITS}; split the layer or "
                             "use fewer input bits")
        _check_scales(self.scale_in, self.scale_w, out)
        return bound


class DecodeMAC(Node):
    """Activation x activation: decode both codes, exact (a-za)*(b-zb) product or matmul in int64,
    requantize with s_a*s_b/s_out, re-encode (LASER section 3.1)."""

    op: ClassVar[str] = "decode_mac"
    n_inputs: ClassVar[int | None] = 2
    is_compute: ClassVar[bool] = True

    form: Form
    requant: RequantMode = "ort"

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        a, b = self._codes_in(in_types)
        self._expect_code()
        for i, t in enumerate((a, b)):
            if not t.per_tensor:
                raise ValueError(f"decode_mac input {i} must have per-tensor quantization")
        if self.form == "matmul":
            if len(a.shape) < 2 or len(b.shape) < 2:
                raise ValueError("decode_mac matmul needs rank >= 2 inputs")
            if a.shape[-1] != b.shape[-2]:
                raise ValueError(f"matmul inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
            shape = _broadcast(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
            k = a.shape[-1]
        else:
            shape = _broadcast(a.shape, b.shape)
            k = 1
        self._expect_shape(shape)
        if (a.hi * b.hi) * max(k, 1) >= 1 << ACC_LIMIT_BITS:
            raise ValueError(f"decode_mac accumulator can exceed 2^{ACC_LIMIT_BITS} "
                             f"({a.bits}-bit x {b.bits}-bit, K={k})")


class ASNCSegment(Node):
    """A nonlinearity as a piecewise-affine integer map (see :mod:`lasercc.semantics.asnc`).

    ``thresholds`` (K-1 interior breakpoints), ``slopes`` and ``intercepts`` (K each) are
    constants; ``function`` (with numeric ``params``, e.g. the epsilon of rsqrt) names the real
    function it approximates, so passes can refit it; ``histogram`` optionally names an i64
    constant of calibration counts per input code (what adaptive fitting places breakpoints by).
    """

    op: ClassVar[str] = "asnc"
    const_fields: ClassVar[tuple[str, ...]] = ("thresholds", "slopes", "intercepts", "histogram")
    is_compute: ClassVar[bool] = True

    function: str
    thresholds: str
    slopes: str
    intercepts: str
    shift: int = 0
    params: tuple[float, ...] = ()
    histogram: str | None = None

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._expect_code()
        self._expect_shape(x.shape)
        self._check_table(consts, x.hi + 1)

    def _check_table(self, consts: ConstantView, x_bound: int) -> None:
        """Validate the segment table for inputs with |x| <= ``x_bound`` (shared with SomaASNC)."""
        if not 0 <= self.shift <= 62:
            raise ValueError(f"shift must be in [0, 62], got {self.shift}")
        _, ts = _require_int(consts, self.thresholds, "thresholds", 1)
        _, ss = _require_int(consts, self.slopes, "slopes", 1)
        _, cs = _require_int(consts, self.intercepts, "intercepts", 1)
        if not (ss[0] == cs[0] == ts[0] + 1):
            raise ValueError(f"{ts[0]} thresholds need {ts[0] + 1} slopes and intercepts, got {ss[0]} and {cs[0]}")
        t = consts.data(self.thresholds)
        if t is not None and t.size > 1 and not np.all(np.diff(t.astype(np.int64)) > 0):
            raise ValueError("thresholds must be strictly increasing")
        s, c = consts.data(self.slopes), consts.data(self.intercepts)
        if s is not None and c is not None and s.size:
            bound = abs_max(s) * x_bound + abs_max(c)
            if bound >= 1 << ASNC_LIMIT_BITS:
                raise ValueError(f"|a*x + c| can reach 2^{bound.bit_length() - 1}; must stay below 2^{ASNC_LIMIT_BITS}")


class WTAMax(Node):
    """Maximum along one axis (keepdims) by a bit-serial winner-take-all over MSB-first codes:
    at each step the candidates that show a 1 while another candidate also does stay in."""

    op: ClassVar[str] = "wta_max"
    is_compute: ClassVar[bool] = True
    axis: int

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        out = self._expect_code()
        if not x.per_tensor or not x.same_quant(out):
            raise ValueError("wta_max keeps the (per-tensor) quantization of its input")
        if not 0 <= self.axis < len(x.shape):
            raise ValueError(f"axis {self.axis} out of range for rank {len(x.shape)}")
        shape = list(x.shape)
        shape[self.axis] = 1
        self._expect_shape(tuple(shape))


# --------------------------------------------------------------------------------------------
# data movement: changes no code value, costs no spikes
# --------------------------------------------------------------------------------------------


class _Move(Node):
    def _same_quant(self, x: CodeType) -> None:
        out = self._expect_code()
        if not x.same_quant(out):
            raise ValueError("data movement must keep bits, scale and zero point")


class Reshape(_Move):
    """Reshape to the result type's shape."""

    op: ClassVar[str] = "reshape"

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if not x.per_tensor:
            raise ValueError("reshape of a per-axis code is not supported")
        if int(np.prod(x.shape)) != int(np.prod(self.type.shape)):
            raise ValueError(f"cannot reshape {list(x.shape)} to {list(self.type.shape)}")


class Transpose(_Move):
    op: ClassVar[str] = "transpose"
    perm: tuple[int, ...]

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if sorted(self.perm) != list(range(len(x.shape))):
            raise ValueError(f"perm {list(self.perm)} is not a permutation of rank {len(x.shape)}")
        self._expect_shape(tuple(x.shape[p] for p in self.perm))
        if x.axis is not None and self.type.axis != self.perm.index(x.axis):  # type: ignore[union-attr]
            raise ValueError("per-axis quantization axis must follow the permutation")


class Slice(_Move):
    """numpy-style ``x[start:stop:step]`` on the listed axes."""

    op: ClassVar[str] = "slice"
    axes: tuple[int, ...]
    starts: tuple[int, ...]
    stops: tuple[int, ...]
    steps: tuple[int, ...]

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if not (len(self.axes) == len(self.starts) == len(self.stops) == len(self.steps)):
            raise ValueError("axes, starts, stops and steps must have equal length")
        if any(s == 0 for s in self.steps):
            raise ValueError("slice step cannot be 0")
        self._expect_shape(slice_shape(x.shape, self.axes, self.starts, self.stops, self.steps))
        if x.axis is not None and x.axis in self.axes:
            raise ValueError("cannot slice along a per-axis quantization axis")


def slice_shape(shape: Shape, axes, starts, stops, steps) -> Shape:
    out = list(shape)
    for a, b, e, s in zip(axes, starts, stops, steps):
        if not 0 <= a < len(shape):
            raise ValueError(f"slice axis {a} out of range")
        out[a] = len(range(*slice(b, e, s).indices(shape[a])))
    return tuple(out)


class Concat(_Move):
    op: ClassVar[str] = "concat"
    n_inputs: ClassVar[int | None] = None
    axis: int

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        xs = self._codes_in(in_types)
        for x in xs:
            self._same_quant(x)
            if not x.per_tensor:
                raise ValueError("concat inputs must be per-tensor codes")
        r = len(xs[0].shape)
        if not 0 <= self.axis < r or any(len(x.shape) != r for x in xs):
            raise ValueError("concat inputs must share rank and the axis must be in range")
        shape = list(xs[0].shape)
        for x in xs[1:]:
            for d in range(r):
                if d != self.axis and x.shape[d] != shape[d]:
                    raise ValueError(f"concat shapes differ off axis {self.axis}: "
                                     f"{[list(x.shape) for x in xs]}")
        shape[self.axis] = sum(x.shape[self.axis] for x in xs)
        self._expect_shape(tuple(shape))


class Gather(_Move):
    """Rows of a constant code table selected by an index: out = table[index].

    The index is either i64 token ids (a graph input: the embedding lookup, done on the host) or a
    per-tensor *code* value, whose integer code itself is the row number (not its real value; the
    frontend arranges the table so that code ``c`` selects the right row, e.g. shifted by the zero
    point for negative positions). Codes index tables for positions computed inside the model --
    RoBERTa's ``cumsum(ids != pad) * (ids != pad) + pad``, OPT's ``cumsum(mask) * mask - 1 + 2``.

    Why an index input of codes rather than a one-hot lowering (an ASNC equality table per row plus a
    Soma over the whole table): the one-hot form costs a table-sized fan-out per token (positions x
    features synapses and ``seq x positions`` comparator neurons) for what is a memory read on any
    core with a lookup table; every NumPy/torch backend does it exactly with one indexing. The Lava
    backend decodes the index train in a ``gather_by_code`` process and emits the rows one step after
    the last index bit (latency T = T(index) + 1 + N, as ``ir.analysis.latency_steps`` counts it).
    Codes at or beyond the table's rows are a run-time index error on every backend, as for ids.
    """

    op: ClassVar[str] = "gather"
    const_fields: ClassVar[tuple[str, ...]] = ("table",)
    table: str

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (ids,) = in_types
        if isinstance(ids, CodeType):
            if not ids.per_tensor:
                raise ValueError(f"gather index codes must be per-tensor, got {_type_str(ids)}")
        elif not (isinstance(ids, TensorType) and ids.dtype == "i64"):
            raise ValueError(f"gather reads i64 token ids or an index code, got {_type_str(ids)}")
        out = self._expect_code()
        _, ts = _require_int(consts, self.table, "table")
        if len(ts) < 1:
            raise ValueError("gather table must have rank >= 1")
        self._expect_shape(tuple(ids.shape) + tuple(ts[1:]))
        data = consts.data(self.table)
        if data is not None and data.size and (data.min() < 0 or data.max() > out.hi):
            raise ValueError(f"table @{self.table} holds values outside the {out.bits}-bit code range")


class Take(_Move):
    """Constant indices along one axis of a code tensor (e.g. the last token or [CLS])."""

    op: ClassVar[str] = "take"
    axis: int
    indices: tuple[int, ...]

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if not 0 <= self.axis < len(x.shape):
            raise ValueError(f"axis {self.axis} out of range")
        n = x.shape[self.axis]
        if any(not -n <= i < n for i in self.indices):
            raise ValueError(f"indices {list(self.indices)} out of range for size {n}")
        shape = list(x.shape)
        shape[self.axis] = len(self.indices)
        self._expect_shape(tuple(shape))


class Mask(_Move):
    """Where the boolean constant ``mask`` is true, the code becomes ``fill`` (e.g. causal masking
    before Softmax). The mask broadcasts against the input; no spike carries it."""

    op: ClassVar[str] = "mask"
    const_fields: ClassVar[tuple[str, ...]] = ("mask",)
    mask: str
    fill: int

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        (x,) = self._codes_in(in_types)
        self._same_quant(x)
        if not consts.has(self.mask):
            raise ValueError(f"unknown constant @{self.mask} (mask)")
        dt, ms = consts.spec(self.mask)
        if dt != np.bool_:
            raise ValueError(f"mask @{self.mask} must be bool, got {dt}")
        if _broadcast(x.shape, ms) != tuple(x.shape):
            raise ValueError(f"mask shape {list(ms)} does not broadcast to {list(x.shape)}")
        self._expect_shape(x.shape)
        if not x.lo <= self.fill <= x.hi:
            raise ValueError(f"fill {self.fill} outside the {x.bits}-bit code range")


def _check_scales(scale_in: float, scale_w: tuple[float, ...], out: CodeType) -> None:
    for s in (scale_in, *scale_w):
        if not (np.isfinite(s) and s > 0):
            raise ValueError(f"scales must be finite and positive, got {s}")
    check_requant_scales(scale_in, scale_w, out.scale)  # in float32, as used (lasercc.ir.bounds)
    n = out.shape[-1] if out.shape else 1
    if len(scale_w) not in (1, n):
        raise ValueError(f"scale_w needs 1 or {n} (output channels) entries, got {len(scale_w)}")
    if not out.per_tensor and out.axis != len(out.shape) - 1:
        raise ValueError("a per-axis result scale must be on the last axis")


class SomaASNC(Node):
    """A Soma whose accumulator feeds an ASNC comparator bank directly (requant->ASNC fusion, LASER).

    ``acc`` is computed exactly as by :class:`Soma` (same ``weights``/``forms``/``bias``); the
    output code is then ``asnc_evaluate(acc, thresholds, slopes, intercepts, shift)`` -- the
    segment table lives in the *accumulator* domain (signed int64 thresholds), so the Soma's
    requantize + N_mid-bit re-encode and the ASNC's N_mid input steps disappear. ``scale_in``,
    ``scale_w`` and ``requant`` are the fused Soma's (kept so passes can refit or explain the
    table; they take no part in the arithmetic); ``histogram`` is the eliminated intermediate
    code's calibration histogram, if the ASNC had one.
    """

    op: ClassVar[str] = "soma_asnc"
    const_fields: ClassVar[tuple[str, ...]] = ("weights", "bias", "thresholds", "slopes", "intercepts",
                                                 "histogram")
    n_inputs: ClassVar[int | None] = None
    is_compute: ClassVar[bool] = True

    weights: tuple[str, ...]
    forms: tuple[Form, ...]
    bias: str | None = None
    scale_in: float
    scale_w: tuple[float, ...]
    requant: RequantMode = "ort"
    function: str
    params: tuple[float, ...] = ()
    thresholds: str
    slopes: str
    intercepts: str
    shift: int = 0
    histogram: str | None = None

    def check(self, in_types: list[ValueType], consts: ConstantView) -> None:
        bound = Soma._check_soma(self, in_types, consts)  # type: ignore[arg-type]
        ASNCSegment._check_table(self, consts, bound + 1)  # type: ignore[arg-type]


NODE_KINDS: dict[str, type[Node]] = {
    cls.op: cls
    for cls in (Input, BSEEncode, Soma, DecodeMAC, ASNCSegment, WTAMax, Reshape, Transpose, Slice, Concat,
                Gather, Take, Mask, SomaASNC)
}
