"""The ``spikes`` mode, written once for every backend: values are BSE spike trains stepped through time.

A value of a code type is a train of shape ``(bits, *shape)``, MSB first: uint8 BSE spikes, or, for
a type with ``encoding = signed``, the int8 ternary train of ``code - zero_point``
(:func:`lasercc.semantics.bse.encode_train`). The encoder is the integrate-and-fire neuron; a Soma
integrates weighted spikes Horner-style (acc <- 2*acc + sum_j W_j s_j(t)); an ASNC segment is
selected by bit-serial comparators on the MSB-first input; the winner-take-all max eliminates
candidates bit by bit; a DecodeMAC decodes after the last bit. Data movement acts on the trains'
shape axes (``axis0 = 1``: the time axis leads).

Signed trains: decoders add the zero point back, and a Soma's Horner recurrence on ternary spikes
yields W(x - zp), to which the compiler-folded constant zp * sum(W) is added
(:meth:`SpikesExecutor.signed_offset`) so the accumulator equals the codes mode's exactly.
A backend supplies only the hooks of :class:`~.generic.XPExecutor`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from lasercc.backends.base import impl
from lasercc.backends.generic import XPExecutor
from lasercc.ir.graph import Graph
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
from lasercc.semantics import bse_decode, bse_encode
from lasercc.semantics.bse import bse_decode_signed, bse_encode_signed, decode_train, encode_train


class SpikesExecutor(XPExecutor):
    """``spikes`` mode on the array namespace ``self.xp`` (see module doc)."""

    axis0: ClassVar[int] = 1
    #: a Soma's per-step products as one product over all T steps (torch: fewer kernel launches) or step
    #: by step (NumPy: BLAS runs the small per-step GEMMs about 2x faster than one T-times-taller GEMM here)
    stack_steps: ClassVar[bool] = True

    # ---- the encoding of a value's type: the one place that picks BSE or signed trains
    @staticmethod
    def train_of(codes: Any, t: CodeType) -> Any:
        """Spike train of codes of type ``t`` (the shared rule: :func:`lasercc.semantics.bse.encode_train`)."""
        return encode_train(codes, t.bits, t.zero_point[0], t.signed)

    @staticmethod
    def codes_of(train: Any, t: CodeType) -> Any:
        """Codes of a spike train of type ``t`` (:func:`lasercc.semantics.bse.decode_train`)."""
        return decode_train(train, t.bits, t.zero_point[0], t.signed)

    def _encode(self, codes: Any, node: Node) -> Any:
        return self.train_of(codes, node.type)  # type: ignore[arg-type]

    def _decode(self, train: Any, value: str) -> Any:
        return self.codes_of(train, self.graph.type_of(value))  # type: ignore[arg-type]

    def signed_offset(self, node: Soma | SomaASNC) -> Any:
        """zp * sum(W) over the signed inputs of a Soma (zp * W for ``mul``): what ternary spikes of
        x - zp leave out of W x. A compiler folds it into the bias; the simulator adds it here."""
        off = None
        for i, w, form in zip(node.inputs, node.weights, node.forms):
            t = self.graph.type_of(i)
            if isinstance(t, CodeType) and t.signed and t.zero_point[0]:
                wi = self.const(w)
                term = int(t.zero_point[0]) * (wi.sum(0) if form == "matmul" else wi)
                off = term if off is None else off + term
        return off

    # ---- inputs, outputs, statistics
    def run(self, graph: Graph, feeds: dict[str, Any]):  # noqa: ANN201 - ExecResult
        res = super().run(graph, feeds)
        if not self._keep_on_device:  # host codes of signed trains are offsets: add zero points back
            for o in graph.outputs:
                t = graph.type_of(o)
                if isinstance(t, CodeType) and t.signed:
                    res.codes[o] = res.codes[o] + np.int64(t.zero_point[0])
        return res

    def feed(self, node: Node, array: Any) -> Any:
        x = self.accept(node, array)
        return self.train_of(x, node.type) if isinstance(node.type, CodeType) else x

    def to_numpy_codes(self, value: Any) -> Any:
        if self._keep_on_device:
            return value
        if value.dtype == self.xp.int8:  # a signed train: its offset (``run`` adds the zero point)
            return self.to_host(bse_decode_signed(value, 0, value.shape[0]))
        return self.to_host(bse_decode(value, value.shape[0]))

    def observe(self, node: Node, inputs: list[Any], output: Any) -> None:
        if not self.collect_stats:
            return
        ins = [self.to_host(self.codes_of(v, t) if isinstance(t := self.graph.type_of(i), CodeType) else v)
               for v, i in zip(inputs, node.inputs)]
        is_code = isinstance(node.type, CodeType)
        out = self.to_host(self.codes_of(output, node.type) if is_code else output)  # type: ignore[arg-type]
        spikes = self.xp.count_nonzero(output) if is_code else None  # one spike per nonzero entry
        self._record(node, ins, out, spikes)

    # ---- node kinds
    @impl(BSEEncode)
    def bse_encode(self, node: BSEEncode, x: Any) -> Any:
        return self._encode(self.quantize_input(node, x), node)

    def soma_acc(self, node: Soma | SomaASNC, trains: tuple[Any, ...]) -> Any:
        """Horner integration of weighted spikes, step by step (LASER Eq. 2; shared by Soma and SomaASNC).

        With ``stack_steps`` the per-step products of all T steps of an input run as one exact product
        and the recurrence acc <- 2*acc + step(t) then runs over t; without, each step's product is
        made when the recurrence reaches it. Same integers either way (every product is exact)."""
        steps = max(s.shape[0] for s in trains)
        stacked = [self._spike_term(node, j, s, True) if self.stack_steps else None for j, s in enumerate(trains)]
        acc: Any = 0
        for t in range(steps):
            step = None
            for j, s in enumerate(trains):
                tj = t - (steps - s.shape[0])  # narrower inputs start later so all LSBs align
                if tj < 0:
                    continue
                term = stacked[j][tj] if self.stack_steps else self._spike_term(node, j, s[tj], False)
                step = term if step is None else step + term
            acc = 2 * acc + step  # Horner, LASER Eq. 2
        off = self.signed_offset(node)
        if off is not None:
            acc = acc + off
        if node.bias is not None:
            acc = acc + self.const(node.bias)
        return acc

    def _spike_term(self, node: Soma | SomaASNC, j: int, s: Any, whole_train: bool) -> Any:
        """W_j applied to spikes ``s`` of input j: one time step, or (``whole_train``) all steps at once.
        Spikes are 0/1, or -1/0/1 on a signed train: those are the operand bounds of the exact matmul."""
        lo = -1 if s.dtype == self.xp.int8 else 0
        if whole_train:
            s = self.xp.astype(s, np.int64)
        if node.forms[j] == "matmul":
            return self.matmul_const(node, j, s, lo, 1)
        s64 = self.xp.astype(s, np.int64)
        return (self._pad(s64, len(node.type.shape)) if whole_train else s64) * self.const(node.weights[j])

    @impl(Soma)
    def soma(self, node: Soma, *trains: Any) -> Any:
        return self._encode(self.requant_soma(node, self.soma_acc(node, trains)), node)

    @impl(SomaASNC)
    def soma_asnc(self, node: SomaASNC, *trains: Any) -> Any:
        # The comparator bank reads the finished accumulator (it is a neuron state, not a spike
        # train, so there is no bit-serial prefix to resolve): select the segment and emit N_out bits.
        return self._encode(self.asnc_codes(node, self.soma_acc(node, trains)), node)

    @impl(DecodeMAC)
    def decode_mac(self, node: DecodeMAC, a: Any, b: Any) -> Any:
        codes = self.decode_mac_codes(node, self._decode(a, node.inputs[0]), self._decode(b, node.inputs[1]))
        return self._encode(codes, node)

    @impl(ASNCSegment)
    def asnc(self, node: ASNCSegment, s: Any) -> Any:
        """Bit-serial comparator bank: after t bits the prefix p bounds x to [p*2^r, p*2^r + 2^r - 1]
        (r bits still to come); the segment is pinned once both bounds select the same one.

        On a signed (ternary sign-magnitude) train the prefix and the sign seen so far bound
        x = zp + d: the remaining r digits add at most 2^r - 1 in the sign's direction, either way
        while p = 0."""
        xp = self.xp
        tin: CodeType = self.graph.type_of(node.inputs[0])  # type: ignore[assignment]
        zp = int(tin.zero_point[0]) if tin.signed else 0
        thr = self.const(node.thresholds)
        s = xp.astype(s, np.int64)
        bits = s.shape[0]
        prefix = xp.zeros(tuple(s.shape[1:]), np.int64)
        lo_seg = hi_seg = None
        for t in range(bits):
            prefix = 2 * prefix + s[t]
            rest = bits - 1 - t
            span = (1 << rest) - 1
            base = (prefix << rest) + zp
            if tin.signed:
                lo, hi = base - (prefix <= 0) * span, base + (prefix >= 0) * span
            else:
                lo, hi = base, base + span
            lo_seg, hi_seg = xp.searchsorted_right(thr, lo), xp.searchsorted_right(thr, hi)
        if xp.any(lo_seg != hi_seg):  # pragma: no cover - a comparator bug
            raise AssertionError("comparator did not resolve the segment")
        return self._encode(self.asnc_codes(node, prefix + zp, segment=lo_seg), node)

    @impl(WTAMax)
    def wta_max(self, node: WTAMax, s: Any) -> Any:
        """Winner-take-all, MSB first. BSE: candidates showing 0 drop out when someone shows 1.
        Signed (ternary sign-magnitude) trains: the alive candidates' largest digit (+1 > 0 > -1) is
        emitted and candidates showing less drop out; on sign-magnitude digits this lexicographic
        order is the numeric order of the offsets, so the output train is the maximum's own train."""
        xp = self.xp
        ax = self._ax(node.axis) - 1  # axis within one time slice
        signed = node.type.signed  # type: ignore[union-attr]
        alive = xp.ones(tuple(s.shape[1:]), np.bool_)
        out = xp.empty((s.shape[0],) + tuple(node.type.shape), np.int8 if signed else np.uint8)
        floor = xp.asarray(np.int8(-2)) if signed else None
        for t in range(s.shape[0]):
            if signed:
                best = xp.amax(xp.where(alive, s[t], floor), ax)
                out[t] = best
                alive = alive & (s[t] == best)
            else:
                bid = alive & (s[t] == 1)
                any_one = xp.any_axis(bid, ax)
                out[t] = any_one
                alive = xp.where(any_one, bid, alive)
        return out

    @impl(Gather)
    def gather(self, node: Gather, ids: Any) -> Any:
        if isinstance(self.graph.type_of(node.inputs[0]), CodeType):  # an index code arrives as a spike train
            ids = self._decode(ids, node.inputs[0])
        return self._encode(self.gather_codes(node, ids), node)

    @impl(Mask)
    def mask(self, node: Mask, s: Any) -> Any:
        t: CodeType = node.type  # type: ignore[assignment]
        fill_code = self.xp.asarray(np.int64(node.fill))
        if t.signed:
            fill = bse_encode_signed(fill_code, t.zero_point[0], s.shape[0])
        else:
            fill = bse_encode(fill_code, s.shape[0])
        fill = fill.reshape((s.shape[0],) + (1,) * (s.ndim - 1))
        return self.xp.astype(self.xp.where(self.const(node.mask)[None], fill, s), s.dtype)
