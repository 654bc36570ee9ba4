"""Lava processes and their bit-accurate fixed-point process models (lava-nc 0.10.0, Python 3.10 env).

Processes and models live together, at module level, because Lava's compiler finds a process's models
by scanning the module (and directory) that defines the process class; models generated at run time
inside functions are never found.

Every model is ``@implements(proc=..., protocol=LoihiProtocol)``, ``@requires(CPU)``,
``@tag("fixed_pt", "bit_accurate_loihi")``, a ``PyLoihiProcessModel`` with integer Vars, and computes
codes only through :mod:`lasercc.semantics` (quantize, requantize, asnc_evaluate): the spiking dynamics
(integrate-and-fire emission, Horner integration, bit-serial elimination) are here, the arithmetic rules
are not. Time: steps are 1-based within a sample of ``period`` steps (see
:mod:`lasercc.backends.lava.lower`); samples (batches of rows) run back to back, state resets at each
input window.

Input ports are declared statically (``in0`` .. ``in7``): a process uses the first ``n_slots``; the rest
stay unconnected and are never read.
"""


import typing as ty

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lasercc.backends.lava.lower import MAX_SLOTS
from lasercc.semantics import asnc_evaluate, quantize, requantize

SLOT_PORTS = tuple(f"in{k}" for k in range(MAX_SLOTS))
_SPIKE = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


def _in_type() -> LavaPyType:
    return LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=48)


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------


class _Neurons(AbstractProcess):
    """A group of ``n`` neurons that emit ``bits``-bit codes MSB first on steps ``start .. start+bits-1``.

    Proc params: ``period`` (steps per sample), ``start``, ``bits``, ``fire`` and the kind-specific
    parameters. ``v`` is the integrate-and-fire membrane that holds the code being emitted (soft reset);
    ``spikes`` counts every spike sent (the measured spike statistic).
    """

    def __init__(self, *, n: int, slot_sizes: ty.Sequence[int] = (), emits: bool = True, **params: ty.Any):
        super().__init__(n=n, slot_sizes=tuple(slot_sizes), **params)
        for k, port in enumerate(SLOT_PORTS):
            setattr(self, port, InPort(shape=(int(slot_sizes[k]) if k < len(slot_sizes) else 1,)))
        self.s_out = OutPort(shape=(n,))
        # Lava compiles only the processes connected to the one that is run; a graph whose inputs feed
        # disjoint subgraphs (two host inputs, or a Soma of constants) is tied into one network by these.
        self.sync_in = InPort(shape=(1,))
        self.sync_out = OutPort(shape=(1,))
        self.v = Var(shape=(n,), init=0)
        self.spikes = Var(shape=(1,), init=0)
        acc = max(1, int(sum(slot_sizes)))
        self.x = Var(shape=(acc,), init=0)  # per-slot Horner integrators, concatenated


class BSEEncoder(_Neurons):
    """Real input -> code (ONNX QuantizeLinear, via ``semantics.quantize``) injected as the membrane
    current at the first step, then an integrate-and-fire neuron with threshold 2^(N-1-t) (LASER Eq. 12-13).
    ``data`` holds the real inputs of every sample, one row per sample."""

    def __init__(self, *, n: int, samples: int, **params: ty.Any):
        super().__init__(n=n, samples=samples, **params)
        self.data = Var(shape=(samples, n), init=0.0)


class CodeSource(_Neurons):
    """Host codes -> spikes: codes given directly, or token ids looked up in an embedding ``table``
    (a Gather: data movement on the host, then BSE emission)."""

    def __init__(self, *, n: int, samples: int, n_data: int, **params: ty.Any):
        super().__init__(n=n, samples=samples, n_data=n_data, **params)
        self.data = Var(shape=(samples, n_data), init=0)


class SomaNeurons(_Neurons):
    """Somas (LASER Eq. 2-3): per slot, acc_k <- 2*acc_k + (weighted spikes from the synapse) over the
    slot's arrival window; after the last bit acc = sum_k acc_k + bias, requantized and re-emitted."""


class ASNCNeurons(_Neurons):
    """ASNC segment: integrates the MSB-first input, selects the segment by comparators and applies the
    integer affine map (``semantics.asnc_evaluate``), then re-emits."""


class DecodeMACUnit(_Neurons):
    """Decode both inputs, exact int64 product or matmul, requantize, re-emit (LASER section 3.1)."""


class WTAMaxNeurons(_Neurons):
    """Winner-take-all maximum along an axis by bit-serial elimination over the MSB-first codes."""


