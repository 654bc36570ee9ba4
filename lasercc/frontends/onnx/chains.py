"""Unary elementwise chains: any elementwise subgraph of one activation becomes one exact ASNC table.

Issue 11's generic rule. A chain of elementwise ops applied to one activation x -- GELU written as
Erf/Mul/Add, tanh-GELU, x*sigmoid(x), Clip, Pow by a scalar, Log, Softplus, ``Where(IsNaN(x), 0, x)``
guards, Cast round trips, a Sqrt/Div(1, .) of a variance -- is a function of x alone, element by element.
So it is *evaluated*, not matched: ``onnx.reference`` runs the subgraph on the real value of every input
code (2^N codes, N <= 16) and the result is one exact lookup table (``ASNCSegment``, LUT form), which the
``asnc-fit`` pass can then fit. No list of recognised patterns decides whether a model is accepted;
recognising a known function (gelu, silu, sigmoid, rsqrt, ...) only *names* the table, so that
``asnc-fit`` refits it from the registered real function. An unrecognised table is named ``onnx_chain``:
its own constants (the exact codes) are its definition, and ``asnc-fit`` fits those.

Regions (found in :func:`find_chains`, during ``Lowerer.prepare``, before calibration):

* members are elementwise ops (:data:`ELEMENTWISE`) whose non-constant inputs all derive, through
  members, from the same one tensor x (the *root*); internal fan-out is fine (``x * sigmoid(x)``);
* constants must be scalars (size 1). Why: a per-channel constant makes a different function per
  channel -- one table cannot hold it; such a node ends the region and is lowered as an operation
  (a Soma for affine constants). A constant whose value is only known after folding is checked when
  the region is emitted; if it is not a scalar the region is lowered node by node (same result as
  without chains);
* each *exit* (a member output read outside the region or a graph output) gets its own table over x,
  computed from its backward cone (nodes shared by two cones are evaluated in both -- no extra nodes);
* a cone becomes a table only if it holds a nonlinear op: purely affine cones (Add/Sub/Mul/Div by
  scalars, Neg, Identity, float Casts) stay Somas, which are exact and cheaper than a 2^N-entry table;
* an exit read only as the divisor of Div gets the table of 1 / f(x) instead (one table, then a
  DecodeMAC product), so ``a / sqrt(v + eps)`` is one rsqrt-like table on v.

When the root turns out not to be a float activation (integer ids, bool masks, exact integer data --
value class (b), lowered exactly by their own handlers), when it has more than 16 bits, or when the
evaluator cannot run the subgraph, the cone's nodes are lowered one by one by their handlers.

Values the float subgraph gives on codes: +-inf saturate to the end codes (IEEE sign kept); NaN has no
code and becomes the output zero point (real 0) -- a note in the compile log says so when a NaN falls
inside the calibrated input range. A table equal to the identity (guards like
``Where(IsNaN(x), 0, x)`` that cannot fire on finite codes) folds away, and one that is the same value
on every code (``IsNaN(x)`` itself) becomes a constant, each with a note (``Lowerer.notes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from lasercc.frontends.onnx.common import resolution_limit
from lasercc.frontends.onnx.evaluators import REFERENCE_ERRORS
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import prepare_hook
from lasercc.frontends.onnx.values import Act, Const, QWeight, code_type, range_type

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lower import Lowerer

MAX_TABLE_BITS = 16

# elementwise ops of the standard domain that are pure functions of their inputs' values, element by element
UNARY_OPS = frozenset("""
Abs Acos Acosh Asin Asinh Atan Atanh Ceil Celu Cos Cosh Elu Erf Exp Floor Gelu HardSigmoid HardSwish IsInf IsNaN
LeakyRelu Log Mish Neg Not Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Tan Tanh
ThresholdedRelu Identity Cast CastLike Clip Dropout
""".split())
NARY_OPS = frozenset("""
Add Sub Mul Div Pow Max Min Sum Mean Where Less LessOrEqual Greater GreaterOrEqual Equal And Or Xor PRelu Mod
""".split())
ELEMENTWISE = UNARY_OPS | NARY_OPS
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}


@dataclass
class Cone:
    root: str
    exit: str
    nodes: list[onnx.NodeProto]
    consts: list[str] = field(default_factory=list)
    recip: bool = False  # the exit is only ever a Div divisor: emit 1 / f(x)
    const_values: dict[str, float] = field(default_factory=dict)  # filled when the cone is evaluated


def const_array(L: Lowerer, name: str) -> np.ndarray | None:
    """A constant's value if it is known before lowering (initializer or Constant node), else None."""
    v = L.env.get(name)
    if isinstance(v, Const):
        return np.asarray(v.value)
    if isinstance(v, QWeight):
        return v.real()
    op, src = L.sources.get(name, ("", None))
    if op == "Constant" and src is not None:
        for a in src.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name in ("value_float", "value_int"):
                return np.asarray(onnx.helper.get_attribute_value(a))
            if a.name in ("value_floats", "value_ints"):
                return np.asarray(onnx.helper.get_attribute_value(a))
    return None


