"""The exceptions of the two evaluators the frontend runs (onnxruntime and ``onnx.reference``).

Why one place: calibration falls back from onnxruntime to running nodes one by one, and from there to
``onnx.reference``, and the chain rule evaluates regions with ``onnx.reference``. Those fallbacks catch what the
evaluators raise when they cannot run a model -- and nothing else, so a bug in lasercc still surfaces.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

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


def reference_evaluator(proto: Any, **kw: Any) -> Any:
    """``onnx.reference.ReferenceEvaluator(proto, **kw)`` with lasercc's replacements of reference kernels that
    fail on valid models (:func:`_overrides`). Every frontend use of ``onnx.reference`` goes through here, so a
    constant fold, a calibration fallback and a chain-rule evaluation agree."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(proto, new_ops=list(_overrides()), **kw)


@cache
def _overrides() -> tuple[type, ...]:
    """Reference kernels replaced by their definition in NumPy.

    ``GatherElements``: onnx's kernel is ``numpy.choose``, which takes at most 63 choices, so gathering along an
    axis longer than that raised (GPT-J's ``embed_positions`` table of ``n_positions`` rows, gathered by position
    ids). ONNX semantics: ``out[i][j][k] = data[index[i][j][k]][j][k]`` along ``axis`` (here), negative indices
    counting from the end, an index outside ``[-d, d)`` an error."""
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        op_domain = ""

        def _run(self, data, indices, axis=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
            ax = int(axis or 0)
            ax = ax + data.ndim if ax < 0 else ax
            d = data.shape[ax]
            idx = np.asarray(indices, np.int64)
            if idx.size and (idx.min() < -d or idx.max() >= d):
                raise IndexError(f"GatherElements index outside [-{d}, {d}) along axis {ax}")
            return (np.take_along_axis(data, np.where(idx < 0, idx + d, idx), ax),)

    return (GatherElements,)
