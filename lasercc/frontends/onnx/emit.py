"""Building IR nodes for the lowering: names, constants and the arithmetic folding rules.

All integer folding done at compile time lives here, so each rule is written once:

* input zero points go into the Soma bias: ``sum_j W_j (x_j - z_j) = sum_j W_j x_j - sum_j W_j z_j``;
* real-valued constants (biases, additive constants) become accumulator units by dividing by
  ``scale_in * scale_w`` and rounding half to even -- the only rounding this module introduces
  besides the documented weight quantization of float constants;
* two activations with different scales are added in a common fine scale ``s_c`` with integer
  weights ``round(s_i / s_c)`` (:func:`common_scale`): ``s_c = min(s_a, s_b) / 2^10``, so the relative error of
  each weight is at most 2^-11 of the smaller input scale -- refined when that error, over the operands' whole
  code range, would reach a quarter of the result's step (capped so no weight exceeds 2^24 and the
  accumulator stays below 2^45).
"""

from __future__ import annotations

import re

import numpy as np

from lasercc.asnc.table import ASNCTable
from lasercc.frontends.onnx.values import Act, code_type
from lasercc.ir.nodes import ASNCSegment, DecodeMAC, Node, Soma
from lasercc.ir.types import CodeType

ADD_FINE_BITS = 10
ADD_MAX_WEIGHT = 1 << 24
CONST_WEIGHT_BITS = 15  # float constants multiplying activations (gamma, scalars) become 16-bit ints


def sanitize(name: str) -> str:
    """An IR-legal value name for an ONNX tensor name."""
    s = re.sub(r"[^A-Za-z0-9_.\-/:]", "_", name)
    s = s.lstrip("/.:-")
    if not s or not (s[0].isalpha() or s[0] == "_"):
        s = "v_" + s
    return s


