"""The array namespace the generic executors walk a graph in: NumPy or torch.

:mod:`lasercc.semantics._xp` gives the semantics rules their arithmetic (multiply, round, clip,
shift...). The executors of :mod:`.exec_codes` and :mod:`.exec_spikes` need a few more operations
to move data and to step spike trains (permute, concatenate, slice, take, max along an axis);
those are added here, so one executor body runs on both. Each operation is the exact call the
per-backend executors made before, so values are unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lasercc.semantics._xp import NumpyOps, TorchOps


class NumpyXP(NumpyOps):
    """NumPy: the semantics operations plus data movement and train stepping."""

    int8: Any = np.int8

    def permute(self, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(x, axes))

    def concat(self, xs: tuple[np.ndarray, ...], axis: int) -> np.ndarray:
        return np.concatenate(xs, axis=axis)

    def slice_axis(self, x: np.ndarray, axis: int, start: int, stop: int, step: int) -> np.ndarray:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, stop, step)
        return x[tuple(idx)]

    def take(self, x: np.ndarray, indices: list[int], axis: int) -> np.ndarray:
        return np.take(x, np.asarray(indices, dtype=np.int64), axis=axis)

    def amax(self, x: np.ndarray, axis: int) -> np.ndarray:
        return x.max(axis=axis, keepdims=True)

    def any_axis(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.asarray(x.any(axis=axis, keepdims=True))

    def ones(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.ones(shape, dtype=dtype)

    def where_scalar(self, cond: np.ndarray, value: int | float, x: np.ndarray) -> np.ndarray:
        """``value`` where ``cond``, else ``x``, in ``x``'s dtype."""
        return np.where(cond, x.dtype.type(value), x)

    def as_index(self, x: np.ndarray) -> np.ndarray:
        """Indices usable by ``table[x]``: integer arrays as they are, exact float codes as int64."""
        x = np.asarray(x)
        return x if x.dtype.kind in "iu" else x.astype(np.int64)

    def count_nonzero(self, x: np.ndarray) -> int:
        return int(np.count_nonzero(x))

    def numel(self, x: np.ndarray) -> int:
        return int(x.size)

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x)


class TorchXP(TorchOps):
    """torch on one device: the same operations (``torch.round`` etc. come from :class:`TorchOps`)."""

    def __init__(self, device: Any):
        super().__init__(device)
        self.int8 = self.torch.int8

    def _dtype(self, dtype: Any) -> Any:
        if dtype is not None and not isinstance(dtype, self.torch.dtype) and np.dtype(dtype) == np.int8:
            return self.int8  # signed spike trains
        return super()._dtype(dtype)

    def permute(self, x: Any, axes: tuple[int, ...]) -> Any:
        return x.permute(axes).contiguous()

    def concat(self, xs: tuple[Any, ...], axis: int) -> Any:
        return self.torch.cat(xs, dim=axis)

    def slice_axis(self, x: Any, axis: int, start: int, stop: int, step: int) -> Any:
        idx = range(*slice(start, stop, step).indices(x.shape[axis]))
        if step > 0:  # torch basic slicing takes positive steps only
            sl = [slice(None)] * x.dim()
            sl[axis] = slice(idx.start, idx.start + len(idx) * step, step) if len(idx) else slice(0, 0)
            return x[tuple(sl)]
        return x.index_select(axis, self.torch.as_tensor(list(idx), dtype=self.torch.int64, device=x.device))

    def take(self, x: Any, indices: list[int], axis: int) -> Any:
        return x.index_select(axis, self.torch.as_tensor(indices, dtype=self.torch.int64, device=x.device))

    def amax(self, x: Any, axis: int) -> Any:
        return x.amax(dim=axis, keepdim=True)

    def any_axis(self, x: Any, axis: int) -> Any:
        return x.any(dim=axis, keepdim=True)

    def ones(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.torch.ones(shape, dtype=self._dtype(dtype), device=self.device)

    def where_scalar(self, cond: Any, value: int | float, x: Any) -> Any:
        return self.torch.where(cond, self.torch.tensor(value, dtype=x.dtype, device=x.device), x)

    def as_index(self, x: Any) -> Any:
        return x if x.dtype == self.torch.int64 else x.to(self.torch.int64)  # uint8 would index as a mask

    def count_nonzero(self, x: Any) -> int:
        return int(self.torch.count_nonzero(x))

    def numel(self, x: Any) -> int:
        return int(x.numel())

    def to_host(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()


NUMPY_XP = NumpyXP()
