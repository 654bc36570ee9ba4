"""ONNX's own backend node tests, run through ``lasercc.compile`` + ``run`` (the frontend's peer suite).

Why: the frontend must lower *operations* for every attribute value the ONNX spec allows, not the shapes
one exporter happened to write. ONNX ships a test case (model + inputs + expected outputs) for every op
and most attribute values (``onnx.backend.test.case.node``); running them is the independent reference.

Each case is compiled for the ``numpy`` target with no passes, calibrated on the case's own inputs, run,
and classified:

* ``pass``    -- every output within tolerance (below);
* ``wrong``   -- it compiled and ran, and an output is outside tolerance (a silent wrong answer: a bug);
* ``refused`` -- a :class:`~lasercc.errors.LasercError` (a clear refusal naming the node and the reason);
* ``crash``   -- any other exception (a bug: a Python error escaping the library);
* ``n/a``     -- the case cannot apply to an integer compiler (:func:`not_applicable` says why).

Tolerance, derived from the code step. lasercc carries every float activation as an N-bit code on a grid
of ``range / (2^N - 1)``; the inputs are quantized to that grid and so is the output, float weights are
quantized at the same width (``weight_bits`` follows ``bits`` for a float model), and nonlinear ops
and decompositions (softmax, normalizations) add a few roundings at their internal width. A float output
passes when ``max |got - expected| <= K_N * step`` where ``step = R / (2^N - 1)`` and ``R`` is the
expected output's range (``max - min``, or ``max |x|`` when constant, at least 1e-6): ``K_16 = 64`` (a
relative error of 1e-3 of the range) and ``K_8 = 8`` (3 % of the range). An expected output in
float16/bfloat16 is itself rounded to that type by ONNX's reference, so its dtype's epsilon times its largest magnitude
is added. Integer and boolean outputs (ids, masks, ArgMax, comparisons, Shape) must be exact: they are value
class (b), carried exactly.

Variants: ``inputs`` runs the case as ONNX wrote it (every input a graph input). ``init`` keeps one
input live -- input 0, the data operand of nearly every ONNX op (Where's first float input: its input 0 is the
condition) -- and makes the others initializers, as real exports
have weights, shapes, axes and indices (only for cases with more than one input). ``finite`` (and
``finite+init``): a case whose float inputs hold NaN/Inf, with those replaced by finite values and the
expected outputs recomputed by ``onnx.reference`` (:func:`finite_variant`) -- so Cast/CastLike/IsNaN/IsInf
get real coverage.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

# The ops that transformer exports contain (issue 11's list), by ONNX domain ("" = ai.onnx).
TRANSFORMER_OPS: frozenset[str] = frozenset("""
Add Sub Mul Div Pow Sqrt Reciprocal Neg Abs Exp Log Min Max Clip Sum Relu Gelu Erf Tanh Sigmoid Sin Cos Softplus
Softmax LogSoftmax LayerNormalization RMSNormalization ReduceMean ReduceSum ReduceMax ReduceMin ReduceL2
ReduceSumSquare ReduceLogSumExp MatMul Gemm Einsum Reshape Transpose Concat Split Slice Gather GatherElements
GatherND Expand Unsqueeze Squeeze Flatten Identity Trilu Where CumSum Dropout Shape Size ConstantOfShape Range Cast
CastLike Constant Equal Less Greater LessOrEqual GreaterOrEqual Not And Or Xor IsNaN IsInf ArgMax ArgMin
QuantizeLinear DequantizeLinear QLinearMatMul MatMulInteger DynamicQuantizeLinear QLinearConv Attention
RotaryEmbedding Conv ConvInteger Pad AveragePool MaxPool GlobalAveragePool GlobalMaxPool InstanceNormalization
Tile ScatterND
""".split())

STEPS_TOLERANCE = {16: 64, 8: 8}  # K_N above; the library refuses by the same limit (common.resolution_limit)
STATUSES = ("pass", "wrong", "refused", "crash", "n/a")

# dtypes an integer compiler cannot carry as data (string) or that have no fixed real value per bit
# pattern we could check (complex); float8/4-bit types are storage formats of constants only.
_NA_DTYPES = {onnx.TensorProto.STRING: "string tensors", onnx.TensorProto.COMPLEX64: "complex tensors",
              onnx.TensorProto.COMPLEX128: "complex tensors"}
for _n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1", "INT4",
           "UINT4", "INT2", "UINT2"):
    if hasattr(onnx.TensorProto, _n):
        _NA_DTYPES[getattr(onnx.TensorProto, _n)] = "8-bit-float / sub-byte tensors (storage formats, not values)"


@dataclass(frozen=True)
class Case:
    """One ONNX node test data set, in one variant."""

    name: str          # e.g. "test_softmax_axis_0" (+ "#1" for a second data set)
    op: str            # the op under test ("multi" is never used: the name's op)
    model: onnx.ModelProto
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    variant: str = "inputs"

    @property
    def id(self) -> str:
        return f"{self.name}[{self.variant}]"


@dataclass
class Outcome:
    case: str
    op: str
    bits: int
    status: str
    detail: str = ""
    error: float | None = None   # max |got - expected| in output steps (float outputs)


def _module_names(ops: Iterable[str]) -> list[str]:
    import onnx.backend.test.case.node as node_pkg

    want = {o.lower() for o in ops}
    out = []
    for m in pkgutil.iter_modules(node_pkg.__path__):
        key = m.name.replace("_", "").rstrip("op")
        if m.name.replace("_", "") in want or key in want or m.name == "rangeop" and "range" in want:
            out.append(f"{node_pkg.__name__}.{m.name}")
    return out


def collect(ops: Iterable[str] = TRANSFORMER_OPS) -> list[Case]:
    """The ONNX node test cases whose every node is one of ``ops`` (expanded function bodies included)."""
    import onnx.backend.test.case.node as node_pkg

    ops = frozenset(ops)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _module_names(ops):
            importlib.import_module(name)
    cases: list[Case] = []
    seen: set[str] = set()
    for tc in node_pkg._NodeTestCases:  # noqa: SLF001 - the registry the export() calls fill
        if tc.name in seen or tc.model is None:
            continue
        seen.add(tc.name)
        kinds = {n.op_type for n in tc.model.graph.node if n.domain in ("", "ai.onnx")}
        if any(n.domain not in ("", "ai.onnx") for n in tc.model.graph.node) or not kinds <= ops:
            continue
        op = _op_of(tc.name, kinds)
        for k, (ins, outs) in enumerate(tc.data_sets or ()):
            feeds = {vi.name: _array(a) for vi, a in zip(tc.model.graph.input, ins)}
            expect = {vi.name: _array(a) for vi, a in zip(tc.model.graph.output, outs)}
            cases.append(Case(tc.name + (f"#{k}" if k else ""), op, tc.model, feeds, expect))
    return cases


def _array(a: object) -> np.ndarray:
    """A data set entry as an array (Cast's cases store TensorProtos: their types have no numpy dtype)."""
    if isinstance(a, onnx.TensorProto):
        try:
            return numpy_helper.to_array(a)
        except Exception:  # noqa: BLE001 - a storage format numpy cannot hold: stays an object (n/a)
            return np.asarray(a)
    return np.asarray(a)


def _op_of(name: str, kinds: set[str]) -> str:
    if len(kinds) == 1:
        return next(iter(kinds))
    body = name.removeprefix("test_").replace("_", "").lower()
    best = ""
    for o in TRANSFORMER_OPS:
        if body.startswith(o.lower()) and len(o) > len(best):
            best = o
    return best or "+".join(sorted(kinds))


def with_initializers(case: Case) -> Case | None:
    """The ``init`` variant: one live input, the rest initializers (None when the case has one input)."""
    names = [vi.name for vi in case.model.graph.input if vi.name in case.inputs]
    if len(names) < 2:
        return None
    if any(case.inputs[n].dtype.kind == "O" for n in names):
        return None
    live = names[0]
    if case.inputs[live].dtype.kind == "b":  # Where(cond, x, y): the data, not the condition
        live = next((n for n in names if case.inputs[n].dtype.kind == "f"), live)
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    keep = [vi for vi in m.graph.input if vi.name == live]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for n in names:
        if n != live:
            m.graph.initializer.append(numpy_helper.from_array(case.inputs[n], n))
    return Case(case.name, case.op, m, {live: case.inputs[live]}, case.outputs, "init")


# Operands that decide a result's *shape* (or its element count), by op type: fed as graph inputs, the output
# shape would depend on input values (not applicable: see not_applicable).
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Slice": (1, 2, 3, 4), "Split": (1,), "Squeeze": (1,), "Unsqueeze": (1,),
    "ConstantOfShape": (0,), "Range": (0, 1, 2), "Tile": (1,), "Pad": (1, 3), "TopK": (1,),
    **{op: (1,) for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceL1",
                           "ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum", "ReduceProd")},
}
# Quantization parameters (scale, zero point) of ops whose result is integer codes, by op type: fed as graph
# inputs, the code type would change at run time (not applicable: see not_applicable). DequantizeLinear is not
# here: its result is float, so run-time parameters are ordinary arithmetic and lasercc lowers them.
QPARAM_OPERANDS: dict[str, tuple[int, ...]] = {
    "QuantizeLinear": (1, 2), "QLinearMatMul": (1, 2, 4, 5, 6, 7), "QLinearConv": (1, 2, 4, 5, 6, 7),
}


