"""The lowering driver: one pass over the ONNX nodes, in order, from ONNX values to IR values.

Each ONNX tensor is mapped to a :mod:`values` record. A node whose inputs are all constant is
folded (``onnx.reference`` evaluates it; ``Shape`` of an activation is its pinned static shape), so
exporters' shape subgraphs disappear. Every other node goes to its handler in :mod:`registry` (keyed by
domain and op type; the ``ops_*.py`` modules register them). Handlers get the node and its input records and
return output records, emitting IR through :class:`~lasercc.frontends.onnx.emit.Builder`.

Code types of float results (the quantization policy, :meth:`Lowerer.out_type`):
1. if every consumer of the tensor is a QuantizeLinear with the same parameters, the model has
   chosen the type: the result is produced directly in it (the Q node then costs nothing);
2. otherwise the tensor's calibration range (min/max over the calibration rows, see
   :mod:`calibrate`) at ``act_bits`` -- the float-island / float-model case -- or wider: ``norm_input_bits``
   for what a normalisation reads (the residual stream), ``residual_bits`` for a summand of the residual
   stream with systematic outlier channels (:data:`OUTLIER_RATIO`), and the width a steep table downstream
   needs (:mod:`precision`); a ``tensor_bits`` entry for the tensor overrides all of these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from lasercc.frontends.onnx.calibrate import Stats
from lasercc.frontends.onnx.common import (
    as01,
    codes_input,
    const_output,
    dynamic_qparams,
    id_bound,
    ids_as_codes,
    int_type,
    integer_view,
    is_codes_input,
)
from lasercc.frontends.onnx.emit import Builder, sanitize
from lasercc.frontends.onnx.load import FrontendError
from lasercc.frontends.onnx.registry import HINT, PREPARE_HOOKS, WIDTH_HOOKS, domain_of, handler, sampled_inputs
from lasercc.frontends.onnx.values import (
    Act,
    Const,
    DynMask,
    Ids,
    Masked,
    QWeight,
    Val,
    code_type,
    onnx_int_bits,
    range_type,
)
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import BSEEncode, Input, Reshape
from lasercc.ir.types import CodeType, TensorType
from lasercc.passes.rewrite import live_names


def node_label(n: onnx.NodeProto) -> str:
    """How errors name a node: ``node 'name' (domain.Op)``."""
    op = n.op_type if not domain_of(n) else f"{n.domain}.{n.op_type}"
    return f"node {n.name or (n.output[0] if n.output else '?')!r} ({op})"


@dataclass
class Options:
    act_bits: int = 8          # float-model activations and float islands
    internal_bits: int = 16    # decomposition internals (softmax/layernorm/rsqrt)
    # Float weights we quantize ourselves (symmetric, per output channel); a model's integer weights are kept.
    # import_onnx: 16 for a float model at --bits 16, else 8, unless --weight-bits says otherwise; compile() keeps 8
    # for loihi2 (8-bit synapses). Why 16: 8-bit weights alone cost a 16-bit result ~200-400 output steps.
    weight_bits: int = 8
    requant: str = "ort"
    # Float tensors that a normalisation reads (LayerNormalization, ReduceMean: the residual stream of a
    # transformer) get at least this many bits. Why: transformers keep a few outlier channels in the
    # residual stream (tens of times the others' range, e.g. BERT's); the normalisation divides them
    # away, but 8-bit codes spanning them leave the other channels 1-2 codes. all-MiniLM-L6-v2 at
    # --bits 8: sentence-embedding cosine 0.86 -> 0.95 (bench/minilm_fidelity.py). None: off.
    norm_input_bits: int | None = 16
    # Summands of the residual stream (activation operands of an Add whose result a normalisation reads: an
    # FFN's or attention's output projection, the previous normalisation's output) that hold systematic
    # outlier channels (largest channel >= OUTLIER_RATIO x the median one, per-channel calibration ranges)
    # get at least this many bits. Why: BERT's FFN-down output carries channel 99 at ~200 against ~1 for
    # the rest; at 8 bits one code step is ~0.8, which erases every other channel of what the residual
    # stream adds (all-MiniLM-L6-v2 at --bits 8: sentence cosine 0.951 -> 0.988 from these six tensors).
    # Clipping the outliers instead is worse (they are meaningful). None: off. import_onnx turns it on
    # (16) for float models at 8-bit activations (see notes/quantization.md).
    residual_bits: int | None = None
    # Per-tensor code widths (ONNX tensor name -> bits), applied last: measure where the error comes from (one
    # tensor or layer type at a time, bench/minilm_quant_sources.py) or pin what a measurement showed necessary.
    tensor_bits: dict[str, int] = field(default_factory=dict)


# A residual summand whose largest channel (max |value| over the calibration rows) is at least this many times its
# median channel's gets residual_bits. all-MiniLM-L6-v2 (calibration sentences of bench/minilm_fidelity.py): FFN-down
# outputs 26-247, attention-output LayerNorm outputs 10-21, FFN-output LayerNorm outputs 5-7, attention output
# projections 2-8 (layer 0's 8.4 is the one widened among those).
OUTLIER_RATIO = 8.0


NORM_OPS = frozenset({"LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization", "ReduceMean",
                      "SkipLayerNormalization", "SkipSimplifiedLayerNormalization"})
# Every reduction reads its input at the same wider width: its result carries the input's rounding while its own
# range can be far narrower (one extreme value, a sum that cancels); ArgMax/ArgMin return exact integers, and
# inputs closer than one code step tie (decided by index): 8-bit logits tie often, 16-bit ones rarely do.
NORM_OPS = NORM_OPS | {"ArgMax", "ArgMin", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceSumSquare", "ReduceL2",
                       "ReduceLogSumExp"}


@dataclass
class Lowerer:
    model: onnx.ModelProto
    stats: Stats
    opts: Options
    env: dict[str, Val] = field(default_factory=dict)
    b: Builder = field(init=False)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    skip: set[int] = field(default_factory=set)
    fused: dict[int, Callable[[], list]] = field(default_factory=dict)
    sources: dict[str, tuple[str, onnx.NodeProto]] = field(default_factory=dict)  # tensor -> (op, node)
    tensor_map: dict[str, str] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # initializers split off the proto (load.py)
    fused_samples: dict[int, tuple[str, ...]] = field(default_factory=dict)  # fused node -> tensors it samples
    notes: list[str] = field(default_factory=list)  # what the compile info should tell the user
    _prepared: bool = field(default=False, init=False)
    _sample_last: dict[str, int] = field(default_factory=dict, init=False)  # tensor -> last node reading its values
    widened: dict[str, int] = field(default_factory=dict)  # residual summands given residual_bits -> their bits

    def __post_init__(self) -> None:
        self.b = Builder(self.opts.requant)
        self.opset = {o.domain or "": o.version for o in self.model.opset_import}
        for n in self.model.graph.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
            for o in n.output:
                self.sources[o] = (n.op_type, n)

    # ---- entry ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything that needs no calibration: constants, fusions, the supported-op check.

        Runs before calibration, so an unsupported model fails at once and calibration keeps only the
        values the lowering will read (:meth:`sample_requests`).
        """
        if self._prepared:
            return
        from lasercc.frontends.onnx.load import initializers

        for k, v in initializers(self.model, self.weights).items():
            self.env[k] = Const(v)
        for hook in PREPARE_HOOKS:  # prepare-time rewrites: unary elementwise chains -> one table (chains.py)
            hook(self)
        self._check_supported()
        self._check_input_dtypes()
        self._prepared = True

    def sample_requests(self) -> set[str]:
        """Tensors whose calibration *values* (not only min/max) the lowering may read.

        Why: calibration keeps these for ``KEEP_ROWS`` rows -- they are the largest memory cost of a
        compile -- so the set is exactly what the handlers ask :meth:`Stats.values` for: the input of an
        ASNC table (unary ops, Pow, an elementwise chain's root), of a Softmax or LayerNorm
        decomposition, and a divisor (or the input of the Sqrt it is). Nodes inside a fused chain are
        skipped; a fusion names its own input (``fused_samples``). ``Stats.asked`` records what the
        lowering did ask, so tests check this set covers it.
        """
        self.prepare()
        last: dict[str, int] = {}
        for k, n in enumerate(self.model.graph.node):
            if id(n) in self.skip:
                continue
            want: tuple[str, ...] = ()
            if id(n) in self.fused:
                want = self.fused_samples.get(id(n), ())
            elif n.op_type == "Div" and len(n.input) > 1:
                op, src = self.sources.get(n.input[1], ("", None))
                # the numerator too: where its code is 0 the divisor's reciprocal is not needed (chains.recip_bound)
                want = (n.input[0], n.input[1], src.input[0]) if op == "Sqrt" and src is not None and src.input \
                    else (n.input[0], n.input[1])
            elif sampled_inputs(n):
                want = tuple(n.input[i] for i in sampled_inputs(n) if i < len(n.input) and n.input[i])
            for t in want:
                last[t] = k
        self._sample_last = last
        return set(last)

    def residual_summands(self) -> set[str]:
        """Non-constant operands of every ``Add`` whose result a normalisation (:data:`NORM_OPS`) reads.

        These are what a transformer adds into its residual stream; calibration keeps their per-channel
        ranges when ``residual_bits`` is on, so :meth:`out_type` can tell outlier channels.
        """
        consts = self.__dict__.setdefault("_static_consts", self._static_const_tensors())
        out: set[str] = set()
        for n in self.model.graph.node:
            if n.op_type != "Add" or domain_of(n) or not n.output:
                continue
            if any(c.op_type in NORM_OPS for c in self.consumers.get(n.output[0], [])):
                out.update(i for i in n.input if i and i not in consts)
        return out

    def run(self, progress: Callable[[int, int], None] | None = None) -> Graph:
        from lasercc.frontends.onnx.load import graph_inputs

        self.prepare()
        for vi in graph_inputs(self.model):
            self._input(vi)
        nodes = list(self.model.graph.node)
        drop_after: dict[int, list[str]] = {}
        for t, k in self._sample_last.items():
            drop_after.setdefault(k, []).append(t)
        for i, n in enumerate(nodes):
            if progress is not None and (i % 25 == 0 or i == len(nodes) - 1):
                progress(i + 1, len(nodes))
            if id(n) not in self.skip:
                self._lower(n)
            for t in drop_after.get(i, ()):
                self.stats.kept.pop(t, None)  # calibration values read by their last user: free them
        return self._finish()

    def _check_supported(self) -> None:
        bad: dict[str, list[str]] = {}
        for n in self.model.graph.node:
            key = n.op_type if not domain_of(n) else f"{n.domain}.{n.op_type}"
            if id(n) in self.skip or id(n) in self.fused:
                continue  # inside a fused region (an elementwise chain evaluated as one table)
            if handler(n) is None and not self._maybe_const(n):
                bad.setdefault(key, []).append(n.name or n.output[0])
        if bad:
            parts = [f"{k} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})" for k, v in sorted(bad.items())]
            raise FrontendError(f"unsupported ONNX op(s): {'; '.join(parts)}; {HINT}")

    def _maybe_const(self, n: onnx.NodeProto) -> bool:
        """Statically: can this node be folded (all inputs initializers / constant-producing nodes)?"""
        if n.op_type in ("Constant", "ConstantOfShape", "Range", "Shape", "Size") and not domain_of(n):
            return True
        consts = self.__dict__.setdefault("_static_consts", self._static_const_tensors())
        return all(not i or i in consts for i in n.input)

    def _static_const_tensors(self) -> set[str]:
        s = {i.name for i in self.model.graph.initializer}
        for n in self.model.graph.node:
            if n.op_type in ("Shape", "Size", "Constant") or all(not i or i in s for i in n.input):
                if n.op_type != "DequantizeLinear" or all(not i or i in s for i in n.input):
                    s.update(o for o in n.output if o)
        return s

    def _check_input_dtypes(self) -> None:
        """Graph inputs of a dtype with no code form fail before calibration runs (see :meth:`_input`)."""
        from lasercc.frontends.onnx.load import graph_inputs

        for vi in graph_inputs(self.model):
            et = vi.type.tensor_type.elem_type
            try:
                dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(et))
            except (KeyError, ValueError, TypeError):  # a type numpy does not know (string, ...)
                dt = None
            if dt is None or dt.kind not in "fbiu" or (dt.kind == "f" and dt.name not in ("float16", "float32",
                                                                                           "float64")):
                what = onnx.TensorProto.DataType.Name(et) if et else "unknown"
                raise FrontendError(f"graph input {vi.name!r} has unsupported dtype {what.lower()} (inputs must be "
                                    "float16/32/64, integer or bool tensors)")
        for vo in self.model.graph.output:
            if vo.type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16:
                raise FrontendError(f"graph output {vo.name!r} has dtype bfloat16, which onnxruntime (calibration) "
                                    "cannot return to NumPy; cast it to float32 in the model")

    def _input(self, vi: onnx.ValueInfoProto) -> None:
        """A graph input, by dtype (value classes: see :mod:`values`).

        * float (any width) -> f32 input, BSE-encoded in its calibrated code type (an activation);
        * bool -> f32 input encoded as exact 0/1 codes (2 bits, scale 1): exact integer data;
        * integer -> ``i64`` ids (:class:`Ids`: looked up on the host, bounded by how the model reads them), or,
          when calibration saw negative values, an f32 input encoded as exact scale-1 integer codes whose range
          is the dtype's (8/16-bit types: every value is exact) or the calibrated range widened to powers of two
          (32/64-bit types; values beyond it saturate like any calibrated input).
        """
        tt = vi.type.tensor_type
        dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        shape = tuple(int(d.dim_value) for d in tt.shape.dim)
        name = self.b.fresh(vi.name)
        if name != vi.name:
            raise FrontendError(f"graph input name {vi.name!r} is not a legal IR value name; rename it in the model")
        if 0 in shape:
            # an empty tensor (CastLike's ``like``, a zero-size batch of a reduction's data) holds no values: it *is*
            # the empty array of its shape, a constant its consumers fold; the input stays in the interface
            self.b.add(Input(name=name, type=TensorType(dtype="f32" if dt.kind in "fb" else "i64", shape=shape)))
            self.env[vi.name] = Const(np.zeros(shape, dt))
            return
        if is_codes_input(self, vi.name, dt):  # quantized codes given as integers (common.codes_input)
            self.env[vi.name] = codes_input(self, name, dt, shape)
            return
        r = self.stats.range(vi.name)
        if dt.kind in "iu" and not (dt.kind == "i" and r is not None and r[0] < 0):
            self.b.add(Input(name=name, type=TensorType(dtype="i64", shape=shape)))
            self.env[vi.name] = Ids(name, shape)
            return
        if dt.kind not in "fbi":
            raise FrontendError(f"graph input {vi.name!r} has unsupported dtype {dt}")
        self.b.add(Input(name=name, type=TensorType(dtype="f32", shape=shape)))
        lo = hi = None
        if dt.kind == "b":
            lo, hi = 0, 1
        elif dt.kind == "i" and dt.itemsize <= 2:
            lo, hi = int(np.iinfo(dt).min), int(np.iinfo(dt).max)
        elif dt.kind == "i":
            assert r is not None
            lo, hi = -(1 << int(-np.floor(r[0])).bit_length()), (1 << max(int(np.ceil(r[1])), 0).bit_length()) - 1
        t = int_type(lo, hi, shape) if lo is not None else self.out_type(vi.name, shape)
        enc = self.b.fresh(vi.name + ".enc")
        self.b.add(BSEEncode(name=enc, inputs=(name,), type=t))
        self.env[vi.name] = Act(enc, t, boolean=dt.kind == "b", int_range=None if lo is None else (lo, hi))

    # ---- per node ------------------------------------------------------------------------------
    def _lower(self, n: onnx.NodeProto) -> None:
        ins: list = [self.env.get(i) if i else None for i in n.input]
        for i, v in zip(n.input, ins):
            if i and v is None and id(n) not in self.fused:
                raise FrontendError(f"node {n.name or n.op_type} reads {i!r}, which nothing defines before it")
        if id(n) in self.fused:
            outs = self.fused[id(n)]()
        elif self._foldable(n, ins):
            outs = [Const(v) for v in self._fold(n, ins)]
        else:
            h = handler(n)
            if h is None:
                raise FrontendError(f"unsupported ONNX op {n.op_type} ({n.name}) on activations; {HINT}")
            try:
                outs = h(self, n, ins)
            except FrontendError as e:  # a refusal: say which node it is about, once
                where = node_label(n)
                if where in str(e):
                    raise
                raise FrontendError(f"{where}: {e}") from None
            # any other exception from a handler is a bug in lasercc, not a refusal: it propagates as it is
        for o, v in zip(n.output, outs):
            if o and v is not None:
                self.env[o] = v
                if isinstance(v, Act):
                    self.tensor_map.setdefault(o, v.name)

    def _foldable(self, n: onnx.NodeProto, ins: list) -> bool:
        if n.op_type in ("Shape", "Size") and ins and isinstance(ins[0], Act | Masked | Ids | DynMask):
            return True
        if n.op_type == "DequantizeLinear":
            return False
        if domain_of(n):
            return False
        return all(v is None or isinstance(v, Const | QWeight) for v in ins)

    def _fold(self, n: onnx.NodeProto, ins: list) -> list[np.ndarray]:
        if n.op_type in ("Shape", "Size") and not isinstance(ins[0], Const | QWeight):
            v = ins[0]
            shape = v.act.shape if isinstance(v, Masked) else v.src.shape if isinstance(v, DynMask) else tuple(v.shape)
            if n.op_type == "Size":
                return [np.array(int(np.prod(shape)), np.int64)]
            start = next((a.i for a in n.attribute if a.name == "start"), 0)
            end = next((a.i for a in n.attribute if a.name == "end"), len(shape))
            return [np.array(shape[start:end], np.int64)]
        from lasercc.frontends.onnx.evaluators import reference_evaluator

        feeds = {}
        for i, v in zip(n.input, ins):
            if i:
                feeds[i] = v.real() if isinstance(v, QWeight) else v.value
        try:
            ev = reference_evaluator(n, opsets={"": self.opset.get("", 17)})
            return [np.asarray(x) for x in ev.run(None, feeds)]
        except Exception as e:  # noqa: BLE001 -- onnx's reference has gaps and bugs; onnxruntime is the second opinion
            try:
                return _fold_with_onnxruntime(n, feeds, self.opset.get("", 17))
            except _ORT_FOLD_ERRORS as e2:
                raise FrontendError(f"cannot fold constant node {n.op_type} {n.name!r}: onnx.reference: {e}; "
                                    f"onnxruntime: {str(e2).splitlines()[0] if str(e2) else type(e2).__name__}"
                                    ) from None

    # ---- helpers for handlers ------------------------------------------------------------------
    def const_value(self, v: Val | None, what: str = "constant") -> np.ndarray:
        if isinstance(v, Const):
            return v.value
        if isinstance(v, QWeight):
            return v.real()
        raise FrontendError(f"expected a constant {what}, got an activation")

    def q_type(self, scale: Val, zp: Val | None, shape: tuple[int, ...],
               dtype: np.dtype | None = None) -> tuple[CodeType, bool]:
        """The code type of an ONNX (scale, zero_point) pair; signed types are shifted to unsigned."""
        s = np.asarray(self.const_value(scale, "scale"), dtype=np.float32)
        if zp is None:
            z = np.zeros((), dtype or np.uint8)
        else:
            z = np.asarray(self.const_value(zp, "zero point"))
        if s.size != 1 or z.size != 1:
            raise FrontendError("per-axis quantization of activations is not supported")
        bits, signed = onnx_int_bits(z.dtype)
        shift = 1 << (bits - 1) if signed else 0
        return code_type(bits, float(s.reshape(-1)[0]), int(z.reshape(-1)[0]) + shift, shape), signed

    def q_params_of(self, node: onnx.NodeProto) -> tuple | None:
        """Comparable (scale, zp, dtype) of a QuantizeLinear node, if its parameters are constants."""
        if node.op_type == "DynamicQuantizeLinear":  # its scale, made static by calibration (ops_quant)
            r = self.stats.range(node.input[0])
            return None if r is None else (*dynamic_qparams(*r), "uint8")
        if node.op_type != "QuantizeLinear":
            return None
        s = self.env.get(node.input[1])
        z = self.env.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if not isinstance(s, Const) or (z is not None and not isinstance(z, Const)):
            return None
        od = next((a.i for a in node.attribute if a.name == "output_dtype"), 0)
        zdt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(od)) if od else np.dtype(np.uint8)
        zv = np.zeros((), zdt) if z is None else z.value
        if zv.dtype.kind not in "iu":
            return None
        if s.value.size != 1:
            return None
        return float(s.value.reshape(-1)[0]), int(zv.reshape(-1)[0]), str(zv.dtype)

    def out_type(self, tensor: str, shape: tuple[int, ...], bits: int | None = None) -> CodeType:
        """Code type for a float result tensor (see the module docstring)."""
        cons = self.consumers.get(tensor, [])
        outputs = {o.name for o in self.model.graph.output}
        if cons and tensor not in outputs:
            ps = {self.q_params_of(c) for c in cons}
            if len(ps) == 1 and None not in ps:
                s, z, dt = ps.pop()
                nb, signed = onnx_int_bits(np.dtype(dt))
                return code_type(nb, s, z + ((1 << (nb - 1)) if signed else 0), shape)
        r = self.stats.range(tensor)
        if r is None:
            raise FrontendError(f"no calibration range for float tensor {tensor!r} (its values were not observed)")
        nb = bits or self.reader_bits(tensor)
        if bits is None and self.opts.residual_bits and nb < self.opts.residual_bits:
            ratio = self.stats.outlier_ratio(tensor)  # per-channel ranges exist only for residual summands
            summands = self.__dict__.get("_summands")
            if summands is None:
                summands = self.__dict__["_summands"] = self.residual_summands()
            if ratio is not None and ratio >= OUTLIER_RATIO and tensor in summands:
                nb = self.opts.residual_bits  # a residual summand with outlier channels (Options.residual_bits)
                self.widened[tensor] = nb
        if bits is None:
            nb = max([nb] + [h(self, tensor) for h in WIDTH_HOOKS])  # under a steep table (precision.py)
        if bits is None and tensor in self.opts.tensor_bits:
            nb = self.opts.tensor_bits[tensor]
        return range_type(r[0], r[1], nb, shape)

    def reader_bits(self, tensor: str) -> int:
        """The calibrated width of a float tensor by what reads it: ``act_bits``, or ``norm_input_bits`` for what a
        normalisation or reduction reads (the residual stream, see :attr:`Options.norm_input_bits`)."""
        nb = self.opts.act_bits
        if self.opts.norm_input_bits and any(c.op_type in NORM_OPS for c in self.consumers.get(tensor, [])):
            nb = max(nb, self.opts.norm_input_bits)
        return nb

    # ---- finish --------------------------------------------------------------------------------
    def _finish(self) -> Graph:
        outs: list[str] = []
        rename: dict[str, str] = {}
        self.output_info: dict[str, dict] = {}
        for o in self.model.graph.output:
            v = self.env.get(o.name)
            if isinstance(v, Masked | DynMask):
                raise FrontendError(f"graph output {o.name!r} is a masked (-inf) tensor; cannot output it")
            if isinstance(v, Ids):
                # an integer input passed through (token ids, a mask): IR outputs are codes, so the ids become
                # scale-1 codes (exact integers) through a lookup table sized by how the model reads the
                # input (common.id_bound); a larger id at run time is an input error, never a wrong value
                v = ids_as_codes(self, o.name, v, id_bound(self, v))
            elif isinstance(v, Act) and v.quantized:  # an ONNX integer tensor: its real value is the integer
                v = integer_view(self, o.name + ".int", v)
            elif isinstance(v, Act) and v.boolean and not (v.int_range is not None and v.int_range[0] >= 0
                                                           and v.int_range[1] <= 1):
                v = as01(self, o.name, v)  # a bool output is 0/1 (true where nonzero)
            elif isinstance(v, Const | QWeight):
                # a constant output (Shape, Size, a folded subgraph): a Gather of its codes by a zero code
                v = const_output(self, o.name, np.asarray(self.const_value(v)))
            if not isinstance(v, Act):
                raise FrontendError(f"graph output {o.name!r} is a {type(v).__name__} value, which has no spiking "
                                    "form; drop it from the model's outputs")
            want = sanitize(o.name)
            node_names = {n.name for n in self.b.nodes}
            if v.name in rename.values() or v.name in outs or (want in node_names and want != v.name) \
                    or v.name in {n.name for n in self.b.nodes if isinstance(n, Input)}:
                want = self.b.fresh(o.name)
                self.b.add(Reshape(name=want, inputs=(v.name,), type=v.type))
            elif want != v.name:
                rename[v.name] = want
            outs.append(want)
            self.output_info[want] = {"onnx": o.name, "quantized": v.quantized, "signed": v.signed}
        nodes = []
        for n in self.b.nodes:
            changes = {}
            if n.name in rename:
                changes["name"] = rename[n.name]
            if any(i in rename for i in n.inputs):
                changes["inputs"] = tuple(rename.get(i, i) for i in n.inputs)
            nodes.append(n.replace(**changes) if changes else n)
        self.tensor_map = {k: rename.get(v, v) for k, v in self.tensor_map.items()}
        live = live_names(nodes, outs)  # drop what no output reads (a Sqrt replaced by a fused rsqrt)
        nodes = [n for n in nodes if n.name in live]
        used = {c for n in nodes for c in n.const_refs()}
        consts = {k: v for k, v in self.b.consts.items() if k in used}
        name = sanitize(self.model.graph.name or "model")
        return Graph(name, tuple(nodes), tuple(outs), consts).verify()


