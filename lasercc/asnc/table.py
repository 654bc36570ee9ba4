"""``ASNCTable``: a fitted integer ASNC table, its errors, and its IR node form.

The table only ever evaluates through :func:`lasercc.semantics.asnc_evaluate` -- the one
definition of the integer rule -- so what a fit reports is what every backend computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lasercc.asnc.distribution import ASNCFitError, Q, as_q
from lasercc.asnc.functions import RealFn, resolve
from lasercc.ir.nodes import ASNC_LIMIT_BITS, ASNCSegment
from lasercc.ir.types import CodeType
from lasercc.semantics.asnc import asnc_evaluate
from lasercc.semantics.quant import dequantize, quantize


def exact_lut(f: RealFn, in_q: Q, out_q: Q) -> np.ndarray:
    """The exact quantized function on every input code: quantize(f(dequantize(x))) (int64).

    Dequantize and quantize are the shared rules (float32, as onnxruntime), f runs in float64.
    """
    x = np.arange(1 << in_q.bits, dtype=np.int64)
    u = dequantize(x, in_q.scale, in_q.zero_point).astype(np.float64)
    return quantize(f(u), out_q.scale, out_q.zero_point, out_q.bits)


@dataclass(frozen=True, eq=False)
class ASNCTable:
    """A piecewise-affine integer table for one nonlinearity and its measured errors.

    Error fields (real units, output dequantized; ``None`` when not measured):
    ``mse`` -- against the exact float function on the fit's input distribution (on the calibration
    samples when given); ``mse_lut`` -- against the exact quantized lookup table, weighted by the
    same distribution; ``mse_floor`` -- the lookup table's own ``mse`` (no table of these code types
    can do much better: it is the quantization floor); ``max_code_error`` -- the largest |code
    difference| from the lookup table over every input code.
    """

    function: str
    params: tuple[float, ...]
    in_q: Q | None
    out_q: Q
    thresholds: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray
    shift: int
    breakpoints: str = "adaptive"
    distribution: str = ""
    mse: float | None = None
    mse_lut: float | None = None
    mse_floor: float | None = None
    max_code_error: int | None = None
    fit_seconds: float | None = None
    info: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k in ("thresholds", "slopes", "intercepts"):
            a = np.array(getattr(self, k), dtype=np.int64).ravel()
            a.flags.writeable = False
            object.__setattr__(self, k, a)
        if not (self.slopes.size == self.intercepts.size == self.thresholds.size + 1):
            raise ASNCFitError(f"{self.thresholds.size} thresholds need {self.thresholds.size + 1} slopes and "
                               f"intercepts, got {self.slopes.size} and {self.intercepts.size}")
        if not 0 <= self.shift <= 62:
            raise ASNCFitError(f"shift must be in [0, 62], got {self.shift}")

    @property
    def n_segments(self) -> int:
        return int(self.slopes.size)

    def evaluate(self, codes: np.ndarray) -> np.ndarray:
        """Output codes for input codes, by the shared integer rule."""
        return asnc_evaluate(codes, self.thresholds, self.slopes, self.intercepts, self.shift, self.out_q.bits)

    def real_fn(self, samples: np.ndarray) -> np.ndarray:
        """What the table computes on real inputs: quantize, evaluate, dequantize (float64)."""
        if self.in_q is None:
            raise ASNCFitError("this table has no input code type (give input_type to from_node)")
        x = quantize(np.asarray(samples, dtype=np.float64), self.in_q.scale, self.in_q.zero_point, self.in_q.bits)
        return dequantize(self.evaluate(x), self.out_q.scale, self.out_q.zero_point).astype(np.float64)

    def mse_on(self, samples: np.ndarray, fn: str | RealFn | None = None) -> float:
        """MSE against the exact float function on (e.g. held-out) real samples, in real units.

        ``fn`` defaults to the registered function the table names.
        """
        _, f = resolve(self.function if fn is None else fn, self.params if fn is None else ())
        s = np.asarray(samples, dtype=np.float64)
        return float(np.mean((self.real_fn(s) - f(s)) ** 2))

    def max_abs_acc(self, in_bits: int | None = None) -> int:
        """Bound on |a*x + c| over the input code range (must stay below 2^62)."""
        bits = in_bits if in_bits is not None else (self.in_q.bits if self.in_q else 62)
        if self.slopes.size == 0:
            return 0
        return int(np.abs(self.slopes).max()) * (1 << bits) + int(np.abs(self.intercepts).max())

    # ---- IR form -------------------------------------------------------------------------
    def to_node(self, name: str, input_name: str, out_type: CodeType, graph_constants_prefix: str | None = None,
                histogram: str | None = None) -> tuple[ASNCSegment, dict[str, np.ndarray]]:
        """The ASNCSegment node and the constants it names (``<prefix>.thresholds`` etc.)."""
        oq = as_q(out_type, "output type")
        if (oq.bits, oq.scale32, oq.zero_point) != (self.out_q.bits, self.out_q.scale32, self.out_q.zero_point):
            raise ASNCFitError(f"node output type {oq} differs from the table's output code type {self.out_q}")
        p = graph_constants_prefix or name
        consts = {f"{p}.thresholds": self.thresholds.copy(), f"{p}.slopes": self.slopes.copy(),
                  f"{p}.intercepts": self.intercepts.copy()}
        node = ASNCSegment(name=name, inputs=(input_name,), type=out_type, function=self.function,
                           thresholds=f"{p}.thresholds", slopes=f"{p}.slopes", intercepts=f"{p}.intercepts",
                           shift=self.shift, params=tuple(float(v) for v in self.params), histogram=histogram)
        return node, consts

    @classmethod
    def from_node(cls, node: ASNCSegment, constants: Mapping[str, np.ndarray],
                  input_type: object | None = None) -> ASNCTable:
        """Read a table back from a node and its constants (errors unknown: fields are None)."""
        try:
            t, s, c = (np.asarray(constants[k]) for k in (node.thresholds, node.slopes, node.intercepts))
        except KeyError as e:
            raise ASNCFitError(f"ASNC node %{node.name} names missing constant {e}") from None
        return cls(function=node.function, params=tuple(node.params),
                   in_q=None if input_type is None else as_q(input_type, "input type"),
                   out_q=as_q(node.type, "output type"), thresholds=t, slopes=s, intercepts=c, shift=node.shift,
                   breakpoints="node")

    # ---- the ideal reference ---------------------------------------------------------------
    @classmethod
    def lookup_table(cls, fn: str | RealFn, *, input_q: object, output_q: object,
                     params: tuple[float, ...] = ()) -> ASNCTable:
        """The exact quantized function as a table: one segment per input code, slope 0.

        This is LASER's "ideal SNN" (Table 6): its only error is quantization.
        """
        in_q, out_q = as_q(input_q, "input_q"), as_q(output_q, "output_q")
        if in_q.bits > 24:
            raise ASNCFitError(f"a lookup table over {in_q.bits}-bit inputs has 2^{in_q.bits} entries; use fit()")
        name, f = resolve(fn, params)
        lut = exact_lut(f, in_q, out_q)
        n = lut.size
        t = cls(function=name, params=tuple(params), in_q=in_q, out_q=out_q,
                thresholds=np.arange(1, n, dtype=np.int64), slopes=np.zeros(n, np.int64), intercepts=lut, shift=0,
                breakpoints="lut", mse_lut=0.0, max_code_error=0)
        assert t.max_abs_acc() < 1 << ASNC_LIMIT_BITS
        return t