def _runtime_operand(case: Case, table: dict[str, tuple[int, ...]]) -> str | None:
    live = {vi.name for vi in case.model.graph.input} - {t.name for t in case.model.graph.initializer}
    for n in case.model.graph.node:
        for k in table.get(n.op_type, ()):
            if k < len(n.input) and n.input[k] in live:
                return f"{n.op_type} input {k} ({n.input[k]!r})"
    return None


def not_applicable(case: Case) -> str | None:
    """Why the case cannot apply to an integer compiler, or None.

    * string / complex / float8 / sub-byte tensors anywhere in the model: codes are unsigned integers on
      an affine grid of a real value; these types have no such value (string, complex) or are storage
      formats whose every bit pattern is the test (the test checks the format, not the op);
    * NaN or +-Inf in a float input or expected output: a code is a finite real number, so an input of
      NaN/Inf cannot be encoded and an expected NaN/Inf cannot be produced (IsNaN/IsInf of finite data is
      applicable and is tested: it folds to a constant false);
    * sequence / optional values: not tensors, so nothing to carry as codes;
    * no graph input (the whole case is constants): nothing to compile to a spiking program;
    * a shape-deciding operand (:data:`SHAPE_OPERANDS`: Reshape's shape, Slice's starts, a reduction's axes,
      ...) fed as a graph input: a spiking program has a fixed layout of neurons and synapses, so a result
      whose shape depends on input values cannot be compiled -- pinning the value seen in calibration would be
      a silent wrong answer for any other value. The ``init`` variant runs the same case with the operand as an
      initializer, as exports have it;
    * quantization parameters of an op with an integer result (:data:`QPARAM_OPERANDS`: QuantizeLinear,
      QLinearMatMul, QLinearConv) fed as graph inputs: a code type is fixed when the program is built (a
      neuromorphic core's neurons have fixed thresholds and weights), so a scale known only at run time has no
      spiking form. The ``init`` variant runs them with constant parameters.
    """
    if any(not vi.type.HasField("tensor_type") for vi in [*case.model.graph.input, *case.model.graph.output]):
        return "sequence/optional values (not tensors)"
    types = [vi.type.tensor_type.elem_type for vi in [*case.model.graph.input, *case.model.graph.output]]
    types += [t.data_type for t in case.model.graph.initializer]
    for n in case.model.graph.node:
        for a in n.attribute:
            if a.name == "to" and a.type == onnx.AttributeProto.INT:
                types.append(a.i)
            if a.type == onnx.AttributeProto.TENSOR:
                types.append(a.t.data_type)
    for t in types:
        if t in _NA_DTYPES:
            return _NA_DTYPES[t]
    for v in [*case.inputs.values(), *case.outputs.values()]:
        if v.dtype.kind in "OUS":
            return "string tensors"
        if v.dtype.kind == "f" and v.size and not np.all(np.isfinite(v.astype(np.float64))):
            return "NaN/Inf data"
    if not case.inputs:
        return "no graph input"
    what = _runtime_operand(case, SHAPE_OPERANDS)
    if what:
        return f"shape-deciding operand fed at run time: {what}"
    what = _runtime_operand(case, QPARAM_OPERANDS)
    if what:
        return f"quantization parameter fed at run time: {what}"
    return None