def _ort_errors() -> tuple[type[BaseException], ...]:
    """What onnxruntime raises when it cannot build or run a one-node model (its pybind error classes derive from
    Exception directly), and what building the model raises for an input onnx cannot store (TypeError)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as st

    names = ("Fail", "InvalidArgument", "InvalidGraph", "NotImplemented", "RuntimeException", "EPFail")
    return (TypeError, *(getattr(st, k) for k in names if hasattr(st, k)))


_ORT_FOLD_ERRORS = _ort_errors()


def _fold_with_onnxruntime(n: onnx.NodeProto, feeds: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Evaluate one node on constant inputs with onnxruntime (graph optimisations off): the fallback when
    ``onnx.reference`` cannot -- its GatherElements, for one, fails on indices narrower than the data along a
    unit axis (a [1, 512] position table gathered by [1, 8] indices, as torch's dynamo exporter writes BERT's
    position ids at opset 20)."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in feeds.items()]
    outs = [onnx.ValueInfoProto(name=o) for o in n.output if o]
    m = helper.make_model(helper.make_graph([n], "fold", [], outs, inits),
                          opset_imports=[helper.make_opsetid("", opset)])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in outs], sess.run(None, {})))
    return [np.asarray(got[o]) if o else np.zeros(0) for o in n.output]  # unnamed optional outputs: unused slots
