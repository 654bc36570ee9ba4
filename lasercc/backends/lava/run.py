"""Run a compiled artifact in Lava's CPU simulator (fixed point): the entry the artifact's ``lava/`` calls.

    .venv-lava/bin/python -m lasercc.backends.lava.run ARTIFACT --input x.npz --output y.npz [--stats s.json]

Inputs are validated and split into batches exactly as for the other backends
(:func:`lasercc.backends.run.validate_inputs`); all batches run back to back in one Lava network, ``period`` steps
each. The output ``.npz`` holds, per graph output, the dequantized values and ``<name>.codes``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np


def run_artifact(graph: Any, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Lower and run ``graph`` on ``inputs``; returns (codes per output, Lava run facts)."""
    from lasercc.backends.lava.lower import lower
    from lasercc.backends.lava.network import run_plan
    from lasercc.backends.run import validate_inputs as _validate

    feeds, samples = _validate(graph, inputs)
    plan = lower(graph)
    res = run_plan(plan, feeds, samples)
    codes = {}
    for o, c in res.codes.items():
        shape = tuple(graph.type_of(o).shape)
        codes[o] = c.reshape((samples * shape[0],) + shape[1:]) if shape else c.reshape(())
    facts = {"timesteps": res.timesteps, "period_steps": plan.period, "samples": samples,
             "processes": res.processes, "build_seconds": res.build_seconds, "run_seconds": res.run_seconds,
             "steps_per_second": res.steps_per_second, "spikes": res.spikes, "network": plan.summary()["counts"]}
    return codes, facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lasercc-lava", description=__doc__.splitlines()[0])
    ap.add_argument("artifact", help="artifact directory or .lir file")
    ap.add_argument("--input", "-i", required=True, help=".npz with one array per graph input")
    ap.add_argument("--output", "-o", help="write values and <name>.codes to this .npz")
    ap.add_argument("--stats", help="write the Lava run facts (timesteps, speed, spikes) as JSON")
    args = ap.parse_args(argv)
    from lasercc.errors import LasercError
    from lasercc.ir.artifact import load
    from lasercc.ir.data import read_npz
    from lasercc.semantics.quant import dequantize

    try:
        graph = load(args.artifact).graph
        codes, facts = run_artifact(graph, read_npz(args.input))
    except LasercError as e:
        print(f"lasercc lava: error: {e}", file=sys.stderr)
        return 2
    payload: dict[str, np.ndarray] = {}
    for o, c in codes.items():
        t = graph.type_of(o)
        payload[o] = dequantize(c, np.asarray(t.scale), np.asarray(t.zero_point), t.axis)
        payload[f"{o}.codes"] = c
    if args.output:
        np.savez(args.output, **payload)
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(facts, f, indent=2)
    print(f"lava: {facts['timesteps']} timesteps ({facts['samples']} sample(s) x {facts['period_steps']}), "
          f"{facts['processes']} processes, {facts['steps_per_second']:.1f} timesteps/s "
          f"(build {facts['build_seconds']:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
