"""The exceptions of the two evaluators the frontend runs (onnxruntime and ``onnx.reference``).

Why one place: calibration falls back from onnxruntime to running nodes one by one, and from there to
``onnx.reference``, and the chain rule evaluates regions with ``onnx.reference``. Those fallbacks catch what the
evaluators raise when they cannot run a model -- and nothing else, so a bug in lasercc still surfaces.
"""

from __future__ import annotations

from functools import cache

# what onnx.reference raises for an op, opset, dtype or attribute it does not implement or cannot evaluate
REFERENCE_ERRORS: tuple[type[Exception], ...] = (NotImplementedError, RuntimeError, ValueError, TypeError, KeyError,
                                                 IndexError, AttributeError, ZeroDivisionError, OverflowError)


@cache
def ort_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's exception classes (``Fail``, ``InvalidArgument``, ``NotImplemented``, ``InvalidGraph``, ...,
    which derive from ``Exception`` directly) and what its Python layer raises (RuntimeError, ValueError,
    TypeError)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return (*own, RuntimeError, ValueError, TypeError)