class CodeGatherUnit(_Neurons):
    """A Gather indexed by a code computed in the network (RoBERTa/OPT position ids): Horner-decodes the
    index train like any collector, then reads rows of the constant ``table`` (the code is the row number)
    and emits them MSB first, as the host-side gather does for token ids. ``bad`` counts index codes
    outside the table; the runner turns a nonzero count into the reference's index error after the run
    (raising inside a process model would leave its neighbours blocked on their ports)."""

    def __init__(self, *, n: int, **params: ty.Any):
        super().__init__(n=n, **params)
        self.bad = Var(shape=(1,), init=0)


class CodeSink(_Neurons):
    """Output decoder: Horner-decodes each sample's output codes into ``codes`` (one row per sample)."""

    def __init__(self, *, n: int, samples: int, **params: ty.Any):
        super().__init__(n=n, samples=samples, **params)
        self.codes = Var(shape=(samples, n), init=0)


class IntDense(AbstractProcess):
    """Synapses whose weights do not fit Lava ``Dense``'s 8 bits: exact integer weights, same one-step
    delay as ``Dense`` (so the schedule does not care which one carries a slot)."""

    def __init__(self, *, weights: np.ndarray, **params: ty.Any):
        super().__init__(**params)
        self.s_in = InPort(shape=(weights.shape[1],))
        self.a_out = OutPort(shape=(weights.shape[0],))
        self.weights = Var(shape=weights.shape, init=weights)
        self.a_buff = Var(shape=(weights.shape[0],), init=0)


# ------------------------------------------------------------------------------------------------
# process models
# ------------------------------------------------------------------------------------------------


class _NeuronModel(PyLoihiProcessModel):
    """Shared dynamics: slot integration windows, the step clock, and integrate-and-fire emission."""

    s_out: PyOutPort = _SPIKE
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=48)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=48)
    x: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=48)
    in0: PyInPort = _in_type()
    in1: PyInPort = _in_type()
    in2: PyInPort = _in_type()
    in3: PyInPort = _in_type()
    in4: PyInPort = _in_type()
    in5: PyInPort = _in_type()
    in6: PyInPort = _in_type()
    in7: PyInPort = _in_type()
    sync_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    sync_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    synapse_delay = 0  # Somas read through Dense: +1

    def __init__(self, proc_params: ty.Any):
        super().__init__(proc_params)
        p = self.proc_params
        self._n = int(p["n"])
        self._period = int(p["period"])
        self._start = int(p["start"])
        self._bits = int(p["bits"])
        self._fire = int(p["fire"])
        self._slot_sizes = tuple(p["slot_sizes"])
        self._slot_bits = tuple(p.get("slot_bits", ()))
        self._slot_starts = tuple(p.get("slot_starts", ()))
        self._offsets = np.concatenate([[0], np.cumsum(self._slot_sizes, dtype=np.int64)]).astype(np.int64)

    def _clock(self) -> tuple[int, int]:
        """(step within the sample, 1-based; sample index). Also passes the sync token on: read the
        (possibly unconnected, then all-zero) ``sync_in`` so its channel never fills, send ``sync_out``."""
        self.sync_in.recv()
        self.sync_out.send(np.zeros(1, np.int32))
        return (self.time_step - 1) % self._period + 1, (self.time_step - 1) // self._period

    def _integrate(self, t: int) -> None:
        """Receive every connected slot; Horner-integrate those whose arrival window holds step t."""
        for k in range(len(self._slot_sizes)):
            a = getattr(self, SLOT_PORTS[k]).recv()
            first = self._slot_starts[k] + self.synapse_delay
            if first <= t < first + self._slot_bits[k]:
                lo, hi = self._offsets[k], self._offsets[k + 1]
                prev = 0 if t == first else self.x[lo:hi]
                self.x[lo:hi] = 2 * prev + a.astype(np.int64)

    def _slot_codes(self, k: int) -> np.ndarray:
        return self.x[self._offsets[k]:self._offsets[k + 1]]

    def _gather(self, view: dict) -> np.ndarray:
        """A logical input from the slot integrators through its index map (data movement, folded)."""
        slot, index, const = view["slot"], view["index"], view["const"]
        flat = np.where(slot >= 0, self._offsets[np.maximum(slot, 0)] + index, 0)
        vals = np.where(slot >= 0, self.x[flat] if self.x.size else 0, const)
        return vals.astype(np.int64).reshape(view["shape"])

    def _emit(self, t: int) -> None:
        """Integrate-and-fire with soft reset: spike when v >= 2^(bits-1-i), subtract the threshold."""
        out = np.zeros(self._n, np.int32)
        if self._bits and self._start <= t < self._start + self._bits:
            theta = np.int64(1) << np.int64(self._bits - 1 - (t - self._start))
            s = self.v >= theta
            self.v = self.v - s * theta
            out = s.astype(np.int32)
            self.spikes = self.spikes + int(out.sum())
        self.s_out.send(out)

    def _compute(self, chunk: int) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def run_spk(self) -> None:
        t, chunk = self._clock()
        self._integrate(t)
        if t == self._fire:
            self.v = np.asarray(self._compute(chunk), np.int64).reshape(-1)
        self._emit(t)


