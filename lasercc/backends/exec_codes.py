"""The ``codes`` mode, written once for every backend: values are integer code arrays.

Every spiking node computes its result directly from codes: a Soma is the exact integer
accumulator ``sum_j term_j(x_j, W_j) + bias`` requantized by the shared rule, an ASNC segment the
shared table, a WTA the maximum, a Gather a table row. A backend supplies only the hooks of
:class:`~.generic.XPExecutor` (constants, exact matmuls, input acceptance); ``axis0 = 1`` runs the
same code on several batches stacked on a leading chunk axis (:class:`.numpy_ref.NumpyCodesStacked`).
"""

from __future__ import annotations

from typing import Any

from lasercc.backends.base import impl
from lasercc.backends.generic import XPExecutor
from lasercc.ir.nodes import (
    ASNCSegment,
    BSEEncode,
    DecodeMAC,
    Gather,
    Mask,
    Node,
    Soma,
    SomaASNC,
    WTAMax,
)
from lasercc.ir.types import CodeType


class CodesExecutor(XPExecutor):
    """``codes`` mode on the array namespace ``self.xp`` (see module doc)."""

    def feed(self, node: Node, array: Any) -> Any:
        return self.accept(node, array)

    def to_numpy_codes(self, value: Any) -> Any:
        return value if self._keep_on_device else self.to_host(value)

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        if self.collect_stats:
            self._record(node, [self.to_host(v) for v in inputs], self.to_host(output))

    def soma_acc(self, node: Soma | SomaASNC, xs: tuple[Any, ...]) -> Any:
        """The exact integer accumulator sum_j term_j(x_j, W_j) + bias (shared by Soma and SomaASNC)."""
        rank = len(node.type.shape)
        acc = None
        for j, (x, w, form) in enumerate(zip(xs, node.weights, node.forms)):
            if form == "matmul":
                t: CodeType = self.graph.type_of(node.inputs[j])  # type: ignore[assignment]
                term = self.matmul_const(node, j, x, 0, t.hi)
            else:
                term = self._pad(x, rank) * self.const(w)
            acc = term if acc is None else acc + term
        if node.bias is not None:
            acc = acc + self.const(node.bias)
        return acc

    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: Any) -> Any:
        return self.quantize_input(node, x, self.axis0)

    @impl(Soma)
    def soma(self, node: Soma, *xs: Any) -> Any:
        return self.requant_soma(node, self.soma_acc(node, xs))

    @impl(SomaASNC)
    def soma_asnc(self, node: SomaASNC, *xs: Any) -> Any:
        return self.asnc_codes(node, self.soma_acc(node, xs))

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: Any, b: Any) -> Any:
        rank = max(a.ndim, b.ndim) - self.axis0
        return self.decode_mac_codes(node, self._pad(a, rank), self._pad(b, rank))

    @impl(ASNCSegment)
    def asnc(self, node: ASNCSegment, x: Any) -> Any:
        return self.asnc_codes(node, x)

    @impl(WTAMax)
    def wta_max(self, node: WTAMax, x: Any) -> Any:
        return self.xp.amax(x, self._ax(node.axis))

    @impl(Gather)
    def gather(self, node: Gather, ids: Any) -> Any:
        return self.gather_codes(node, ids)

    @impl(Mask)
    def mask(self, node: Mask, x: Any) -> Any:
        return self.xp.where_scalar(self.const(node.mask), node.fill, x)
