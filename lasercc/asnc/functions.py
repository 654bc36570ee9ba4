"""The real functions an ASNC segment can approximate, by name.

A node records ``function`` (a name from :data:`FUNCTIONS`) and numeric ``params`` so that a pass
can refit it later from the graph alone; that is why functions live in a registry rather than as
closures. Every function takes and returns float64 arrays and is defined on the whole real line
(values outside the natural domain -- ``1/0``, ``sqrt`` of a negative -- are mapped to a finite,
documented value), because a fitter evaluates it on every input code, including codes that
calibration never saw. numpy has no ``erf``; we vectorise :func:`math.erf` (exact to the last
bit, ~10 ms for 2^16 points) instead of depending on scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lasercc.errors import LasercError

RealFn = Callable[..., np.ndarray]

_erf_ufunc = np.frompyfunc(math.erf, 1, 1)
_BIG = 1e30  # stands in for +inf (1/0): large enough to saturate any output code range


class UnknownFunctionError(LasercError):
    """An ASNC function name that is not in the registry."""


def erf(x: np.ndarray) -> np.ndarray:
    """Gauss error function, elementwise (float64)."""
    xa = np.asarray(x, dtype=np.float64)
    return np.asarray(_erf_ufunc(xa), dtype=np.float64).reshape(xa.shape)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, computed without overflow for large |x|."""
    xa = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(xa))
    return np.where(xa >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU / swish: x * sigmoid(x)."""
    xa = np.asarray(x, dtype=np.float64)
    return xa * sigmoid(xa)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, exact (erf) form: x/2 * (1 + erf(x/sqrt 2))."""
    xa = np.asarray(x, dtype=np.float64)
    return 0.5 * xa * (1.0 + erf(xa / math.sqrt(2.0)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (as in GPT-2 / ONNX Gelu approximate='tanh')."""
    xa = np.asarray(x, dtype=np.float64)
    return 0.5 * xa * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (xa + 0.044715 * xa**3)))


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(np.asarray(x, dtype=np.float64))


def exp(x: np.ndarray) -> np.ndarray:
    """e^x; overflow saturates to a huge finite value (the output clip handles it)."""
    with np.errstate(over="ignore"):
        return np.minimum(np.exp(np.asarray(x, dtype=np.float64)), _BIG)


def reciprocal(x: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """1 / (x + eps) for x + eps > 0; non-positive arguments give a huge value (Softmax sums are > 0)."""
    d = np.asarray(x, dtype=np.float64) + eps
    with np.errstate(divide="ignore"):
        return np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), _BIG)


def rsqrt(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """1 / sqrt(x + eps) (LayerNorm/RMSNorm); non-positive arguments give a huge value."""
    d = np.asarray(x, dtype=np.float64) + eps
    return np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), _BIG)


def sqrt(x: np.ndarray) -> np.ndarray:
    """sqrt(max(x, 0))."""
    return np.sqrt(np.maximum(np.asarray(x, dtype=np.float64), 0.0))


def log(x: np.ndarray) -> np.ndarray:
    """Natural log for x > 0; non-positive arguments give a huge negative value (the output clip handles it)."""
    d = np.asarray(x, dtype=np.float64)
    return np.where(d > 0, np.log(np.where(d > 0, d, 1.0)), -_BIG)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def softplus(x: np.ndarray) -> np.ndarray:
    xa = np.asarray(x, dtype=np.float64)
    return np.maximum(xa, 0.0) + np.log1p(np.exp(-np.abs(xa)))


def clip(x: np.ndarray, lo: float = -np.inf, hi: float = np.inf) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.float64), lo, hi)


def leaky_relu(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    xa = np.asarray(x, dtype=np.float64)
    return np.where(xa >= 0, xa, alpha * xa)


def power(x: np.ndarray, p: float = 1.0) -> np.ndarray:
    """x ** p; undefined values (negative base, fractional p) give 0 -- the input range is planned positive."""
    with np.errstate(all="ignore"):
        return np.nan_to_num(np.power(np.asarray(x, dtype=np.float64), p), nan=0.0, posinf=0.0, neginf=0.0)


def hard_sigmoid(x: np.ndarray, alpha: float = 0.2, beta: float = 0.5) -> np.ndarray:
    return np.clip(alpha * np.asarray(x, dtype=np.float64) + beta, 0.0, 1.0)


def quick_gelu(x: np.ndarray, alpha: float = 1.702) -> np.ndarray:
    """x * sigmoid(alpha x) (com.microsoft QuickGelu, CLIP)."""
    xa = np.asarray(x, dtype=np.float64)
    return xa * sigmoid(alpha * xa)


def equal_to(x: np.ndarray, c: float = 0.0) -> np.ndarray:
    """1 where x == c else 0 (integer comparisons on exact codes)."""
    return (np.asarray(x, dtype=np.float64) == c).astype(np.float64)


def less(x: np.ndarray, c: float = 0.0) -> np.ndarray:
    """1 where x < c else 0 (ONNX Less of an activation and a constant / of a difference against 0)."""
    return (np.asarray(x, dtype=np.float64) < c).astype(np.float64)


def greater(x: np.ndarray, c: float = 0.0) -> np.ndarray:
    """1 where x > c else 0."""
    return (np.asarray(x, dtype=np.float64) > c).astype(np.float64)


def less_equal(x: np.ndarray, c: float = 0.0) -> np.ndarray:
    """1 where x <= c else 0."""
    return (np.asarray(x, dtype=np.float64) <= c).astype(np.float64)


def greater_equal(x: np.ndarray, c: float = 0.0) -> np.ndarray:
    """1 where x >= c else 0."""
    return (np.asarray(x, dtype=np.float64) >= c).astype(np.float64)


def wrap_int(x: np.ndarray, bits: float = 8.0, signed: float = 1.0) -> np.ndarray:
    """An integer cast to a ``bits``-bit (signed or unsigned) integer type: two's-complement wrap-around,
    as ONNX Cast between integer types (and C) does; non-integers are truncated toward zero first."""
    m = 1 << int(bits)
    v = np.trunc(np.asarray(x, dtype=np.float64)).astype(np.int64) % m
    if signed:
        v = np.where(v >= m >> 1, v - m, v)
    return v.astype(np.float64)


def _f64(f: Callable[[np.ndarray], np.ndarray]) -> RealFn:
    def g(x: np.ndarray) -> np.ndarray:
        return f(np.asarray(x, dtype=np.float64))

    return g


@dataclass(frozen=True)
class FunctionSpec:
    """A registered function: the float64 callable and its parameter names with defaults."""

    name: str
    fn: RealFn
    param_names: tuple[str, ...] = ()
    defaults: tuple[float, ...] = ()

    def __call__(self, x: np.ndarray, params: tuple[float, ...] = ()) -> np.ndarray:
        if len(params) > len(self.param_names):
            raise LasercError(f"ASNC function {self.name!r} takes {len(self.param_names)} parameter(s) "
                              f"{list(self.param_names)}, got {len(params)}")
        full = tuple(params) + self.defaults[len(params):]
        return np.asarray(self.fn(x, *full), dtype=np.float64)


FUNCTIONS: dict[str, FunctionSpec] = {
    s.name: s
    for s in (
        FunctionSpec("gelu", gelu),
        FunctionSpec("gelu_tanh", gelu_tanh),
        FunctionSpec("silu", silu),
        FunctionSpec("sigmoid", sigmoid),
        FunctionSpec("tanh", tanh),
        FunctionSpec("exp", exp),
        FunctionSpec("reciprocal", reciprocal, ("eps",), (0.0,)),
        FunctionSpec("rsqrt", rsqrt, ("eps",), (1e-5,)),
        FunctionSpec("erf", erf),
        FunctionSpec("sqrt", sqrt),
        FunctionSpec("log", log),
        FunctionSpec("relu", relu),
        FunctionSpec("softplus", softplus),
        # ONNX elementwise ops the frontend lowers to lookup tables (registered here, not in the frontend,
        # so that a process that only loads an artifact can still refit its tables by name)
        FunctionSpec("clip", clip, ("lo", "hi"), (-np.inf, np.inf)),
        FunctionSpec("leaky_relu", leaky_relu, ("alpha",), (0.01,)),
        FunctionSpec("pow", power, ("p",), (1.0,)),
        FunctionSpec("hard_sigmoid", hard_sigmoid, ("alpha", "beta"), (0.2, 0.5)),
        FunctionSpec("neg", _f64(np.negative)),
        FunctionSpec("abs", _f64(np.abs)),
        FunctionSpec("sin", _f64(np.sin)),  # rotary tables (RoPE)
        FunctionSpec("cos", _f64(np.cos)),
        FunctionSpec("nonzero", _f64(lambda x: (x != 0).astype(np.float64))),
        FunctionSpec("step", _f64(lambda x: (x >= 0).astype(np.float64))),
        FunctionSpec("quick_gelu", quick_gelu, ("alpha",), (1.702,)),
        FunctionSpec("equal_to", equal_to, ("c",), (0.0,)),
        # exact integer/bool data (value class b): comparisons, float -> int casts (truncation toward zero, ONNX
        # Cast), integer casts to a narrower type (wrap-around)
        FunctionSpec("less", less, ("c",), (0.0,)),
        FunctionSpec("greater", greater, ("c",), (0.0,)),
        FunctionSpec("less_equal", less_equal, ("c",), (0.0,)),
        FunctionSpec("greater_equal", greater_equal, ("c",), (0.0,)),
        FunctionSpec("trunc", _f64(np.trunc)),
        FunctionSpec("wrap_int", wrap_int, ("bits", "signed"), (8.0, 1.0)),
    )
}


def register_function(name: str, fn: RealFn, param_names: tuple[str, ...] = (),
                      defaults: tuple[float, ...] = ()) -> None:
    """Add a named function so that graphs naming it can be (re)fitted by the ``asnc-fit`` pass."""
    FUNCTIONS[name] = FunctionSpec(name, fn, tuple(param_names), tuple(defaults))


def resolve(fn: str | RealFn, params: tuple[float, ...] = ()) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """Turn a registry name or a user callable into ``(name, f)`` with f: float64 array -> float64 array.

    A callable's name is its ``__name__`` (recorded in the node so the graph says what it holds;
    such a node cannot be refitted from the graph alone unless the name is registered).
    """
    if isinstance(fn, str):
        spec = FUNCTIONS.get(fn)
        if spec is None:
            raise UnknownFunctionError(f"unknown ASNC function {fn!r}; known: {', '.join(sorted(FUNCTIONS))}")
        p = tuple(float(v) for v in params)
        spec(np.zeros(1), p)  # validates the parameter count once, up front
        return fn, lambda x: spec(x, p)
    if not callable(fn):
        raise LasercError(f"ASNC function must be a name or a callable, got {type(fn).__name__}")
    name = getattr(fn, "__name__", "callable")
    if not isinstance(name, str) or not name.isidentifier() or name == "<lambda>":
        name = "callable"

    def call(x: np.ndarray) -> np.ndarray:
        y = np.asarray(fn(np.asarray(x, dtype=np.float64)), dtype=np.float64)
        if y.shape != np.shape(x):
            raise LasercError(f"ASNC callable {name!r} must map an array to an array of the same shape")
        return y

    return name, call