@implements(proc=BSEEncoder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyBSEEncoderModel(_NeuronModel):
    data: np.ndarray = LavaPyType(np.ndarray, np.float32)

    def run_spk(self) -> None:
        t, chunk = self._clock()
        if t == 1:
            p = self.proc_params
            x = np.asarray(self.data[chunk], np.float32).reshape(p["shape"])
            self.v = np.asarray(quantize(x, p["scale"], p["zero_point"], self._bits, p["axis"]), np.int64).reshape(-1)
        self._emit(t)


@implements(proc=CodeSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyCodeSourceModel(_NeuronModel):
    data: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        t, chunk = self._clock()
        if t == 1:
            row = np.asarray(self.data[chunk], np.int64)
            table = self.proc_params.get("table")
            self.v = (row if table is None else np.asarray(table, np.int64)[row]).reshape(-1)
        self._emit(t)


@implements(proc=SomaNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PySomaModel(_NeuronModel):
    synapse_delay = 1  # Dense (and IntDense) deliver a step after the spike

    def _compute(self, chunk: int) -> np.ndarray:
        p = self.proc_params
        acc = np.array(p["bias"], dtype=np.int64)
        for k in range(len(self._slot_sizes)):
            acc = acc + self._slot_codes(k)
        if p.get("thresholds") is not None:  # a fused SomaASNC: the ASNC table reads the exact accumulator
            return asnc_evaluate(acc, p["thresholds"], p["slopes"], p["intercepts"], p["shift"], self._bits)
        return requantize(acc, p["scale_in"], p["scale_w"], p["scale_out"], p["zp_out"], self._bits, p["requant"])


@implements(proc=ASNCNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyASNCModel(_NeuronModel):
    def _compute(self, chunk: int) -> np.ndarray:
        p = self.proc_params
        x = self._gather(p["views"][0])
        return asnc_evaluate(x, p["thresholds"], p["slopes"], p["intercepts"], p["shift"], self._bits)


@implements(proc=DecodeMACUnit, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyDecodeMACModel(_NeuronModel):
    def _compute(self, chunk: int) -> np.ndarray:
        p = self.proc_params
        da = self._gather(p["views"][0]) - np.int64(p["zp_a"])
        db = self._gather(p["views"][1]) - np.int64(p["zp_b"])
        acc = np.matmul(da, db) if p["form"] == "matmul" else da * db  # exact: int64, |acc| < 2^46
        return requantize(acc, p["scale_a"], p["scale_b"], p["scale_out"], p["zp_out"], self._bits, p["requant"])


@implements(proc=WTAMaxNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyWTAMaxModel(_NeuronModel):
    def _compute(self, chunk: int) -> np.ndarray:
        p = self.proc_params
        x = self._gather(p["views"][0])
        ax, nb = int(p["axis"]), int(p["in_bits"])
        alive = np.ones(x.shape, bool)
        out = np.zeros(tuple(1 if d == ax else s for d, s in enumerate(x.shape)), np.int64)
        for i in range(nb):  # MSB first: candidates showing 0 drop out when another shows 1
            bid = alive & (((x >> (nb - 1 - i)) & 1) == 1)
            one = bid.any(axis=ax, keepdims=True)
            out = 2 * out + one
            alive = np.where(one, bid, alive)
        return out


@implements(proc=CodeGatherUnit, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyCodeGatherModel(_NeuronModel):
    bad: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=48)

    def _compute(self, chunk: int) -> np.ndarray:
        table = np.asarray(self.proc_params["table"], np.int64)
        idx = self._gather(self.proc_params["views"][0])
        ok = (idx >= 0) & (idx < table.shape[0])
        if not ok.all():  # counted, reported by the runner; the sample's rows for those indices are zeros
            self.bad = self.bad + int((~ok).sum())
        rows = table[np.where(ok, idx, 0)]
        return np.where(ok.reshape(ok.shape + (1,) * (table.ndim - 1)), rows, 0)


@implements(proc=CodeSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyCodeSinkModel(_NeuronModel):
    codes: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=48)

    def _compute(self, chunk: int) -> np.ndarray:
        self.codes[chunk] = self._gather(self.proc_params["views"][0]).reshape(-1)
        return np.zeros(self._n, np.int64)


@implements(proc=IntDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyIntDenseModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=48)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=48)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buff)  # the value accumulated last step: Dense's one-step delay
        s = self.s_in.recv().astype(bool)
        self.a_buff = self.weights[:, s].sum(axis=1).astype(np.int64)
