"""The torch executor: the NumPy reference's codes, bit for bit, on CPU or CUDA, batched.

It walks the graph through the same ``@impl`` table interface as :mod:`.numpy_ref` and calls
the same :mod:`lasercc.semantics` functions (they accept torch tensors), so quantization,
requantization (``ort`` and ``fixed``), BSE and ASNC are *one* definition run on the device.
What this module adds is only how to run them fast and exactly:

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

from lasercc.backends.base import Executor, impl
from lasercc.backends.stats import NodeStats, node_stats
from lasercc.backends.torch_matmul import (
    ConstMatmul,
    MatmulPlan,
    PrecisionError,
    default_engine,
    dynamic_matmul,
    plan_dynamic_matmul,
)
from lasercc.errors import InputError, LasercError
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import (
    ASNCSegment,
    BSEEncode,
    Concat,
    DecodeMAC,
    Gather,
    Input,
    Mask,
    Node,
    Reshape,
    Slice,
    Soma,
    SomaASNC,
    Take,
    Transpose,
    WTAMax,
)
from lasercc.ir.types import CodeType, TensorType
from lasercc.semantics import (
    asnc_evaluate,
    asnc_segment_index,
    bse_decode,
    bse_encode,
    quantize,
    requantize,
)
from lasercc.semantics.bse import bse_decode_signed, bse_encode_signed, decode_train, encode_train


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


class _TorchBase(Executor):
    """Constant caches, matmul plans, input checks, statistics and data movement for both modes.

    ``axis0`` is the number of leading axes that are not part of the IR shape (1 in ``spikes``
    mode: the time axis).
    """

    name: ClassVar[str] = "torch"
    axis0: ClassVar[int] = 0

    def __init__(self, device: str | torch.device = "cpu", collect_stats: bool = False, matmul: str = "auto",
                 max_products: int | None = None):
        self.device = resolve_device(device)
        self.engine = default_engine(self.device, matmul)
        # Test hook: run the plans made for ``engine`` on another engine's kernels (the CPU suite
        # runs fp16/int8 plans with fp32/int64 kernels); None in normal use.
        self.run_as: str | None = None
        self.max_products = max_products
        self.collect_stats = collect_stats
        self._stats: dict[str, NodeStats] = {}

    # ---- per-graph caches -------------------------------------------------------------------
    def prepare(self, graph: Graph) -> None:
        super().prepare(graph)
        self._consts: dict[str, torch.Tensor] = {}
        self._mm: dict[tuple[str, int], ConstMatmul] = {}
        self._dyn: dict[str, MatmulPlan] = {}
        self._stats = {}

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

    def const_matmul(self, node: Soma, j: int, x: torch.Tensor, x_lo: int, x_hi: int) -> torch.Tensor:
        """Exact ``x @ W_j`` for input j of a Soma; the plan is made once per (node, input)."""
        mm = self._mm.get((node.name, j))
        if mm is None:
            w = self._data(node.weights[j]).astype(np.int64)
            mm = ConstMatmul(w, x_lo, x_hi, self.engine, self.device, self.run_as)
            self._check_products(node, mm.plan)
            self._mm[(node.name, j)] = mm
        return mm(x)

    def dyn_matmul(self, node: DecodeMAC, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
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
    def feed(self, node: Input, array: Any) -> torch.Tensor:
        """Check one input against its declared type and move it to the device."""
        t = node.type
        shape = tuple(array.shape)
        if shape != tuple(t.shape):
            raise InputError(f"input {node.name!r}: expected shape {list(t.shape)}, got {list(shape)}")
        if isinstance(array, torch.Tensor):
            x = array
        else:
            arr = np.asarray(array)
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

    def host_codes(self, value: torch.Tensor) -> np.ndarray:
        """A value's codes as a NumPy int64 array on the host."""
        return value.detach().cpu().numpy()

    def to_numpy_codes(self, value: torch.Tensor) -> np.ndarray:
        if self._keep_on_device:
            return value  # type: ignore[return-value]
        return self.host_codes(value)

    _keep_on_device: bool = False

    def run_tensors(self, graph: Graph, feeds: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Run and return the outputs as device tensors (codes: int64; spikes: uint8 trains),
        skipping the copy to the host -- what a pipeline (and the benchmark) keeps on the GPU."""
        self._keep_on_device = True
        try:
            return self.run(graph, feeds).codes  # type: ignore[return-value]
        finally:
            self._keep_on_device = False

    def collected_stats(self) -> dict[str, Any]:
        out, self._stats = self._stats, {}
        return out

    def _record(self, node: Node, in_codes: list, out_codes: Any, spikes: int | None = None) -> None:
        s = node_stats(node, self.graph, in_codes, out_codes, spikes)
        if node.name in self._stats:
            self._stats[node.name].add(s)
        else:
            self._stats[node.name] = s

    # ---- arithmetic shared by both modes (all of it in semantics/) ----------------------------
    def requant_soma(self, node: Soma, acc: torch.Tensor) -> torch.Tensor:
        out: CodeType = node.type  # type: ignore[assignment]
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize(acc, node.scale_in, np.asarray(node.scale_w, dtype=np.float32), out.scale_array(),
                          out.zero_point_array(), out.bits, node.requant)

    def soma_codes(self, node: Soma, xs: list[torch.Tensor]) -> torch.Tensor:
        """The Soma accumulator of code inputs (no time axis), requantized."""
        return self.requant_soma(node, self.soma_acc(node, xs))  # type: ignore[arg-type]

    def soma_acc(self, node: Soma | SomaASNC, xs: list[torch.Tensor]) -> torch.Tensor:
        """The exact integer accumulator of a Soma (or fused SomaASNC) from input codes."""
        acc = None
        for j, (x, w, form) in enumerate(zip(xs, node.weights, node.forms)):
            if form == "matmul":
                t: CodeType = self.graph.type_of(node.inputs[j])  # type: ignore[assignment]
                term = self.const_matmul(node, j, x, 0, t.hi)
            else:
                term = x * self.const(w)
            acc = term if acc is None else acc + term
        if node.bias is not None:
            acc = acc + self.const(node.bias)
        return acc  # type: ignore[return-value]

    def soma_asnc_codes(self, node: SomaASNC, acc: torch.Tensor) -> torch.Tensor:
        """Fused requant->ASNC: the segment table reads the accumulator directly."""
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return asnc_evaluate(acc, self.const(node.thresholds), self.const(node.slopes), self.const(node.intercepts),
                             node.shift, node.type.bits)  # type: ignore[union-attr]

    def decode_mac_codes(self, node: DecodeMAC, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ta, tb = (self.graph.type_of(i) for i in node.inputs)
        out: CodeType = node.type  # type: ignore[assignment]
        da = a - int(ta.zero_point[0])  # type: ignore[union-attr]
        db = b - int(tb.zero_point[0])  # type: ignore[union-attr]
        acc = self.dyn_matmul(node, da, db) if node.form == "matmul" else da * db
        if self.acc_observer is not None:
            self.acc_observer(node, acc)
        return requantize(acc, ta.scale[0], tb.scale[0], out.scale_array(), out.zero_point_array(),  # type: ignore[union-attr]
                          out.bits, node.requant)

    def asnc_codes(self, node: ASNCSegment, x: torch.Tensor, segment: torch.Tensor | None = None) -> torch.Tensor:
        return asnc_evaluate(x, self.const(node.thresholds), self.const(node.slopes), self.const(node.intercepts),
                             node.shift, node.type.bits, segment=segment)  # type: ignore[union-attr]

    def quantize_input(self, node: BSEEncode, x: torch.Tensor) -> torch.Tensor:
        t: CodeType = node.type  # type: ignore[assignment]
        return quantize(x, np.asarray(t.scale), np.asarray(t.zero_point), t.bits, t.axis)

    def gather_codes(self, node: Gather, ids: torch.Tensor) -> torch.Tensor:
        """``table[ids]``: ``ids`` are token ids or, for an index code input, the codes themselves."""
        table = self.const(node.table)
        if ids.dtype != torch.int64:  # index codes held in a narrower or float dtype (exact small integers)
            ids = ids.to(torch.int64)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= table.shape[0]):
            what = "index code" if isinstance(self.graph.type_of(node.inputs[0]), CodeType) else "token id"
            raise IndexError(f"{what} out of range [0, {table.shape[0]}) in gather %{node.name}")
        return table[ids]

    # ---- data movement: the same code for code tensors and spike trains ------------------------
    def _ax(self, axis: int) -> int:
        return axis + self.axis0

    @impl(Reshape)
    def reshape(self, node: Reshape, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(tuple(x.shape[: self.axis0]) + tuple(node.type.shape))

    @impl(Transpose)
    def transpose(self, node: Transpose, x: torch.Tensor) -> torch.Tensor:
        lead = tuple(range(self.axis0))
        return x.permute(lead + tuple(p + self.axis0 for p in node.perm)).contiguous()

    @impl(Slice)
    def slice_(self, node: Slice, x: torch.Tensor) -> torch.Tensor:
        for a, b, e, s in zip(node.axes, node.starts, node.stops, node.steps):
            ax = self._ax(a)
            idx = range(*slice(b, e, s).indices(x.shape[ax]))
            if s > 0:  # torch basic slicing takes positive steps only
                sl = [slice(None)] * x.dim()
                sl[ax] = slice(idx.start, idx.start + len(idx) * s, s) if len(idx) else slice(0, 0)
                x = x[tuple(sl)]
            else:
                x = x.index_select(ax, torch.as_tensor(list(idx), dtype=torch.int64, device=x.device))
        return x

    @impl(Concat)
    def concat(self, node: Concat, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self._ax(node.axis))

    @impl(Take)
    def take(self, node: Take, x: torch.Tensor) -> torch.Tensor:
        ax = self._ax(node.axis)
        n = x.shape[ax]
        idx = torch.as_tensor([i % n for i in node.indices], dtype=torch.int64, device=x.device)
        return x.index_select(ax, idx)


class TorchCodes(_TorchBase):
    """``codes`` mode: values are int64 code tensors on the device."""

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        if self.collect_stats:
            self._record(node, [self.host_codes(v) for v in inputs], self.host_codes(output))

    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: torch.Tensor) -> torch.Tensor:
        return self.quantize_input(node, x)

    @impl(Soma)
    def soma(self, node: Soma, *xs: torch.Tensor) -> torch.Tensor:
        return self.soma_codes(node, list(xs))

    @impl(SomaASNC)
    def soma_asnc(self, node: SomaASNC, *xs: torch.Tensor) -> torch.Tensor:
        return self.soma_asnc_codes(node, self.soma_acc(node, list(xs)))

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.decode_mac_codes(node, a, b)

    @impl(ASNCSegment)
    def asnc(self, node: ASNCSegment, x: torch.Tensor) -> torch.Tensor:
        return self.asnc_codes(node, x)

    @impl(WTAMax)
    def wta_max(self, node: WTAMax, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=self._ax(node.axis), keepdim=True)

    @impl(Gather)
    def gather(self, node: Gather, ids: torch.Tensor) -> torch.Tensor:
        return self.gather_codes(node, ids)

    @impl(Mask)
    def mask(self, node: Mask, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.const(node.mask), torch.tensor(node.fill, dtype=x.dtype, device=x.device), x)


class TorchSpikes(_TorchBase):
    """``spikes`` mode: values are uint8 BSE trains ``(bits, *shape)`` stepped through time.

    The encoder is the integrate-and-fire neuron of :func:`lasercc.semantics.bse_encode_if`; a
    Soma integrates weighted spikes Horner-style, one timestep after another (the per-step
    matmuls of all T steps run as one stacked exact product, then the recurrence
    acc <- 2*acc + step(t) runs over t); ASNC selects its segment with the bit-serial comparator
    prefix; the winner-take-all eliminates candidates bit by bit.

    Signed (bidirectional) values are int8 ternary trains of code - zero_point, exactly as in
    :class:`.numpy_ref.NumpySpikes`: same encoder and decoder, the Soma adds the folded constant
    zp * sum(W) after the Horner recurrence, and run outputs get their zero points back.
    """

    axis0: ClassVar[int] = 1

    # ---- the encoding of a value's type (BSE uint8 or signed int8 trains)
    @staticmethod
    def train_of(codes: torch.Tensor, t: CodeType) -> torch.Tensor:
        """Spike train of codes of type ``t`` (the shared rule: :func:`lasercc.semantics.bse.encode_train`)."""
        return encode_train(codes, t.bits, t.zero_point[0], t.signed)

    @staticmethod
    def codes_of(train: torch.Tensor, t: CodeType) -> torch.Tensor:
        """Codes of a spike train of type ``t`` (:func:`lasercc.semantics.bse.decode_train`)."""
        return decode_train(train, t.bits, t.zero_point[0], t.signed)

    def _decode(self, train: torch.Tensor, value: str) -> torch.Tensor:
        return self.codes_of(train, self.graph.type_of(value))  # type: ignore[arg-type]

    def signed_offset(self, node: Soma | SomaASNC) -> torch.Tensor | None:
        """zp * sum(W) over signed inputs (zp * W for ``mul``): the compiler-folded constant that
        ternary spikes of x - zp leave out of W x."""
        off = None
        for i, w, form in zip(node.inputs, node.weights, node.forms):
            t = self.graph.type_of(i)
            if isinstance(t, CodeType) and t.signed and t.zero_point[0]:
                wi = self.const(w)
                term = int(t.zero_point[0]) * (wi.sum(dim=0) if form == "matmul" else wi)
                off = term if off is None else off + term
        return off

    def run(self, graph: Graph, feeds: dict[str, Any]):  # noqa: ANN201 - ExecResult
        res = super().run(graph, feeds)
        if not self._keep_on_device:  # host codes of signed trains are offsets: add zero points back
            for o in graph.outputs:
                t = graph.type_of(o)
                if isinstance(t, CodeType) and t.signed:
                    res.codes[o] = res.codes[o] + np.int64(t.zero_point[0])
        return res

    def feed(self, node: Input, array: Any) -> torch.Tensor:
        x = super().feed(node, array)
        return self.train_of(x, node.type) if isinstance(node.type, CodeType) else x

    def host_codes(self, value: torch.Tensor) -> np.ndarray:
        if value.dtype == torch.int8:  # a signed train: its offset (``run`` adds the zero point)
            return bse_decode_signed(value.detach(), 0, value.shape[0]).cpu().numpy()
        return bse_decode(value.detach(), value.shape[0]).cpu().numpy()

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        if not self.collect_stats:
            return
        ins = [self._decode(v.detach(), i).cpu().numpy() if isinstance(self.graph.type_of(i), CodeType)
               else v.cpu().numpy() for v, i in zip(inputs, node.inputs)]
        is_code = isinstance(node.type, CodeType)
        out = self.codes_of(output.detach(), node.type).cpu().numpy() if is_code else output.cpu().numpy()  # type: ignore[arg-type]
        spikes = int(torch.count_nonzero(output)) if is_code else None  # one spike per nonzero entry
        self._record(node, ins, out, spikes)

    def _encode(self, codes: torch.Tensor, node: Node) -> torch.Tensor:
        return self.train_of(codes, node.type)  # type: ignore[arg-type]

    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: torch.Tensor) -> torch.Tensor:
        return self._encode(self.quantize_input(node, x), node)

    @impl(Soma)
    def soma(self, node: Soma, *trains: torch.Tensor) -> torch.Tensor:
        return self._encode(self.requant_soma(node, self.soma_acc_spikes(node, trains)), node)

    @impl(SomaASNC)
    def soma_asnc(self, node: SomaASNC, *trains: torch.Tensor) -> torch.Tensor:
        return self._encode(self.soma_asnc_codes(node, self.soma_acc_spikes(node, trains)), node)

    def soma_acc_spikes(self, node: Soma | SomaASNC, trains: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Horner accumulation of weighted input spikes, step by step (LASER Eq. 2)."""
        steps = max(s.shape[0] for s in trains)
        per_input = []
        for j, (s, w, form) in enumerate(zip(trains, node.weights, node.forms)):
            s64 = s.to(torch.int64)
            if form == "matmul":  # all T steps in one exact product: spikes are 0/1 (or -1/0/1 if signed)
                term = self.const_matmul(node, j, s64, -1 if s.dtype == torch.int8 else 0, 1)
            else:
                term = s64 * self.const(w)
            per_input.append(term)
        acc: torch.Tensor | int = 0
        for t in range(steps):
            step = None
            for s, term in zip(trains, per_input):
                tj = t - (steps - s.shape[0])  # narrower inputs start later so all LSBs align
                if tj < 0:
                    continue
                step = term[tj] if step is None else step + term[tj]
            acc = 2 * acc + step  # Horner, LASER Eq. 2
        off = self.signed_offset(node)
        if off is not None:
            acc = acc + off
        if node.bias is not None:
            acc = acc + self.const(node.bias)
        return acc  # type: ignore[return-value]

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        codes = self.decode_mac_codes(node, self._decode(a, node.inputs[0]), self._decode(b, node.inputs[1]))
        return self._encode(codes, node)

    @impl(ASNCSegment)
    def asnc(self, node: ASNCSegment, s: torch.Tensor) -> torch.Tensor:
        # Bit-serial comparator: the MSB-first prefix narrows x step by step; once the last bit has
        # arrived the prefix is x and the comparator bank names its segment.
        prefix = torch.zeros(s.shape[1:], dtype=torch.int64, device=s.device)
        for t in range(s.shape[0]):
            prefix = 2 * prefix + s[t].to(torch.int64)
        xt = self.graph.type_of(node.inputs[0])
        if xt.signed:  # type: ignore[union-attr]  # a ternary prefix is the offset: the code is zp + prefix
            prefix = prefix + int(xt.zero_point[0])  # type: ignore[union-attr]
        seg = asnc_segment_index(prefix, self.const(node.thresholds))
        return self._encode(self.asnc_codes(node, prefix, segment=seg), node)

    @impl(WTAMax)
    def wta_max(self, node: WTAMax, s: torch.Tensor) -> torch.Tensor:
        ax = self._ax(node.axis) - 1  # axis within one time slice
        if node.type.signed:  # type: ignore[union-attr]
            return self._wta_signed(s, ax, node)
        alive = torch.ones(s.shape[1:], dtype=torch.bool, device=s.device)
        out = torch.empty((s.shape[0],) + tuple(node.type.shape), dtype=torch.uint8, device=s.device)
        for t in range(s.shape[0]):
            bid = alive & (s[t] == 1)
            any_one = bid.any(dim=ax, keepdim=True)
            out[t] = any_one
            alive = torch.where(any_one, bid, alive)  # candidates showing 0 drop out when someone shows 1
        return out

    @staticmethod
    def _wta_signed(s: torch.Tensor, ax: int, node: WTAMax) -> torch.Tensor:
        """Winner-take-all on ternary sign-magnitude trains: the alive candidates' largest digit
        (+1 > 0 > -1) is emitted, smaller ones drop out -- the numeric order of the offsets."""
        alive = torch.ones(s.shape[1:], dtype=torch.bool, device=s.device)
        out = torch.empty((s.shape[0],) + tuple(node.type.shape), dtype=torch.int8, device=s.device)
        floor = torch.tensor(-2, dtype=torch.int8, device=s.device)
        for t in range(s.shape[0]):
            best = torch.where(alive, s[t], floor).amax(dim=ax, keepdim=True)
            out[t] = best
            alive = alive & (s[t] == best)
        return out

    @impl(Gather)
    def gather(self, node: Gather, ids: torch.Tensor) -> torch.Tensor:
        if isinstance(self.graph.type_of(node.inputs[0]), CodeType):  # an index code arrives as a spike train
            ids = self._decode(ids, node.inputs[0])
        return self._encode(self.gather_codes(node, ids), node)

    @impl(Mask)
    def mask(self, node: Mask, s: torch.Tensor) -> torch.Tensor:
        t: CodeType = node.type  # type: ignore[assignment]
        fill_code = torch.tensor(node.fill, dtype=torch.int64, device=s.device)
        if t.signed:
            fill = bse_encode_signed(fill_code, t.zero_point[0], s.shape[0])
        else:
            fill = bse_encode(fill_code, s.shape[0])
        fill = fill.reshape((s.shape[0],) + (1,) * (s.dim() - 1))
        return torch.where(self.const(node.mask)[None], fill, s).to(s.dtype)


def torch_executor(mode: str = "codes", device: str | torch.device = "cpu", collect_stats: bool = False,
                   matmul: str = "auto", max_products: int | None = None) -> _TorchBase:
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
