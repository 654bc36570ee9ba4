"""``lasercc inspect``: print an artifact's IR, node counts, latency and partition summary;
``--plot`` writes a PNG core-occupancy map (from ``partition.json``, or a fresh default partition)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from lasercc.commands.common import table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show an artifact's IR, node counts and latency",
                       description="Print the IR text of an artifact or .lir file, how many nodes of each kind it "
                                   "has, its constants and its critical-path latency in timesteps.")
    p.add_argument("artifact", help="artifact directory or .lir file")
    p.add_argument("--no-ir", action="store_true", help="omit the IR text")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--plot", metavar="PNG", help="write a core-occupancy map of the partition (partition.json, "
                                                 "else partition with --system); needs the 'plot' extra")
    p.add_argument("--system", default="auto",
                   help="Loihi 2 system to partition onto when the artifact has no partition.json (default auto: "
                        "kapoho-point when the graph fits it, else the smallest system that does)")
    p.set_defaults(func=run)


def summary(graph) -> dict:
    from lasercc.backends.stats import critical_path

    counts = Counter(n.op for n in graph.nodes)
    params = sum(int(v.size) for v in graph.constants.values())
    return {"graph": graph.name, "nodes": dict(sorted(counts.items())), "constants": len(graph.constants),
            "constant_elements": params, "inputs": {n.name: list(n.type.shape) for n in graph.inputs},
            "outputs": list(graph.outputs), "latency_steps": critical_path(graph)}


def saved_partition(art) -> dict[str, Any] | None:
    """The artifact's ``partition.json`` as a dict, or None when it has none."""
    from lasercc.ir.artifact import read_json_object
    from lasercc.passes.partition import PARTITION_FILE

    if art.path is None or not (Path(art.path) / PARTITION_FILE).exists():
        return None
    return read_json_object(Path(art.path) / PARTITION_FILE, "partition file")


def partition_lines(p: dict[str, Any]) -> list[str]:
    """A few lines summarising a ``partition.json`` (the same facts as ``Partition.report``)."""
    u, t = p.get("utilisation", {}), p.get("traffic_per_row", {})
    naive = p.get("naive", {})
    return [
        f"partition: {p.get('system')} ({p.get('chips_available')} chips x {p.get('cores_per_chip')} cores), "
        f"{p.get('cores_used', 0):,} cores and {p.get('chips_used')} chip(s) used, {p.get('tiles', 0):,} tiles",
        "  utilisation: " + ", ".join(f"{k} {v:.1%}" for k, v in u.items())
        + f"; binding resource: {p.get('binding_resource')}",
        f"  spike messages per row: {t.get('messages', 0):,.0f} (inter-chip {t.get('inter_chip', 0):,.0f}); "
        f"traffic x hops {t.get('hops', 0):,.0f}; naive in-order mapping: {naive.get('cores_used', 0):,} cores, "
        f"traffic x hops {naive.get('traffic_per_row', {}).get('hops', 0):,.0f}"
        + (f" ({red:.2f}x more)" if (red := p.get('traffic_x_hops_reduction', 1)) != float("inf") else ""),
    ]


def _plot(art, saved: dict[str, Any] | None, path: str, system: str) -> str:
    from lasercc.passes.partition import partition_graph
    from lasercc.passes.partition_plot import _matplotlib, plot_occupancy

    _matplotlib()  # fail fast, before partitioning, when the extra is missing
    part = saved if saved is not None else partition_graph(art.graph, system=system).to_json()
    plot_occupancy(part, path)
    src = "partition.json" if saved is not None else f"a fresh partition onto {part.get('system')}"
    return f"wrote core-occupancy map {path} (from {src})"


def run(args: argparse.Namespace) -> int:
    from lasercc.ir.artifact import load

    art = load(args.artifact)
    s = summary(art.graph)
    saved = saved_partition(art)
    if args.json:
        extra = {"partition": {k: v for k, v in saved.items() if k not in ("cores", "spec", "layer_tiling")}} \
            if saved else {}
        print(json.dumps({**s, "manifest": art.manifest, **extra}, indent=2, default=str))
    else:
        if not args.no_ir:
            print(art.graph.text())
        print(table([[k, v] for k, v in s["nodes"].items()], ["node kind", "count"]))
        print(f"constants: {s['constants']} ({s['constant_elements']:,} elements)")
        print(f"latency: {s['latency_steps']} timesteps on the critical path")
        if saved:
            print("\n".join(partition_lines(saved)))
    if args.plot:
        msg = _plot(art, saved, args.plot, args.system)
        if not args.json:
            print(msg)
    return 0
