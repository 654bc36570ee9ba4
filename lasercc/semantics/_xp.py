"""The array namespace the semantics functions compute in: NumPy or torch, picked from the data.

The rules in :mod:`lasercc.semantics` are written once against the small set of operations
below, so the torch executor runs *the same* float32 multiply, round-half-to-even, clip, int64
shift and floor arithmetic as the NumPy reference -- not a port that could drift. NumPy stays the
default and its results are unchanged: :class:`NumpyOps` is a thin veneer over the very NumPy
calls the functions made before. torch is imported lazily, only when a torch tensor arrives, so
``import lasercc`` never needs torch.

Parameters (scales, zero points, ASNC tables) may be NumPy arrays even when the data is a torch
tensor: :meth:`TorchOps.asarray` moves them to the data's device.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".", 1)[0] == "torch"


class NumpyOps:
    """NumPy operations, exactly the calls the semantics functions always made."""

    name = "numpy"
    int64: Any = np.int64
    float32: Any = np.float32
    float64: Any = np.float64
    uint8: Any = np.uint8
    bool_: Any = np.bool_

    def asarray(self, x: Any, dtype: Any = None) -> np.ndarray:
        return np.asarray(x, dtype=dtype)

    def astype(self, x: np.ndarray, dtype: Any) -> np.ndarray:
        return x.astype(dtype)

    def is_integer(self, x: np.ndarray) -> bool:
        return x.dtype.kind in "iu"

    def rint(self, x: np.ndarray) -> np.ndarray:
        return np.rint(x)

    def clip(self, x: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
        return np.clip(x, lo, hi)

    def where(self, cond: Any, a: Any, b: Any) -> np.ndarray:
        return np.where(cond, a, b)

    def nan_to_zero(self, x: np.ndarray) -> np.ndarray:
        return np.nan_to_num(x, nan=0.0)

    def searchsorted_right(self, sorted_1d: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.searchsorted(sorted_1d, x, side="right")

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def errstate(self) -> Any:
        return np.errstate(over="ignore", invalid="ignore")

    def any(self, x: np.ndarray) -> bool:
        return bool(np.any(x))

    def min_max(self, x: np.ndarray) -> tuple[int, int]:
        return int(x.min()), int(x.max())

    def is_binary(self, x: np.ndarray) -> bool:
        return bool(np.isin(x, (0, 1)).all())


class TorchOps:
    """The same operations in torch, on the device of the data.

    ``torch.round`` rounds half to even like ``np.rint``; int64 ``>>`` is an arithmetic shift;
    float32 ``*`` and ``/`` are single IEEE operations on CPU and CUDA (PyTorch does not build with
    fast-math), so every rule below yields the NumPy bits.
    """

    name = "torch"

    def __init__(self, device: Any):
        import torch

        self.torch = torch
        self.device = device
        self.int64 = torch.int64
        self.float32 = torch.float32
        self.float64 = torch.float64
        self.uint8 = torch.uint8
        self.bool_ = torch.bool

    def _dtype(self, dtype: Any) -> Any:
        """Accept NumPy dtypes too, so a rule can say ``np.int64`` once for both namespaces."""
        if dtype is None or isinstance(dtype, self.torch.dtype):
            return dtype
        table = {np.dtype(np.int64): self.int64, np.dtype(np.float32): self.float32,
                 np.dtype(np.float64): self.float64, np.dtype(np.uint8): self.uint8,
                 np.dtype(np.bool_): self.bool_}
        return table[np.dtype(dtype)]

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        dt = self._dtype(dtype)
        if _is_torch(x):
            return x if dt is None or x.dtype == dt else x.to(dt)
        arr = np.asarray(x)
        if arr.size <= _CACHE_MAX_ELEMS:  # parameters: reuse the device copy (no host->device copy per call)
            key = (arr.dtype.str, arr.shape, arr.tobytes(), str(self.device), dt)
            t = _PARAM_CACHE.get(key)
            if t is None:
                with self.torch.inference_mode(False):  # usable later by autograd too
                    t = self.torch.as_tensor(np.array(arr), device=self.device)
                    t = t if dt is None or t.dtype == dt else t.to(dt)
                if len(_PARAM_CACHE) >= _CACHE_LEN:
                    _PARAM_CACHE.pop(next(iter(_PARAM_CACHE)))
                _PARAM_CACHE[key] = t
            return t
        t = self.torch.as_tensor(np.array(arr), device=self.device)
        return t if dt is None or t.dtype == dt else t.to(dt)

    def astype(self, x: Any, dtype: Any) -> Any:
        return x.to(self._dtype(dtype))

    def is_integer(self, x: Any) -> bool:
        return not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == self.torch.bool)

    def rint(self, x: Any) -> Any:
        return self.torch.round(x)  # half to even, as np.rint

    def clip(self, x: Any, lo: Any, hi: Any) -> Any:
        t = self.torch
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return t.clamp(x, lo, hi)
        return t.minimum(t.maximum(x, self.asarray(lo, x.dtype)), self.asarray(hi, x.dtype))

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.torch.where(cond, a, b)

    def nan_to_zero(self, x: Any) -> Any:
        return self.torch.nan_to_num(x, nan=0.0)

    def searchsorted_right(self, sorted_1d: Any, x: Any) -> Any:
        return self.torch.searchsorted(sorted_1d.contiguous(), x.contiguous(), right=True)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.torch.zeros(shape, dtype=self._dtype(dtype), device=self.device)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.torch.empty(shape, dtype=self._dtype(dtype), device=self.device)

    def errstate(self) -> Any:
        return contextlib.nullcontext()

    def any(self, x: Any) -> bool:
        return bool(self.torch.any(self.asarray(x)))

    def min_max(self, x: Any) -> tuple[int, int]:
        return int(x.min()), int(x.max())

    def is_binary(self, x: Any) -> bool:
        return bool(((x == 0) | (x == 1)).all())


_NUMPY = NumpyOps()
# Small NumPy parameters (scales, zero points, multipliers, ASNC tables) converted for a device,
# keyed by content. The tensors are never written to (every rule builds new tensors).
_CACHE_MAX_ELEMS = 4096
_CACHE_LEN = 4096
_PARAM_CACHE: dict[tuple, Any] = {}


def namespace(*arrays: Any) -> NumpyOps | TorchOps:
    """The ops for these arrays: torch if any of them is a torch tensor, else NumPy."""
    for a in arrays:
        if _is_torch(a):
            return TorchOps(a.device)
    return _NUMPY