def static_value(L: Lowerer, name: str, depth: int = 0) -> np.ndarray | None:
    """A constant's value before lowering: :func:`const_array`, or its producer evaluated by ``onnx.reference``
    when every input of that node has a static value itself (``Cast(Constant)``, a function body's epsilon);
    None for anything that depends on a graph input (Shape of an activation included). Cached per Lowerer."""
    cache = L.__dict__.setdefault("_static_values", {})
    if name in cache:
        return cache[name]
    v = const_array(L, name)
    op, n = L.sources.get(name, ("", None))
    if v is None and n is not None and depth < 32 and op not in ("Shape", "Size") and n.domain in ("", "ai.onnx"):
        ins = [static_value(L, i, depth + 1) if i else None for i in n.input]
        if all(a is not None for a, i in zip(ins, n.input) if i):
            from lasercc.frontends.onnx.evaluators import reference_evaluator

            try:
                with np.errstate(all="ignore"):
                    outs = reference_evaluator(n, opsets={"": L.opset.get("", 17)}).run(
                        None, {i: a for i, a in zip(n.input, ins) if i})
                v = np.asarray(outs[list(n.output).index(name)])
            except REFERENCE_ERRORS:
                v = None
    cache[name] = v
    return v


def _plain(L: Lowerer, n: onnx.NodeProto, consts: set[str]) -> bool:
    """Does the node's own handler lower it without a table, exactly (affine: a Soma; a square: a DecodeMAC)?

    A cone of only such nodes stays node by node: a Soma or a product is exact and costs no 2^N table.
    """
    live = [i for i in n.input if i and i not in consts]
    t = n.op_type
    if t in ("Add", "Sub", "Neg", "Identity", "Dropout", "Sum", "Mean"):
        return True
    if t == "Mul":
        return True  # by a constant: a Soma; of two values derived from x: a DecodeMAC product
    if t == "Div":
        return len(live) == 1 and n.input[0] == live[0]
    if t == "Pow" and len(n.input) > 1 and n.input[1] in consts:
        p = const_array(L, n.input[1])
        return p is not None and p.size == 1 and float(p.reshape(-1)[0]) in (1.0, 2.0)
    if t == "Cast":
        to = next((a.i for a in n.attribute if a.name == "to"), 0)
        return to in _FLOAT_TYPES
    return False


def _member(L: Lowerer, n: onnx.NodeProto, consts: set[str]) -> bool:
    if n.domain not in ("", "ai.onnx") or n.op_type not in ELEMENTWISE:
        return False
    if id(n) in L.skip or id(n) in L.fused:
        return False  # claimed by a prepare-time fusion that ran first
    if n.op_type == "Dropout" and (len([i for i in n.input if i]) > 1 or len([o for o in n.output if o]) > 1):
        return False  # ratio / training_mode inputs or the mask output: the Dropout handler
    for i in n.input:
        if i and i in consts:
            c = const_array(L, i)
            if c is not None and c.size != 1:
                return False  # a per-element constant: one table per element is no table
    return True


