"""``lasercc inspect``: print an artifact's IR, node counts and latency."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from lasercc.commands.common import table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show an artifact's IR, node counts and latency",
                       description="Print the IR text of an artifact or .lir file, how many nodes of each kind it "
                                   "has, its constants and its critical-path latency in timesteps.")
    p.add_argument("artifact", help="artifact directory or .lir file")
    p.add_argument("--no-ir", action="store_true", help="omit the IR text")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def summary(graph) -> dict:
    from lasercc.backends.stats import critical_path

    counts = Counter(n.op for n in graph.nodes)
    params = sum(int(v.size) for v in graph.constants.values())
    return {"graph": graph.name, "nodes": dict(sorted(counts.items())), "constants": len(graph.constants),
            "constant_elements": params, "inputs": {n.name: list(n.type.shape) for n in graph.inputs},
            "outputs": list(graph.outputs), "latency_steps": critical_path(graph)}


def run(args: argparse.Namespace) -> int:
    from lasercc.ir.artifact import load

    art = load(args.artifact)
    s = summary(art.graph)
    if args.json:
        print(json.dumps({**s, "manifest": art.manifest}, indent=2, default=str))
        return 0
    if not args.no_ir:
        print(art.graph.text())
    print(table([[k, v] for k, v in s["nodes"].items()], ["node kind", "count"]))
    print(f"constants: {s['constants']} ({s['constant_elements']:,} elements)")
    print(f"latency: {s['latency_steps']} timesteps on the critical path")
    return 0
