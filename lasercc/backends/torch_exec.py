"""The torch executor: the NumPy reference's codes, bit for bit, on CPU or CUDA, batched.

Both modes are the generic executors of :mod:`.exec_codes` and :mod:`.exec_spikes` -- the very
code the NumPy backend runs -- on the torch array namespace, and they call the same
:mod:`lasercc.semantics` functions (they accept torch tensors), so quantization, requantization
(``ort`` and ``fixed``), BSE and ASNC are *one* definition run on the device. What this module
adds is only the hooks: device placement, input checks, and how to multiply fast and exactly:

* integer matmuls go through :mod:`.torch_matmul`, which picks an exact engine by a provable
  bound (float64 on CPU; fp16 operands with fp32 accumulation, fp32 without TF32, or
  ``torch._int_mm`` on CUDA), slicing wide codes and tiling K where one product would not be
  exact; nothing ever falls back silently to a path that changes bits;
* every op is batched over rows and tokens (no Python loop per token or per neuron); the only
  loops run over timesteps (``spikes`` mode), operand slices and K tiles.

Modes: ``codes`` (int64 code tensors) and ``spikes`` (uint8 BSE trains ``(bits, *shape)``,
stepped through time on the device, exactly like :class:`.numpy_ref.NumpySpikes`).

Statistics: ``collect_stats`` copies every node's codes to the host and calls
:func:`.stats.node_stats` (the one definition); it costs a device sync per node, so the factory
default is off. :func:`lasercc.runtime.run_graph` passes its own ``collect_stats`` (on unless the
caller says otherwise).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from lasercc.backends.exec_codes import CodesExecutor
from lasercc.backends.exec_spikes import SpikesExecutor
from lasercc.backends.generic import XPExecutor
from lasercc.backends.torch_matmul import (
    ConstMatmul,
    MatmulPlan,
    PrecisionError,
    default_engine,
    dynamic_matmul,
    plan_dynamic_matmul,
)
from lasercc.backends.xp import TorchXP
from lasercc.errors import InputError, LasercError
from lasercc.ir.data import widen_float
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import DecodeMAC, Input, Node, Soma, SomaASNC
from lasercc.ir.types import CodeType, TensorType


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, or one clear error (CUDA asked for but absent, or a malformed name)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise LasercError(f"bad device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LasercError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU on this machine "
                          "(use device='cpu')")
    if dev.type not in ("cpu", "cuda"):
        raise LasercError(f"the torch backend runs on 'cpu' or 'cuda', not {dev.type!r}")
    return dev


class _TorchBackend(XPExecutor):
    """The torch hooks of the generic executors: constants on the device, exact matmul plans, input checks.

    The plans (:class:`.torch_matmul.ConstMatmul` per Soma input, :class:`.torch_matmul.MatmulPlan` per
    DecodeMAC) and the device copies of constants are cached on the executor, per graph.
    """

    name: ClassVar[str] = "torch"

    def __init__(self, device: str | torch.device = "cpu", collect_stats: bool = False, matmul: str = "auto",
                 max_products: int | None = None):
        super().__init__(collect_stats)
        self.device = resolve_device(device)
        self.xp = TorchXP(self.device)
        self.engine = default_engine(self.device, matmul)
        # Test hook: run the plans made for ``engine`` on another engine's kernels (the CPU suite
        # runs fp16/int8 plans with fp32/int64 kernels); None in normal use.
        self.run_as: str | None = None
        self.max_products = max_products

    # ---- per-graph caches -------------------------------------------------------------------
    def prepare(self, graph: Graph) -> None:
        super().prepare(graph)
        self._consts: dict[str, torch.Tensor] = {}
        self._mm: dict[tuple[str, int], ConstMatmul] = {}
        self._dyn: dict[str, MatmulPlan] = {}

    def const(self, name: str) -> torch.Tensor:
        """A graph constant on the device: int64 (bool masks stay bool)."""
        c = self._consts.get(name)
        if c is None:
            arr = self._data(name)
            arr = np.array(arr, dtype=np.bool_ if arr.dtype == np.bool_ else np.int64, copy=True)
            c = torch.as_tensor(arr, device=self.device)
            self._consts[name] = c
        return c

    def _data(self, name: str) -> np.ndarray:
        c = self.graph.constants[name]
        if not isinstance(c, np.ndarray):
            raise LasercError(f"constant @{name} has no data (shape-only graph): load the weights to run it")
        return c

    def _check_products(self, node: Node, plan: MatmulPlan) -> None:
        if self.max_products is not None and plan.products > self.max_products:
            raise PrecisionError(
                f"%{node.name}: the exact {plan.engine} path needs {plan.products} slice products "
                f"(operands too wide for one), more than max_products={self.max_products}")

    def matmul_const(self, node: Soma | SomaASNC, j: int, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Exact ``x @ W_j`` for input j of a Soma; the plan is made once per (node, input)."""
        mm = self._mm.get((node.name, j))
        if mm is None:
            w = self._data(node.weights[j]).astype(np.int64)
            mm = ConstMatmul(w, lo, hi, self.engine, self.device, self.run_as)
            self._check_products(node, mm.plan)
            self._mm[(node.name, j)] = mm
        return mm(x)

    def matmul_dyn(self, node: DecodeMAC, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Exact batched ``a @ b`` of decoded activations; ranges come from the input types."""
        plan = self._dyn.get(node.name)
        if plan is None:
            ta, tb = (self.graph.type_of(i) for i in node.inputs)
            za, zb = ta.zero_point[0], tb.zero_point[0]  # type: ignore[union-attr]
            plan = plan_dynamic_matmul(-za, ta.hi - za, -zb, tb.hi - zb, ta.shape[-1], self.engine)  # type: ignore[union-attr]
            self._check_products(node, plan)
            self._dyn[node.name] = plan
        return dynamic_matmul(a, b, plan, self.run_as)

    # ---- inputs and outputs -----------------------------------------------------------------
    def accept(self, node: Input, array: Any) -> torch.Tensor:
        """Check one input against its declared type and move it to the device."""
        t = node.type
        shape = tuple(array.shape)
        if shape != tuple(t.shape):
            raise InputError(f"input {node.name!r}: expected shape {list(t.shape)}, got {list(shape)}")
        if isinstance(array, torch.Tensor):
            x = array
        else:
            arr = widen_float(array)  # bfloat16 (ml_dtypes) data: exactly float32
            x = torch.as_tensor(arr if arr.flags.writeable else arr.copy())
        if isinstance(t, TensorType) and t.dtype == "f32":
            if not (x.dtype.is_floating_point or x.dtype in (torch.int32, torch.int64, torch.uint8, torch.bool)):
                raise InputError(f"input {node.name!r}: expected real numbers, got dtype {x.dtype}")
            return x.to(device=self.device, dtype=torch.float32)
        if x.dtype.is_floating_point or x.dtype == torch.bool or x.dtype.is_complex:
            raise InputError(f"input {node.name!r}: expected integer "
                             f"{'token ids' if isinstance(t, TensorType) else 'codes'}, got dtype {x.dtype}")
        x = x.to(device=self.device, dtype=torch.int64)
        if isinstance(t, CodeType) and x.numel() and (int(x.min()) < 0 or int(x.max()) > t.hi):
            raise InputError(f"input {node.name!r}: codes must lie in [0, {t.hi}] for {t.bits} bits")
        return x

    def run_tensors(self, graph: Graph, feeds: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Run and return the outputs as device tensors (codes: int64; spikes: uint8 trains),
        skipping the copy to the host -- what a pipeline (and the benchmark) keeps on the GPU."""
        self._keep_on_device = True
        try:
            return self.run(graph, feeds).codes  # type: ignore[return-value]
        finally:
            self._keep_on_device = False


class TorchCodes(_TorchBackend, CodesExecutor):
    """``codes`` mode (:class:`.exec_codes.CodesExecutor`): values are int64 code tensors on the device."""


class TorchSpikes(_TorchBackend, SpikesExecutor):
    """``spikes`` mode (:class:`.exec_spikes.SpikesExecutor`): uint8 BSE / int8 signed trains
    ``(bits, *shape)`` on the device, stepped through time exactly like :class:`.numpy_ref.NumpySpikes`."""


def torch_executor(mode: str = "codes", device: str | torch.device = "cpu", collect_stats: bool = False,
                   matmul: str = "auto", max_products: int | None = None) -> TorchCodes | TorchSpikes:
    """A torch executor in ``mode`` (``codes`` or ``spikes``) on ``device``.

    ``matmul`` forces an exact-matmul engine (see :mod:`.torch_matmul`; ``auto`` picks by device);
    ``max_products`` turns a plan that needs more slice products than that into an error instead of
    a slow run (the benchmark sets 1 to prove it measured the single-product fast path).
    """
    if mode == "codes":
        return TorchCodes(device, collect_stats, matmul, max_products)
    if mode == "spikes":
        return TorchSpikes(device, collect_stats, matmul, max_products)
    raise LasercError(f"unknown mode {mode!r} (expected 'codes' or 'spikes')")