def tolerance(expected: np.ndarray, bits: int) -> tuple[float, float]:
    """(allowed max |error|, one output step) for a float output at ``bits``; see the module docstring."""
    e = expected.astype(np.float64)
    r = float(e.max() - e.min()) if e.size else 0.0
    if r == 0.0:
        r = float(np.abs(e).max()) if e.size else 0.0
    step = max(r, 1e-6) / ((1 << bits) - 1)
    tol = STEPS_TOLERANCE.get(bits, 64) * step
    half = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}.get(expected.dtype.name)
    if half is not None and e.size:
        # a half-precision expected output was itself rounded to its dtype (its epsilon relative): ONNX's
        # reference computed it in that precision, lasercc in codes of the exact function -- allow that rounding
        tol += half * float(np.abs(e).max())
    return tol, step


def run_case(case: Case, bits: int) -> Outcome:
    """Compile, run and classify one case (never raises)."""
    from lasercc import compile as lcompile
    from lasercc.errors import LasercError

    why = not_applicable(case)
    if why:
        return Outcome(case.id, case.op, bits, "n/a", why)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            art = lcompile(case.model, target="numpy", bits=bits, calibration=dict(case.inputs), passes="",
                           progress=False)
            got = art.run(dict(case.inputs))
        except LasercError as e:
            return Outcome(case.id, case.op, bits, "refused", f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
        except Exception as e:  # noqa: BLE001 - classifying bugs is the point
            tb = traceback.extract_tb(e.__traceback__)[-1]
            return Outcome(case.id, case.op, bits, "crash",
                           f"{type(e).__name__}: {str(e)[:200]} at {tb.filename.rsplit('/', 1)[-1]}:{tb.lineno}")
    onnx_of = {k: v["onnx"] for k, v in art.manifest.get("onnx_outputs", {}).items()}
    by_onnx = {onnx_of.get(k, k): v for k, v in got.items()}
    worst = 0.0
    for name, exp in case.outputs.items():
        if name not in by_onnx:
            return Outcome(case.id, case.op, bits, "wrong", f"output {name!r} missing")
        g = np.asarray(by_onnx[name])
        if g.shape != exp.shape:
            return Outcome(case.id, case.op, bits, "wrong", f"output {name!r} shape {list(g.shape)} != "
                                                             f"{list(exp.shape)}")
        if exp.dtype.kind in "biu":
            bad = int(np.sum(g.astype(np.float64) != exp.astype(np.float64)))
            if bad:
                return Outcome(case.id, case.op, bits, "wrong", f"output {name!r}: {bad}/{exp.size} integer values "
                                                                 "differ")
            continue
        tol, step = tolerance(exp, bits)
        err = float(np.max(np.abs(g.astype(np.float64) - exp.astype(np.float64)))) if exp.size else 0.0
        worst = max(worst, err / step)
        if not err <= tol:
            return Outcome(case.id, case.op, bits, "wrong", f"output {name!r}: max error {err:.3g} = "
                                                             f"{err / step:.1f} steps > {tol / step:.0f}", err / step)
    return Outcome(case.id, case.op, bits, "pass", error=worst)


def finite_variant(case: Case) -> Case | None:
    """The ``finite`` variant of a case whose float inputs hold NaN/Inf (n/a as written: codes are finite):
    NaN -> 0 and +-Inf -> the largest/smallest finite value of that input (or +-1), the expected outputs
    recomputed with ``onnx.reference``. None when no input holds NaN/Inf, the evaluator fails, or the new
    expected outputs still hold NaN/Inf (then the case stays n/a)."""
    bad = {k for k, v in case.inputs.items() if v.dtype.kind == "f" and v.size
           and not np.all(np.isfinite(v.astype(np.float64)))}
    if not bad:
        return None
    feeds = {}
    for k, v in case.inputs.items():
        if k in bad:
            f = v.astype(np.float64)
            fin = f[np.isfinite(f)]
            hi, lo = (float(fin.max()), float(fin.min())) if fin.size else (1.0, -1.0)
            v = np.nan_to_num(f, nan=0.0, posinf=hi, neginf=lo).astype(v.dtype)
        feeds[k] = v
    from onnx.reference import ReferenceEvaluator

    from lasercc.frontends.onnx.evaluators import REFERENCE_ERRORS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = ReferenceEvaluator(case.model).run(None, feeds)
    except REFERENCE_ERRORS:  # onnx.reference cannot evaluate it: no reference result, no variant
        return None
    outs = {vi.name: np.asarray(g) for vi, g in zip(case.model.graph.output, got)}
    return Case(case.name, case.op, case.model, feeds, outs, "finite")


def variants(cases: Iterable[Case]) -> list[Case]:
    """Each case as written, its ``init`` variant, and (inputs with NaN/Inf) its ``finite`` variant."""
    out = []
    for c in cases:
        for base in (c, finite_variant(c)):
            if base is None:
                continue
            out.append(base)
            v = with_initializers(base)
            if v is not None:
                out.append(Case(v.name, v.op, v.model, v.inputs, v.outputs, base.variant + "+init"
                                if base.variant != "inputs" else "init"))
    return out


def for_bits(cases: Iterable[Case], bits: int) -> list[Case]:
    """The cases run at ``bits``: all at 16; at 8 only those whose outputs are all float (integer and
    boolean outputs are exact at any width, so an 8-bit run of them repeats the 16-bit one)."""
    if bits >= 16:
        return list(cases)
    return [c for c in cases if all(v.dtype.kind == "f" for v in c.outputs.values())]


def table(outcomes: list[Outcome]) -> str:
    """A markdown table: per op, the count of each status; then totals and the pass rate of applicable cases."""
    per: dict[str, Counter] = {}
    for o in outcomes:
        per.setdefault(o.op, Counter())[o.status] += 1
    lines = ["| op | " + " | ".join(STATUSES) + " |", "|---|" + "---|" * len(STATUSES)]
    tot: Counter = Counter()
    for op in sorted(per):
        tot.update(per[op])
        lines.append(f"| {op} | " + " | ".join(str(per[op][s]) for s in STATUSES) + " |")
    lines.append("| **total** | " + " | ".join(f"**{tot[s]}**" for s in STATUSES) + " |")
    app = sum(tot[s] for s in STATUSES if s != "n/a")
    lines.append("")
    lines.append(f"pass rate of applicable cases: {tot['pass']}/{app} = {100 * tot['pass'] / max(app, 1):.1f} %")
    return "\n".join(lines)
