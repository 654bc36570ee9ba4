"""Straight-through fine-tuning of a spiking graph (LASER section 3.3).

The forward pass is the exact integer semantics -- the very codes the NumPy backend computes --
and the backward pass is a float surrogate, so a user can fine-tune Soma weights and biases
against a float teacher or a task loss, then re-export integer weights that every backend runs
bit-identically. Each compute node returns ``exact + (surrogate - surrogate.detach())``: the
second term is exactly zero in the forward pass (x - x == 0 in IEEE arithmetic, and adding 0 to
an integer-valued float64 changes nothing), so the forward values are the exact codes, while the
gradient is the surrogate's:

* BSEEncode: identity through rounding, zero outside the code range (clamped x/scale + zp);
* Soma: trainable float shadows W_f (and b_f) re-quantize to integer weights in the forward
  (round half to even, clamped to the constant's integer dtype); the surrogate is the real-valued
  affine map ``(sum x@W_f + b_f) * scale + zp``, clamped to the code range;
* DecodeMAC: ``(a - za) * (b - zb) * scale + zp`` (product or matmul), clamped;
* ASNCSegment: the slope of the selected segment, a_i / 2^k, where the output is not saturated;
  for flat (lookup-table) segments the central difference of the integer map instead;
* WTAMax, Mask and data movement: their natural derivatives (max routes the gradient to the
  winner).

Values are float64 tensors holding integer codes (exact up to 2^53, far above the 32-bit codes
the IR allows). :meth:`SteModel.export_graph` writes the re-quantized weights into a new Graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lasercc.backends.base import impl
from lasercc.backends.torch_exec import TorchCodes
from lasercc.errors import LasercError
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import ASNCSegment, BSEEncode, DecodeMAC, Gather, Input, Mask, Soma
from lasercc.ir.types import CodeType
from lasercc.semantics import asnc_segment_index, requantize_scale


def _ste(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Forward: ``exact`` bit for bit; backward: the gradient of ``surrogate``."""
    return exact.to(surrogate.dtype) + (surrogate - surrogate.detach())


def _soft_threshold_grad(u: torch.Tensor, beta: float) -> torch.Tensor:
    """Surrogate derivative of the rounding staircase at real-valued code ``u``: the sum of
    ``beta * sigmoid'(beta * (u - t))`` over the two spike thresholds ``t = round(u) -/+ 1/2`` around u.

    This is the spiking-network habit LASER argues against (SpikeLM, STBP: a smooth stand-in for the
    Heaviside of each threshold crossing): it integrates to about 1 per code step, like the identity,
    but peaks at the thresholds and nearly vanishes between them, so the gradient depends on where in
    its step a value happens to sit.
    """
    d = u - torch.round(u)
    sa, sb = torch.sigmoid(beta * (d - 0.5)), torch.sigmoid(beta * (d + 0.5))
    return beta * (sa * (1 - sa) + sb * (1 - sb))