def small_int(a: np.ndarray) -> np.ndarray:
    """Store integer weights in the narrowest signed dtype that holds them (keeps weights.npz small)."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        a = a.astype(np.int64)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)  # in the array's own dtype: no int64 copy
    if a.dtype == np.uint16:
        return a  # 16-bit code tables (an embedding of 16-bit codes): already 2 bytes; no int16 copy of the table
    for dt in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if lo >= info.min and hi <= info.max:
            return a.astype(dt, copy=False)
    return a


def quantize_const_symmetric(c: np.ndarray, bits: int = CONST_WEIGHT_BITS) -> tuple[np.ndarray, float]:
    """Float constant -> (integer weights, per-tensor scale), symmetric, ``bits`` magnitude bits."""
    c = np.asarray(c, dtype=np.float64)
    m = float(np.abs(c).max()) if c.size else 0.0
    if m == 0.0:
        return np.zeros(c.shape, np.int64), 1.0
    s = float(np.float32(m / ((1 << bits) - 1)))
    return np.rint(c / s).astype(np.int64), s


class Builder:
    """Accumulates IR nodes and constants with unique names."""

    def __init__(self, requant: str = "ort"):
        self.nodes: list[Node] = []
        self.consts: dict[str, np.ndarray] = {}
        self.requant = requant
        self._used: set[str] = set()

    def fresh(self, stem: str) -> str:
        base = sanitize(stem)
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def const(self, stem: str, arr: np.ndarray) -> str:
        """Add a constant; integer arrays are stored in the narrowest dtype that holds them (lookup
        tables of 16-bit codes would otherwise be int64: 4x the memory during compile and on disk)."""
        k = self.fresh(stem)
        a = np.asarray(arr)
        self.consts[k] = np.ascontiguousarray(small_int(a) if a.dtype.kind in "iu" else a)
        return k

    def add(self, node: Node) -> str:
        self.nodes.append(node)
        return node.name

    # ---- the compute kinds -------------------------------------------------------------------
    def soma_matmul(self, stem: str, x: Act, w: np.ndarray, scale_w: tuple[float, ...], out: CodeType,
                    bias: np.ndarray | None = None) -> Act:
        """``x @ w`` (w integer [K, N]) + ``bias`` (accumulator units), input zero point folded.

        ``w`` stays in its own integer dtype: the zero-point fold sums columns in int64 (numpy widens
        element by element in its buffered reduction) and the stored constant is :func:`small_int` of ``w``
        -- the same values and dtype as from an int64 copy, without one (an int64 copy of a 32000 x 2048
        LM head is 0.5 GB, a third of a billion-parameter QDQ compile's peak)."""
        w = np.asarray(w)
        if w.dtype.kind not in "iu":
            w = w.astype(np.int64)  # bool / float-held integers: as before
        b = -x.zp * w.sum(axis=0, dtype=np.int64)
        if bias is not None:
            b = b + np.asarray(bias, dtype=np.int64)
        # uint16 is kept as is by small_int (code tables); weights get the signed dtype an int64 copy would
        wq = small_int(w.astype(np.int32) if w.dtype == np.uint16 else w)
        if np.may_share_memory(wq, w):
            wq = wq.copy()  # a fresh array, never a view of the caller's (possibly memory-mapped) weight
        name = self.fresh(stem)
        node = Soma(name=name, inputs=(x.name,), type=out, weights=(self.const(name + ".w", wq),),
                    forms=("matmul",), bias=self.const(name + ".b", b) if np.any(b) else None,
                    scale_in=x.scale, scale_w=tuple(float(np.float32(s)) for s in scale_w), requant=self.requant)
        self.add(node)
        return Act(name, out)

    def soma_mul(self, stem: str, xs: list[Act], ws: list[np.ndarray], scale_in: float, scale_w: tuple[float, ...],
                 out: CodeType, bias: np.ndarray | None = None) -> Act:
        """Elementwise ``sum_i w_i * (x_i - z_i) + bias`` (broadcasting), requantized with scale_in*scale_w."""
        ws64 = [np.asarray(w, dtype=np.int64) for w in ws]
        b: np.ndarray = np.zeros((), np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
        for x, w in zip(xs, ws64):
            b = b - x.zp * w
        name = self.fresh(stem)
        wnames = tuple(self.const(f"{name}.w{i}", small_int(w.reshape(w.shape or (1,)))) for i, w in enumerate(ws64))
        bname = self.const(name + ".b", b.reshape(b.shape or (1,))) if np.any(b) else None
        node = Soma(name=name, inputs=tuple(x.name for x in xs), type=out, weights=wnames,
                    forms=("mul",) * len(xs), bias=bname, scale_in=float(np.float32(scale_in)),
                    scale_w=tuple(float(np.float32(s)) for s in scale_w), requant=self.requant)
        self.add(node)
        return Act(name, out)

    def requant_to(self, stem: str, x: Act, out: CodeType) -> Act:
        """Re-express ``x`` in another code type (identity Soma); free when the types already agree."""
        if x.type.same_quant(out):
            return x
        return self.soma_mul(stem, [x], [np.ones(1, np.int64)], x.scale, (1.0,), out)

    def add_acts(self, stem: str, a: Act, b: Act, sign_b: int, out: CodeType) -> Act:
        """``a + sign_b * b`` for activations in a common scale (see the module docstring).

        Refused when the operands' own rounding dwarfs the result's grid (:func:`check_cancellation`)."""
        check_cancellation(a, b, out)
        sa, sb = a.scale, b.scale
        if sa == sb:
            return self.soma_mul(stem, [a, b], [np.ones(1, np.int64), sign_b * np.ones(1, np.int64)], sa, (1.0,), out)
        sc = common_scale([sa, sb], [code_span(a.type), code_span(b.type)], float(out.scale[0]))
        wa, wb = int(round(sa / sc)), int(round(sb / sc))
        return self.soma_mul(stem, [a, b], [np.array([wa]), np.array([sign_b * wb])], sc, (1.0,), out)

    def affine_const(self, stem: str, x: Act, mul: np.ndarray | None, add: np.ndarray | None, out: CodeType) -> Act:
        """``x * mul + add`` with float constants (broadcasting), as a one-input mul-form Soma.

        ``mul`` becomes 16-bit integers with one per-tensor scale; ``add`` becomes accumulator units.
        With no ``mul`` the weight is 2^12 (scale 2^-12) so the added constant keeps 12 fractional bits.
        """
        if mul is None:
            w, sw = np.full((1,), 1 << 12, np.int64), 2.0**-12
        else:
            w, sw = quantize_const_symmetric(mul)
            if not np.any(w):
                w, sw = np.zeros(np.shape(mul) or (1,), np.int64), 1.0
        bias = None
        if add is not None:
            unit = np.float64(np.float32(np.float32(x.scale) * np.float32(sw)))
            bias = np.rint(np.asarray(add, dtype=np.float64) / unit).astype(np.int64)
        return self.soma_mul(stem, [x], [w], x.scale, (sw,), out, bias)

    def decode_mac(self, stem: str, a: Act, b: Act, form: str, out: CodeType) -> Act:
        name = self.fresh(stem)
        self.add(DecodeMAC(name=name, inputs=(a.name, b.name), type=out, form=form, requant=self.requant))  # type: ignore[arg-type]
        return Act(name, out)

    def asnc_lut(self, stem: str, x: Act, function: str, params: tuple[float, ...], out: CodeType,
                 samples: np.ndarray | None = None) -> Act:
        """Exact lookup-table ASNC node: one segment per input code, slope 0,
        intercept = quantize(f(dequantize(code))); ``samples`` (real calibration inputs) -> histogram."""
        table = ASNCTable.lookup_table(function, input_q=x.type, output_q=out, params=params)
        name = self.fresh(stem)
        hist = None
        if samples is not None and np.size(samples):
            from lasercc.semantics.quant import quantize

            codes = quantize(np.asarray(samples, np.float32), x.scale, x.zp, x.type.bits)
            hist = self.const(name + ".hist", np.bincount(codes.ravel(), minlength=x.type.hi + 1).astype(np.int64))
        node, consts = table.to_node(name, x.name, out, histogram=hist)
        for k, v in consts.items():
            self._used.add(k)
            a = np.asarray(v)
            self.consts[k] = small_int(a) if a.dtype.kind in "iu" else a  # 16-bit tables: int32, not int64
        self.add(node)
        assert isinstance(node, ASNCSegment)
        return Act(name, out)


def code_span(t: CodeType) -> int:
    """The largest ``|code - zero_point|`` of a per-tensor code type."""
    z = int(t.zero_point[0])
    return max(z - t.lo, t.hi - z)


def common_scale(mags: list[float], spans: list[int], out_scale: float, extra: float = 0.0) -> float:
    """The common fine scale ``s_c`` of a sum ``sum_i c_i x_i`` of activations in one Soma (``mags[i]`` is
    ``|c_i| * s_i``, ``spans[i]`` the largest ``|code - zp|`` of ``x_i``; ``extra`` the largest constant added, in
    real units).

    Each integer weight ``round(mag_i / s_c)`` is off by at most half a unit, so the sum is off by up to
    ``sum_i spans_i * s_c / 2`` before the result's own rounding. ``min(mags) / 2^10`` keeps that below a quarter
    of the result's step for 8-bit operands; 16-bit operands span 2^15 codes, and a sum that cancels (a variance
    ``E[x^2] - E[x]^2``) has a result step finer than its operands': there ``s_c`` is refined until the bound is a
    quarter step (the variance was 52 result steps off at 16 bits before), as far as the weight limit
    (:data:`ADD_MAX_WEIGHT`) and the accumulator (below 2^45, from the spans) allow."""
    sc = min(mags) / (1 << ADD_FINE_BITS)
    need = out_scale / (2.0 * max(sum(spans), 1))
    if need < sc:
        acc = (sum(m * q for m, q in zip(mags, spans)) + abs(extra)) / float(1 << 45)
        sc = max(need, acc)
    if max(mags) / sc > ADD_MAX_WEIGHT:
        sc = max(mags) / ADD_MAX_WEIGHT
    return float(np.float32(sc))


# A sum/difference of two activations carries their rounding (half a code step each). When that is more than
# this many steps of the result at min(operand, result) bits, the result's low bits are noise: typically
# x - max(x) (an expanded softmax) of an input whose rows sit on a large offset (ONNX's
# test_softmax_large_number_expanded: 16-bit steps of 0.15 for a result spanning 3).
CANCELLATION_STEPS = 256


def check_cancellation(a: Act, b: Act, out: CodeType) -> None:
    """Refuse ``a +- b`` whose operands' rounding alone exceeds :data:`CANCELLATION_STEPS` result steps."""
    from lasercc.frontends.onnx.load import FrontendError

    bits = min(a.type.bits, b.type.bits, out.bits)
    span = float(out.scale[0]) * ((1 << out.bits) - 1)
    step = span / ((1 << bits) - 1)
    err = (a.scale + b.scale) / 2
    if err > CANCELLATION_STEPS * step:
        raise FrontendError(
            f"the sum/difference of two activations loses its precision: the operands' code steps ({a.scale:.3g}, "
            f"{b.scale:.3g}) are coarser than {CANCELLATION_STEPS} steps of the result's {bits}-bit range "
            f"(spanning {span:.3g}); the operands' range is dominated by a large common offset that cancels. "
            "Narrow the operands' range or use more bits")


def with_shape(t: CodeType, shape: tuple[int, ...]) -> CodeType:
    return code_type(t.bits, t.scale[0], t.zero_point[0], shape)
