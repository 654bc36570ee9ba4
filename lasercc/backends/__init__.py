"""Backends: executors that run a spiking graph. ``get_executor`` picks one by name."""

from __future__ import annotations

from lasercc.backends.base import ExecResult, Executor, impl
from lasercc.errors import LasercError

BACKENDS = ("numpy", "torch", "lava")


def get_executor(backend: str = "numpy", mode: str = "codes", device: str = "cpu",
                 collect_stats: bool = True) -> Executor:
    """An executor for ``backend`` in ``mode`` (``codes`` or ``spikes``)."""
    if mode not in ("codes", "spikes"):
        raise LasercError(f"unknown mode {mode!r}: use 'codes' or 'spikes'")
    if backend == "numpy":
        if device != "cpu":
            raise LasercError("the numpy backend runs on the CPU only (use --backend torch for CUDA)")
        from lasercc.backends.numpy_ref import numpy_executor

        return numpy_executor(mode, collect_stats)
    if backend == "torch":
        try:
            from lasercc.backends.torch_exec import torch_executor
        except ImportError as e:
            raise LasercError(f"the torch backend is not available: {e}. Install it with "
                              "pip install 'lasercc[torch]'") from None
        return torch_executor(mode=mode, device=device, collect_stats=collect_stats)
    raise LasercError(f"unknown backend {backend!r} (available: numpy, torch; lava runs through "
                      "`lasercc simulate --backend lava`)")


__all__ = ["BACKENDS", "ExecResult", "Executor", "get_executor", "impl"]