@prepare_hook(stage=1)
def find_chains(L: Lowerer) -> None:
    """Find the regions (see the module docstring) and register their emitters on the Lowerer.

    A ``Lowerer.prepare`` hook (``registry.prepare_hook``) of the last stage, after every other prepare-time
    fusion: nodes one already claimed (``L.skip``, ``L.fused``) are not chain members.
    """
    consts = L.__dict__.setdefault("_static_consts", L._static_const_tensors())
    outputs = {o.name for o in L.model.graph.output}
    root_of: dict[str, str] = {}
    members: dict[str, list[onnx.NodeProto]] = {}
    for n in L.model.graph.node:
        if not _member(L, n, consts):
            continue
        live = [i for i in n.input if i and i not in consts]
        if not live:
            continue  # folded as a constant
        roots = {root_of.get(i, i) for i in live}
        if len(roots) != 1:
            continue  # two different activations meet: an operation on two values, not a table
        r = roots.pop()
        for o in n.output:
            if o:
                root_of[o] = r
        members.setdefault(r, []).append(n)
    for r, ns in members.items():
        ids = {id(n) for n in ns}
        made = {o: n for n in ns for o in n.output if o}
        cones: list[Cone] = []
        for t in made:
            cons = L.consumers.get(t, [])
            outside = [c for c in cons if id(c) not in ids]
            if t not in outputs and not outside:
                continue
            cone = _cone(L, t, made, consts)
            cone.root = r
            cone.recip = t not in outputs and all(c.op_type == "Div" and c.input[1] == t and c.input[0] != t
                                                  for c in outside)
            cones.append(cone)
        fused = [c for c in cones if not all(_plain(L, n, consts) for n in c.nodes)]
        L.__dict__.setdefault("chain_cones", []).extend(fused)  # precision.py plans the roots' widths from them
        plain = {id(n) for c in cones if c not in fused for n in c.nodes}
        finals = {id(made[c.exit]) for c in fused}  # a node another cone reads is still emitted (its own cone)
        for c in fused:
            final = made[c.exit]
            for n in c.nodes:
                if n is not final and id(n) not in plain and id(n) not in finals:
                    L.skip.add(id(n))
            L.skip.discard(id(final))
            L.fused[id(final)] = _emitter(L, c, final)
            L.fused_samples[id(final)] = (c.root,)


def _cone(L: Lowerer, exit_: str, made: dict[str, onnx.NodeProto], consts: set[str]) -> Cone:
    want: set[int] = set()
    todo = [exit_]
    while todo:
        t = todo.pop()
        n = made.get(t)
        if n is None or id(n) in want:
            continue
        want.add(id(n))
        todo.extend(i for i in n.input if i and i not in consts)
    nodes = [n for n in L.model.graph.node if id(n) in want]
    cs = sorted({i for n in nodes for i in n.input if i and i in consts})
    return Cone("", exit_, nodes, cs)


# ---- emitting a cone ----------------------------------------------------------------------------------


def _emitter(L: Lowerer, c: Cone, final: onnx.NodeProto):  # noqa: ANN202
    def emit() -> list:
        x = L.env.get(c.root)
        got = None
        if isinstance(x, Act) and not x.integer and not x.boolean and x.type.bits <= MAX_TABLE_BITS:
            got = _table(L, c, x, final)
        if got is None:
            return _node_by_node(L, c, final)
        return [got if o == c.exit else None for o in final.output]

    return emit


def _node_by_node(L: Lowerer, c: Cone, final: onnx.NodeProto) -> list:
    """The fallback: lower each node of the cone by its own handler (skipping what is lowered already)."""
    for n in c.nodes:
        if n is final or all(not o or o in L.env for o in n.output):
            continue
        keep = L.fused.pop(id(n), None)
        try:
            L._lower(n)
        finally:
            if keep is not None:
                L.fused[id(n)] = keep
    keep = L.fused.pop(id(final))
    try:
        L._lower(final)
    finally:
        L.fused[id(final)] = keep
    return [L.env.get(o) if o else None for o in final.output]