def _int_range(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


class SteExecutor(TorchCodes):
    """``codes`` executor whose values carry gradients (see module doc). Driven by :class:`SteModel`."""

    def __init__(self, model: SteModel, device: torch.device, grad: str = "ste", beta: float = 5.0):
        super().__init__(device=device, collect_stats=False, matmul="f64" if device.type == "cpu" else "auto")
        self.model = model
        self.grad = grad
        self.beta = beta

    def spike_out(self, exact: torch.Tensor, sur: torch.Tensor) -> torch.Tensor:
        """A requantizing node's output (BSEEncode, Soma, DecodeMAC: where a spike train is generated).

        ``grad="ste"``: identity through the rounding (LASER 3.3). ``grad="surrogate"``: the gradient
        of the real-valued code is scaled by :func:`_soft_threshold_grad` -- the surrogate-gradient
        baseline. The forward values are the exact codes either way.
        """
        if self.grad == "ste":
            return _ste(exact, sur)
        g = _soft_threshold_grad(sur.detach(), self.beta)
        return _ste(exact, sur * g)

    def prepare(self, graph: Graph) -> None:
        super().prepare(graph)

    def feed(self, node: Input, array: Any) -> torch.Tensor:
        if isinstance(array, torch.Tensor) and array.requires_grad:
            if tuple(array.shape) != tuple(node.type.shape):
                raise LasercError(f"input {node.name!r}: expected shape {list(node.type.shape)}, "
                                  f"got {list(array.shape)}")
            return array.to(self.device)
        x = super().feed(node, array)
        return x.to(torch.float64) if isinstance(node.type, CodeType) else x

    def to_numpy_codes(self, value: torch.Tensor) -> Any:
        return value  # the model returns differentiable tensors

    def _exact_in(self, v: torch.Tensor) -> torch.Tensor:
        return v.detach().to(torch.int64)

    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: torch.Tensor) -> torch.Tensor:
        t: CodeType = node.type  # type: ignore[assignment]
        exact = self.quantize_input(node, x.detach())
        s = torch.as_tensor(t.scale_array(x.dim()), dtype=torch.float64, device=x.device)
        z = torch.as_tensor(t.zero_point_array(x.dim()), dtype=torch.float64, device=x.device)
        sur = torch.clamp(x.to(torch.float64) / s + z, 0, t.hi)
        return self.spike_out(exact, sur)

    @impl(Soma)
    def soma(self, node: Soma, *xs: torch.Tensor) -> torch.Tensor:
        out: CodeType = node.type  # type: ignore[assignment]
        acc = None
        acc_f = None
        for j, (x, w, form) in enumerate(zip(xs, node.weights, node.forms)):
            wi = self.model.int_weight(w)
            wf = self.model.float_weight(w)
            xi = self._exact_in(x)
            # centred on the input zero point (folded into the bias, see SteModel.soma_bias), so the
            # weight gradient is (x - zp) like the real layer's and the fold follows the weights
            x = x - self.model.zero_point(node, j, x)
            if form == "matmul":
                # the weights change every step, so the exactness bound is taken on the fly
                x_hi = float(self.graph.type_of(node.inputs[j]).hi)  # type: ignore[union-attr]
                bound = x_hi * float(wi.abs().sum(0).max()) if wi.numel() else 0.0
                term = (torch.matmul(xi.double(), wi.double()).to(torch.int64) if bound < 2.0**53
                        else torch.matmul(xi.cpu(), wi.cpu()).to(xi.device))
                term_f = torch.matmul(x, wf)
            else:
                term, term_f = xi * wi, x * wf
            acc = term if acc is None else acc + term
            acc_f = term_f if acc_f is None else acc_f + term_f
        if node.bias is not None:
            b_int, b_f = self.model.soma_bias(node)
            acc = acc + b_int
            acc_f = acc_f + b_f
        exact = self.requant_soma(node, acc)  # type: ignore[arg-type]
        scale = torch.as_tensor(requantize_scale(node.scale_in, np.asarray(node.scale_w, np.float32),
                                                 out.scale_array()), dtype=torch.float64, device=exact.device)
        z = torch.as_tensor(out.zero_point_array(), dtype=torch.float64, device=exact.device)
        sur = torch.clamp(acc_f * scale + z, 0, out.hi)  # type: ignore[operator]
        return self.spike_out(exact, sur)

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ta, tb = (self.graph.type_of(i) for i in node.inputs)
        out: CodeType = node.type  # type: ignore[assignment]
        exact = self.decode_mac_codes(node, self._exact_in(a), self._exact_in(b))
        da, db = a - float(ta.zero_point[0]), b - float(tb.zero_point[0])  # type: ignore[union-attr]
        prod = torch.matmul(da, db) if node.form == "matmul" else da * db
        scale = float(requantize_scale(ta.scale[0], tb.scale[0], out.scale[0]))  # type: ignore[union-attr]
        sur = torch.clamp(prod * scale + float(out.zero_point[0]), 0, out.hi)
        return self.spike_out(exact, sur)

    @impl(ASNCSegment)
    def asnc(self, node: ASNCSegment, x: torch.Tensor) -> torch.Tensor:
        out: CodeType = node.type  # type: ignore[assignment]
        xi = self._exact_in(x)
        seg = asnc_segment_index(xi, self.const(node.thresholds))
        exact = self.asnc_codes(node, xi, segment=seg)
        slope = self.const(node.slopes)[seg].to(torch.float64) / float(2**node.shift)
        # A lookup-table segment (a_i = 0, LASER Table 6's "ideal SNN") is flat by construction;
        # its surrogate is the table's central difference, the discrete derivative of f.
        t_in: CodeType = self.graph.type_of(node.inputs[0])  # type: ignore[assignment]
        up, dn = torch.clamp(xi + 1, 0, t_in.hi), torch.clamp(xi - 1, 0, t_in.hi)
        diff = (self.asnc_codes(node, up) - self.asnc_codes(node, dn)).to(torch.float64) / (up - dn).clamp(min=1)
        slope = torch.where(slope == 0, diff, slope)
        live = (exact > 0) & (exact < out.hi)
        sur = x * torch.where(live, slope, torch.zeros_like(slope))
        return _ste(exact, sur)

    @impl(Gather)
    def gather(self, node: Gather, ids: torch.Tensor) -> torch.Tensor:
        return self.gather_codes(node, ids).to(torch.float64)

    @impl(Mask)
    def mask(self, node: Mask, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.const(node.mask), torch.tensor(float(node.fill), dtype=x.dtype, device=x.device), x)


