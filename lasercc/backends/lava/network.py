"""Build a Lava network from a :class:`~lasercc.backends.lava.lower.NetworkPlan` and run it.

Runs in the Python 3.10 environment with lava-nc 0.10.0. Synapses: a Soma slot whose composed weight
matrix fits 8 signed bits is carried by the standard ``lava.proc.dense.Dense``. Its bit-accurate model
(``PyDenseModelBitAcc``) clips weights to 8 bits and, for mixed-sign weights, truncates the lowest bit
(``truncate_weights`` shifts by ``8 - num_weight_bits + 1``); so the weights go in as ``2*W`` with
``weight_exp=-1`` and ``sign_mode=MIXED`` (the accumulated ``sum 2*W*s`` is even, so the right shift by one
is exact). ``num_message_bits=0`` makes Dense read its input as booleans: right for 0/1 spikes. Dense
delivers one step after the spike; :class:`~lasercc.backends.lava.procs.IntDense` (wider weights) copies
that delay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lasercc.backends.lava.lower import NetworkPlan, ProcPlan
from lasercc.errors import ExecutionError


@dataclass
class LavaRun:
    """Codes per graph output (samples stacked on axis 0), measured spikes and simulator timing."""

    codes: dict[str, np.ndarray]
    spikes: dict[str, int] = field(default_factory=dict)
    timesteps: int = 0
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    processes: int = 0

    @property
    def steps_per_second(self) -> float:
        return self.timesteps / self.run_seconds if self.run_seconds else 0.0


def _view_params(plan: ProcPlan) -> list[dict[str, Any]]:
    return [{"shape": v.shape, "slot": v.slot, "index": v.index, "const": v.const} for v in plan.views]


def _make_proc(plan: ProcPlan, period: int, samples: int, host: dict[str, np.ndarray]) -> Any:
    from lasercc.backends.lava import procs as P

    common = {"n": plan.size, "period": period, "start": plan.start, "bits": plan.bits, "fire": plan.fire,
              # a Soma's ports carry weighted sums (one per output neuron); others carry the source's spikes
              "slot_sizes": [plan.size if s.matrix is not None else s.size for s in plan.slots],
              "slot_bits": [s.bits for s in plan.slots],
              "slot_starts": [s.start for s in plan.slots], "name": plan.name}
    if plan.kind == "encoder":
        data = np.asarray(host[plan.host_input], np.float32).reshape(samples, -1)  # type: ignore
        proc = P.BSEEncoder(samples=samples, shape=plan.shape, scale=plan.params["scale"],
                            zero_point=plan.params["zero_point"], axis=plan.params["axis"], **common)
        proc.data.init = data
        return proc
    if plan.kind in ("code_source", "gather"):
        data = np.asarray(host[plan.host_input], np.int64).reshape(samples, -1)  # type: ignore[index]
        proc = P.CodeSource(samples=samples, n_data=data.shape[1], table=plan.params.get("table"), **common)
        proc.data.init = data
        return proc
    cls = {"soma": P.SomaNeurons, "asnc": P.ASNCNeurons, "decode_mac": P.DecodeMACUnit, "wta": P.WTAMaxNeurons,
           "gather_by_code": P.CodeGatherUnit}
    if plan.kind == "sink":
        return P.CodeSink(samples=samples, views=_view_params(plan), **common)
    return cls[plan.kind](views=_view_params(plan), **{**plan.params, **common})


def _synapse(matrix: np.ndarray, name: str) -> Any:
    from lasercc.backends.lava.procs import IntDense

    if matrix.size == 0 or (int(matrix.min()) >= -128 and int(matrix.max()) <= 127):
        from lava.proc.dense.process import Dense
        from lava.utils.weightutils import SignMode

        return Dense(weights=(2 * matrix).astype(np.int32), weight_exp=-1, num_weight_bits=8,
                     sign_mode=SignMode.MIXED, num_message_bits=0, name=f"dense:{name}")
    return IntDense(weights=matrix.astype(np.int64), name=f"intdense:{name}")


def build(plan: NetworkPlan, host: dict[str, np.ndarray], samples: int) -> dict[str, Any]:
    """Create and connect every process; ``host`` holds the graph inputs, ``samples`` rows of chunks."""
    from lasercc.backends.lava.procs import SLOT_PORTS

    procs: dict[str, Any] = {}
    for p in plan.procs:
        proc = _make_proc(p, plan.period, samples, host)
        for k, s in enumerate(p.slots):
            port = getattr(proc, SLOT_PORTS[k])
            if s.matrix is not None:
                syn = _synapse(s.matrix, f"{p.name}/{k}")
                procs[f"{p.name}/syn{k}"] = syn
                procs[s.source].s_out.connect(syn.s_in)
                syn.a_out.connect(port)
            else:
                procs[s.source].s_out.connect(port)
        procs[p.name] = proc
    # Lava runs only what is connected to the process it is started from: tie every process that reads no
    # spikes (host-fed sources, processes of constants) to the first one through the sync ports.
    hub = procs[plan.procs[0].name] if plan.procs else None
    for p in plan.procs[1:]:
        if not p.slots:
            hub.sync_out.connect(procs[p.name].sync_in)
    return procs


def _raise_bad_indices(plan: NetworkPlan, procs: dict[str, Any]) -> None:
    """The reference's error for index codes outside a gather's table (counted by the process, which cannot
    raise mid-run without stalling the network), naming the node like the other backends do."""
    for p in plan.procs:
        if p.kind == "gather_by_code" and int(np.rint(np.asarray(procs[p.name].bad.get(), np.float64)).sum()):
            rows = int(p.params["table"].shape[0])
            raise ExecutionError(f"lava backend failed at %{p.name}: IndexError: index code out of range "
                                 f"[0, {rows}) in gather %{p.name}")


def run_plan(plan: NetworkPlan, host: dict[str, np.ndarray], samples: int) -> LavaRun:
    """Build, run ``samples * period`` steps in ``Loihi2SimCfg(select_tag="fixed_pt")``, read the sinks."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    t0 = time.perf_counter()
    procs = build(plan, host, samples)
    steps = plan.period * samples
    anchor = next(iter(procs.values()))
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    anchor.create_runtime(run_cfg=cfg)  # compile + spawn the processes (timed apart from the run)
    t1 = time.perf_counter()
    try:
        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        t2 = time.perf_counter()
        codes = {}
        for out, sink in plan.outputs.items():
            codes[out] = np.rint(np.asarray(procs[sink].codes.get(), np.float64)).astype(np.int64)  # get() gives floats
        spikes = {p.name: int(np.asarray(procs[p.name].spikes.get()).sum()) for p in plan.procs if p.bits}
        _raise_bad_indices(plan, procs)
    finally:
        anchor.stop()
    return LavaRun(codes, spikes, steps, t1 - t0, t2 - t1, len(procs))