def evaluate(L: Lowerer, c: Cone, xs: np.ndarray, consts: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
    """The cone's exit on the real inputs ``xs`` (1-D), by ``onnx.reference``; None if it cannot run.

    ``consts``: the cone's constants when they are not lowered yet (precision planning runs before)."""
    from lasercc.frontends.onnx.evaluators import reference_evaluator
    from lasercc.frontends.onnx.load import tensor_dtypes

    types = L.__dict__.get("_chain_types")
    if types is None:
        types = L.__dict__.setdefault("_chain_types", tensor_dtypes(L.model))
    dt = types.get(c.root, np.dtype(np.float32))
    if dt.kind != "f":
        return None
    inits = []
    for k in c.consts:
        v = Const(consts[k]) if consts is not None and k in consts else L.env.get(k)
        if not isinstance(v, Const | QWeight):
            return None
        a = np.asarray(v.value if isinstance(v, Const) else v.real())
        if a.size != 1:
            return None
        inits.append(numpy_helper.from_array(a, k))
        if a.dtype.kind in "fiub":
            c.const_values[k] = float(a.reshape(-1)[0])
    out_t = onnx.helper.make_tensor_value_info(c.exit, onnx.TensorProto.UNDEFINED, None)
    g = onnx.helper.make_graph(
        list(c.nodes), "chain",
        [onnx.helper.make_tensor_value_info(c.root, onnx.helper.np_dtype_to_tensor_dtype(dt), [xs.size])],
        [out_t], inits)
    m = onnx.helper.make_model(g, opset_imports=[o for o in L.model.opset_import if o.domain in ("", "ai.onnx")])
    m.ir_version = L.model.ir_version or m.ir_version
    try:
        with np.errstate(all="ignore"):
            (y,) = reference_evaluator(m).run(None, {c.root: xs.astype(dt)})
    except REFERENCE_ERRORS:  # the evaluator cannot run it: lower the nodes as operations instead
        return None
    y = np.asarray(y)
    if y.size != xs.size:
        return None
    return y.reshape(-1)


def _observed(L: Lowerer, root: str, x: Act, codes: np.ndarray) -> np.ndarray:
    """The input codes calibration saw (from its kept samples; else every code in its [min, max] range).

    Why samples first: a divisor calibrated in [-3, -1] and [1, 3] spans 0 in its range; planning 1/b over
    the range would spend the code range on values that never occur.
    """
    from lasercc.semantics.quant import quantize

    s = L.stats.values(root)
    if s is not None and np.size(s):
        seen = np.zeros(codes.shape, bool)
        seen[quantize(np.asarray(s, np.float32).reshape(-1), x.scale, x.zp, x.type.bits)] = True
        return seen
    r = L.stats.range(root)
    if r is None:
        return np.ones(codes.shape, bool)
    lo, hi = quantize(np.array([r[0], r[1]], np.float32), x.scale, x.zp, x.type.bits)
    return (codes >= lo) & (codes <= hi)


def _table(L: Lowerer, c: Cone, x: Act, final: onnx.NodeProto):  # noqa: ANN202
    from lasercc.semantics.quant import dequantize

    codes = np.arange(1 << x.type.bits, dtype=np.int64)
    xs = np.asarray(dequantize(codes, x.scale, x.zp), np.float32)
    y = evaluate(L, c, xs)
    if y is None:
        return None
    shapes = [np.shape(const_array(L, k)) for k in c.consts]
    shape = tuple(np.broadcast_shapes(x.shape, *shapes))
    notes = L.__dict__.setdefault("notes", [])
    where = f"elementwise chain {' -> '.join(n.op_type for n in c.nodes)} on {c.root!r} (output {c.exit!r})"
    samples = L.stats.values(c.root)
    if not c.recip and y.size and np.all(y == y[0]) and (y.dtype.kind != "f" or np.isfinite(y[0])):
        # the same value on every code (an IsNaN/IsInf guard of finite codes, x * 0): a constant
        notes.append(f"{where}: the constant {y[0]!r} on every finite code; folded to a constant")
        return Const(np.full(shape, y[0], y.dtype))
    if y.dtype.kind == "b" or y.dtype.kind in "iu":
        if c.recip:
            return None
        return _exact_table(L, c, x, y, shape, samples)
    if y.dtype.kind != "f":
        return None
    y = y.astype(np.float64)
    seen = _observed(L, c.root, x, codes)
    if c.recip:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = 1.0 / y
        sb = None
        if samples is not None and np.size(samples) <= 1 << 22:  # the divisor's samples, paired with a's
            ev = evaluate(L, c, np.asarray(samples, np.float32).reshape(-1))
            sb = None if ev is None else np.asarray(ev, np.float64).reshape(np.shape(samples))
        bound = recip_bound(L, c.exit, sb)  # plans the type only: the table saturates beyond it
    if np.isnan(y[seen]).any():
        notes.append(f"{where}: NaN on part of the calibrated input range; those codes give 0")
    if not c.recip and np.array_equal(y, xs.astype(np.float64)):
        notes.append(f"{where}: the identity on every finite code (guards that cannot fire); folded away")
        return _shaped(L, c.exit, x, shape)
    # the node that ends up holding the ONNX name: the broadcast (Reshape) when the shape grows
    stem = c.exit + (".recip" if c.recip else "" if shape == x.shape else ".t")
    if c.recip:
        out = _planned_type(L, y if bound is None else np.clip(y, -bound, bound), seen, where, x.shape)
    else:
        out = L.out_type(c.exit, x.shape)
        _check_resolution(L, c, x, y, out, samples, where)
    r = values_table(L, stem, x, y, out, samples, c)
    if c.recip:
        recips = L.__dict__.setdefault("chain_recips", {})
        recips[c.exit] = _shaped(L, stem, r, shape)
        # every reader of the exit is a Div that takes the reciprocal from chain_recips (find_chains checked)
        return recips[c.exit]
    return _shaped(L, c.exit, r, shape)


def recip_bound(L: Lowerer, divisor: str, b_samples: np.ndarray | None = None) -> float | None:
    """The largest |1/b| worth representing for a divisor ``b`` that only Divs read, None when unknown.

    Per Div ``q = a / b`` (the DecodeMAC ``a * (1/b)`` requantized into q's type): where the numerator's code is
    its zero the product is 0 whatever 1/b is, so only elements with a nonzero numerator code need 1/b. From
    the calibration samples of a and b (paired, broadcast): 1.25 x the largest such |1/b|. Always at most
    ``1.25 * max|q| / step(a)``: beyond that any nonzero numerator (``|a| >= step(a)``) puts the product past
    the edge of q's type, where the unclipped product saturates to the same code -- exact.
    Why: a row that is exactly constant (DeiT's zero-initialised CLS token) has variance 0, so LayerNorm written
    out as ``(x - mean) / sqrt(var + eps)`` divides its zeros by sqrt(1e-12); planning 1/b up to 1e6 would leave
    every other row's reciprocal a few codes.
    """
    bound = 0.0
    for d in L.consumers.get(divisor, []):
        a = L.env.get(d.input[0])
        if d.op_type != "Div" or d.input[1] != divisor or not isinstance(a, Act) or L.stats.range(d.output[0]) is None:
            return None
        lo, hi = _real_range(L.out_type(d.output[0], ()))  # the Div result's type (a QDQ model's, or calibrated)
        q = max(abs(lo), abs(hi))
        if not q > 0 or not a.scale > 0:
            return None
        b_d = 1.25 * q / a.scale
        sa = L.stats.values(d.input[0])
        sb = b_samples if b_samples is not None else L.stats.values(divisor)
        if sa is not None and sb is not None:
            try:
                fa, fb = np.broadcast_arrays(np.asarray(sa, np.float64), np.asarray(sb, np.float64))
            except ValueError:  # rows kept differently: keep the exact bound
                fa = fb = None
            if fa is not None:
                live = (np.abs(fa) >= a.scale / 2) & np.isfinite(fb) & (fb != 0)
                if live.any():
                    b_d = min(b_d, 1.25 * float(np.max(1.0 / np.abs(fb[live]))))
        bound = max(bound, b_d)
    return bound or None


# A table is refused (never a silent wrong answer) when rounding its input to the code grid alone moves its value,
# on the calibration samples, by more than common.resolution_limit of its output range (64 steps at 16 bits, 8 at
# 8): log(sum(exp(x))) written out by hand with a Log over a ReduceSum that is not a sum of exps flushes small
# values to code 0 and the log then amplifies the flush.


def _check_resolution(L: Lowerer, c: Cone, x: Act, y: np.ndarray, out, samples, where: str) -> None:  # noqa: ANN001
    """Refuse the table when the input's code grid cannot resolve the function on the calibrated inputs."""
    from lasercc.semantics.quant import quantize

    if samples is None:
        return
    s = np.asarray(samples, np.float32).reshape(-1)
    s = s[np.isfinite(s)][:: max(1, s.size // 4096)]
    if s.size == 0:
        return
    exact = evaluate(L, c, s)
    if exact is None:
        return
    exact = np.asarray(exact, np.float64).reshape(-1)
    lo, hi = _real_range(out)
    got = np.nan_to_num(y[quantize(s, x.scale, x.zp, x.type.bits)], nan=0.0, posinf=hi, neginf=lo)
    ok = np.isfinite(exact)
    if not ok.any():
        return
    err_in = float(np.max(np.abs(np.clip(exact[ok], lo, hi) - np.clip(got[ok], lo, hi))))
    step = float(out.scale[0])
    limit = resolution_limit(hi - lo, out.bits)
    if err_in > limit:
        raise FrontendError(f"{where}: the input's {x.type.bits}-bit code grid (step {x.scale:.3g}) cannot resolve "
                            f"the function on the calibrated inputs: rounding the input alone moves the result by "
                            f"{err_in:.3g}, {err_in / step:.0f} output steps (limit {limit / step:.0f}). Use more "
                            "bits, narrow the input's range, or use the fused op (e.g. ReduceLogSumExp)")


def _real_range(t) -> tuple[float, float]:  # noqa: ANN001
    s, z = float(t.scale[0]), float(t.zero_point[0])
    return s * (t.lo - z), s * (t.hi - z)


def _planned_type(L: Lowerer, y: np.ndarray, seen: np.ndarray, where: str, shape: tuple[int, ...]):  # noqa: ANN202
    """The code type of an internal table (no ONNX tensor to calibrate): its values on the calibrated input
    codes, widened by 1/8 of their span (values beyond saturate), at ``internal_bits``."""
    fin = y[seen & np.isfinite(y)]
    if fin.size == 0:
        raise FrontendError(f"{where}: no finite value on the calibrated inputs (a divisor that is always 0?)")
    lo, hi = float(fin.min()), float(fin.max())
    pad = 0.125 * (hi - lo)
    return range_type(lo - pad if lo < 0 else lo, hi + pad if hi > 0 else hi, L.opts.internal_bits, shape)


def values_table(L: Lowerer, stem: str, x: Act, y: np.ndarray, out, samples, c: Cone | None = None,  # noqa: ANN001
                 extra: list[tuple[str, tuple[float, ...]]] | None = None) -> Act:
    """An exact lookup table on ``x``'s codes whose real values are ``y`` (one per code, float64).

    Named after a registered function when ``y`` is one (see :func:`recognise`; the table then comes from
    that function, so ``asnc-fit`` refits it from the graph alone), else ``onnx_chain``: the table's own
    codes define it.
    """
    from lasercc.semantics.quant import dequantize

    xs = np.asarray(dequantize(np.arange(1 << x.type.bits), x.scale, x.zp), np.float32)
    name, params = recognise(c, xs, y, float(out.scale[0]), extra or [])
    if name is not None:
        return L.b.asnc_lut(stem, x, name, params, out, samples)
    table = np.nan_to_num(y, nan=0.0)

    def onnx_chain(u: np.ndarray) -> np.ndarray:
        from lasercc.semantics.quant import quantize

        return table[quantize(np.asarray(u, np.float32), x.scale, x.zp, x.type.bits)]

    return L.b.asnc_lut(stem, x, onnx_chain, (), out, samples)  # type: ignore[arg-type]


def planned_table(L: Lowerer, tensor: str, x: Act, f, stem: str, what: str) -> Act:  # noqa: ANN001
    """``f`` (float64 -> float64, IEEE: +-inf saturate, NaN gives 0) as one table on ``x``'s codes, for an
    internal value with no ONNX tensor of its own: its code type is planned from ``x``'s calibrated range
    (:func:`_planned_type`)."""
    from lasercc.semantics.quant import dequantize

    if x.type.bits > MAX_TABLE_BITS:
        raise FrontendError(f"{what}: {tensor!r} has {x.type.bits}-bit codes; a table takes at most "
                            f"{MAX_TABLE_BITS}")
    codes = np.arange(1 << x.type.bits, dtype=np.int64)
    xs = np.asarray(dequantize(codes, x.scale, x.zp), np.float64)
    with np.errstate(all="ignore"):
        y = np.asarray(f(xs), np.float64)
    out = _planned_type(L, y, _observed(L, tensor, x, codes), f"{what} of {tensor!r}", x.shape)
    return values_table(L, stem, x, y, out, L.stats.values(tensor))


def reciprocal_table(L: Lowerer, tensor: str, b: Act, stem: str) -> Act:
    """1/b (IEEE: negative divisors give negative values, 0 gives the end code) as one table on b's codes."""
    return planned_table(L, tensor, b, lambda v: 1.0 / v, stem, "reciprocal")


def _shaped(L: Lowerer, stem: str, a: Act, shape: tuple[int, ...]) -> Act:
    if tuple(shape) == tuple(a.shape):
        return a
    from lasercc.frontends.onnx.common import broadcast_to

    return broadcast_to(L, stem, a, shape)


def _exact_table(L: Lowerer, c: Cone, x: Act, y: np.ndarray, shape, samples) -> Act | None:  # noqa: ANN001
    """A bool or integer result (``x > 0``, ``Cast(x, int)``): exact scale-1 codes (value class (b))."""
    from lasercc.frontends.onnx.common import int_type

    v = y.astype(np.int64)
    lo, hi = int(v.min()), int(v.max())
    boolean = y.dtype.kind == "b"
    try:
        out = code_type(2, 1.0, 0, x.shape) if boolean else int_type(lo, hi, x.shape)
    except FrontendError:
        return None
    zp = int(out.zero_point[0])
    table = (v + zp).astype(np.float64)

    def onnx_chain(u: np.ndarray) -> np.ndarray:
        from lasercc.semantics.quant import quantize

        return table[quantize(np.asarray(u, np.float32), x.scale, x.zp, x.type.bits)] - zp

    r = L.b.asnc_lut(c.exit if shape == x.shape else c.exit + ".t", x, onnx_chain, (), out, samples)  # type: ignore[arg-type]
    a = Act(r.name, r.type, boolean=boolean, int_range=(0, 1) if boolean else (lo, hi))
    return _shaped(L, c.exit, a, shape)


# ---- naming: which registered function is this table? ------------------------------------------------

_CANDIDATES: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("gelu", ()), ("gelu_tanh", ()), ("silu", ()), ("sigmoid", ()), ("tanh", ()), ("exp", ()), ("erf", ()),
    ("sqrt", ()), ("relu", ()), ("softplus", ()), ("abs", ()), ("sin", ()), ("cos", ()), ("quick_gelu", (1.702,)),
    ("reciprocal", (0.0,)), ("rsqrt", (0.0,)),
)


def _own_candidates(c: Cone) -> list[tuple[str, tuple[float, ...]]]:
    """What a one-node cone's op names itself (with its attributes and scalar constants), tried first."""
    if len(c.nodes) != 1:
        return []
    from lasercc.frontends.onnx.registry import attr

    n = c.nodes[0]
    t = n.op_type
    k = c.const_values
    if t == "Pow" and len(n.input) > 1 and n.input[1] in k:
        return [("pow", (k[n.input[1]],))]
    if t == "Clip":
        lo = k.get(n.input[1], -np.inf) if len(n.input) > 1 and n.input[1] else float(attr(n, "min", -np.inf))
        hi = k.get(n.input[2], np.inf) if len(n.input) > 2 and n.input[2] else float(attr(n, "max", np.inf))
        return [("clip", (float(lo), float(hi)))]
    if t == "Gelu":
        return [("gelu_tanh" if attr(n, "approximate", "none") in ("tanh", b"tanh") else "gelu", ())]
    if t == "LeakyRelu":
        return [("leaky_relu", (float(attr(n, "alpha", 0.01)),))]
    if t == "HardSigmoid":
        return [("hard_sigmoid", (float(attr(n, "alpha", 0.2)), float(attr(n, "beta", 0.5))))]
    return []


def recognise(c: Cone | None, xs: np.ndarray, y: np.ndarray, out_scale: float,
              extra: list[tuple[str, tuple[float, ...]]] | None = None) -> tuple[str | None, tuple[float, ...]]:
    """The registered function (and parameters) that ``y`` is on every code, to 1 % of an output code step.

    Why this tolerance: two functions that differ by less than that give the same codes (a code may move
    by one where a value sits on a rounding boundary), so the name is a fact about the table, not a guess.
    """
    from lasercc.asnc.functions import FUNCTIONS

    u = xs.astype(np.float64)
    fin = np.isfinite(y)
    cands = list(extra or []) + (list(_own_candidates(c)) if c is not None else []) + list(_CANDIDATES)
    if c is None or c.recip or any(n.op_type in ("Sqrt", "Reciprocal", "Div") for n in c.nodes):
        k = int(np.argmin(np.abs(u)))
        if np.isfinite(y[k]) and y[k] > 0 and u[k] == 0.0:
            eps = float(1.0 / (y[k] * y[k]))
            cands += [("rsqrt", (float(f"{eps:.5g}"),)), ("rsqrt", (eps,))]  # the model's round eps first
    probe = np.linspace(0, u.size - 1, min(u.size, 257)).astype(np.int64)  # a cheap first look
    for name, params in cands:
        spec = FUNCTIONS.get(name)
        if spec is None:
            continue
        with np.errstate(all="ignore"):
            fp, yp = spec(u[probe], params), y[probe]
            ok = np.isfinite(yp) & (np.abs(yp) < 1e29) & (np.abs(fp) < 1e29)
            if np.any(np.abs(yp[ok] - fp[ok]) > 0.01 * out_scale + 1e-6 * np.abs(fp[ok])):
                continue
            f = spec(u, params)
        big = (np.abs(f) >= 1e29) | ~np.isfinite(f)
        ybig = (np.abs(y) >= 1e29) & ~np.isnan(y)
        if np.any(big[fin] != ybig[fin]) or np.any(np.isnan(y) & (f != 0)):
            continue
        ok = fin & ~ybig
        tol = 0.01 * out_scale + 1e-6 * np.abs(f[ok])
        if np.all(np.abs(y[ok] - f[ok]) <= tol) and np.all(np.sign(y[ybig]) == np.sign(f[ybig])):
            return name, params
    return None, ()