class SteModel(torch.nn.Module):
    """A spiking graph as a trainable torch module: exact forward, straight-through backward.

    Every constant that a Soma uses as a weight or bias gets a float shadow parameter initialised
    to its integer value (so the untrained model *is* the graph). ``trainable`` restricts which
    constants train (default: all Soma weights and biases). ``grad`` picks the backward through every
    requantization: ``"ste"`` (identity, the paper's choice) or ``"surrogate"`` (a spiking-network
    surrogate gradient peaked at the spike thresholds, sharpness ``beta``; the baseline STE is
    compared against in ``bench/laser_lm_ste.py``).
    """

    def __init__(self, graph: Graph, device: str | torch.device = "cpu", trainable: set[str] | None = None,
                 grad: str = "ste", beta: float = 5.0):
        super().__init__()
        if grad not in ("ste", "surrogate"):
            raise LasercError(f"grad must be 'ste' (identity through rounding, LASER 3.3) or 'surrogate' "
                              f"(soft spike-threshold gradient), got {grad!r}")
        self.graph = graph
        names: list[str] = []
        for n in graph.nodes:
            if isinstance(n, Soma):
                for c in (*n.weights, *([n.bias] if n.bias is not None else [])):
                    if c not in names and (trainable is None or c in trainable):
                        names.append(c)
        self.names = names
        self._index = {c: i for i, c in enumerate(names)}
        self.shadows = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(np.asarray(graph.constants[c]).astype(np.float64)))
             for c in names])
        self._ranges = {c: _int_range(np.asarray(graph.constants[c]).dtype) for c in names}
        self._refold = self._refoldable(graph)
        with torch.no_grad():  # bias shadows of refolded Somas hold b_real = bias + sum zp (.) W
            for n in graph.nodes:
                if n.name in self._refold:
                    self.shadows[self._index[n.bias]] += self._zp_term(  # type: ignore[index]
                        n, lambda c: torch.as_tensor(np.asarray(graph.constants[c]).astype(np.float64)))
        self.executor = SteExecutor(self, torch.device(device), grad=grad, beta=beta)
        self.to(self.executor.device)

    def _refoldable(self, graph: Graph) -> set[str]:
        """Somas whose bias and weights are all trainable, used by no other node, and whose zero-point
        term has the bias's shape (so the fold can be redone exactly)."""
        uses: dict[str, int] = {}
        for n in graph.nodes:
            for c in n.const_refs():
                uses[c] = uses.get(c, 0) + 1
        out = set()
        for n in graph.nodes:
            if not isinstance(n, Soma) or n.bias is None:
                continue
            consts = (*n.weights, n.bias)
            if any(c not in self._index or uses.get(c, 0) != 1 for c in consts):
                continue
            term = self._zp_term(n, lambda c: torch.as_tensor(np.asarray(graph.constants[c]).astype(np.float64)))
            if tuple(term.shape) == tuple(np.asarray(graph.constants[n.bias]).shape):
                out.add(n.name)
        return out

    def float_weight(self, name: str) -> torch.Tensor:
        """The trainable float shadow of a constant (or the fixed constant as float64)."""
        i = self._index.get(name)
        return self.shadows[i] if i is not None else self.executor.const(name).to(torch.float64)

    def int_weight(self, name: str) -> torch.Tensor:
        """The integer weight the forward pass uses: round half to even, clamped to the dtype."""
        i = self._index.get(name)
        if i is None:
            return self.executor.const(name)
        lo, hi = self._ranges[name]
        return torch.clamp(torch.round(self.shadows[i].detach()), lo, hi).to(torch.int64)

    def zero_point(self, node: Soma, j: int, x: torch.Tensor) -> torch.Tensor | float:
        """Input j's zero point, broadcast like the input, where the bias of ``node`` is refolded
        (else 0: the surrogate then uses raw codes, which is the same function)."""
        if node.name not in self._refold:
            return 0.0
        t: CodeType = self.graph.type_of(node.inputs[j])  # type: ignore[assignment]
        return torch.as_tensor(t.zero_point_array(x.dim()), dtype=x.dtype, device=x.device)

    def _zp_term(self, node: Soma, weight: Callable[[str], torch.Tensor]) -> torch.Tensor:
        """sum_j zp_j (.) W_j: what the compiler folded into the bias for the input zero points."""
        total: torch.Tensor | None = None
        for i, w, form in zip(node.inputs, node.weights, node.forms):
            t: CodeType = self.graph.type_of(i)  # type: ignore[assignment]
            wt = weight(w)
            zp = torch.as_tensor(t.zero_point_array(), dtype=wt.dtype, device=wt.device)
            if form == "matmul":
                zp_k = zp.reshape(-1) if zp.numel() > 1 else zp.reshape(()).expand(wt.shape[0])
                term = torch.matmul(zp_k, wt)
            else:
                term = zp * wt
            total = term if total is None else total + term
        assert total is not None
        return total

    def soma_bias(self, node: Soma) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer bias used by the exact forward, float bias of the surrogate) of a Soma.

        docs/contract.md section 3: the compiler folds the input zero points into the bias, bias = b_real -
        sum_j zp_j (.) W_j. Where a Soma owns its bias and weights, the shadow holds b_real and the
        fold is redone from the *current* integer weights, so moving a weight does not silently
        shift the layer's offset (and the surrogate is the real layer, centred on zero points).
        """
        assert node.bias is not None
        if node.name not in self._refold:
            return self.int_weight(node.bias), self.float_weight(node.bias)
        lo, hi = self._ranges[node.bias]
        b_real = self.shadows[self._index[node.bias]]
        b_int = torch.round(b_real.detach()).to(torch.int64) - self._zp_term(node, self.int_weight)
        return torch.clamp(b_int, lo, hi), b_real

    def forward(self, feeds: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Output codes (float64, exact integers) with gradients to the shadows and float inputs."""
        return self.executor.run(self.graph, feeds).codes

    def dequantize(self, codes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Real values scale*(code - zp) of output codes, differentiable."""
        out = {}
        for k, c in codes.items():
            t: CodeType = self.graph.type_of(k)  # type: ignore[assignment]
            s = torch.as_tensor(t.scale_array(c.dim()), dtype=c.dtype, device=c.device)
            z = torch.as_tensor(t.zero_point_array(c.dim()), dtype=c.dtype, device=c.device)
            out[k] = (c - z) * s
        return out

    def export_graph(self) -> Graph:
        """A new Graph with the re-quantized integer weights as constants (same names and dtypes)."""
        new = {c: self.int_weight(c).cpu().numpy().astype(np.asarray(self.graph.constants[c]).dtype)
               for c in self.names}
        for n in self.graph.nodes:
            if n.name in self._refold:
                b = self.soma_bias(n)[0]  # type: ignore[arg-type]
                new[n.bias] = b.cpu().numpy().astype(np.asarray(self.graph.constants[n.bias]).dtype)  # type: ignore[index]
        return self.graph.replace(constants=self.graph.constants.with_items(**new)).verify()
