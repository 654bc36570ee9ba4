"""``lasercc profile``: energy and time of an artifact on Loihi 2 (from counted events and cited
constants) next to the same model on a GPU (Horowitz 45 nm estimate; NVML-measured when given).

Every figure is an estimate: Loihi 2 per-operation energies are not published (see
:mod:`lasercc.hw.energy`); the table says so, so that no number is read as a measurement.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lasercc.commands.common import table
from lasercc.errors import LasercError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="estimate energy and time on Loihi 2 vs a GPU",
                       description="Run an artifact on the NumPy backend, count its events per node and price them "
                                   "with cited Loihi 2 (Loihi-1-derived) and GPU (Horowitz 45 nm) constants.")
    p.add_argument("artifact", help="artifact directory (from lasercc compile)")
    p.add_argument("--input", metavar="NPZ", help="inputs (.npz, one array per input name); default: the "
                                                  "manifest's calibration file, else a seeded synthetic input")
    p.add_argument("--json", action="store_true", help="print the full profile as JSON")
    p.add_argument("--plot", metavar="PNG", help="write a bar chart of energy per node kind (needs the 'plot' extra)")
    p.add_argument("--energy-constants", metavar="JSON", help="override energy constants (keys of "
                                                              "lasercc/hw/energy_constants.json)")
    p.add_argument("--gpu-measured", metavar="JSON", help="bench/torch_throughput.py --json result with NVML power")
    p.set_defaults(func=run)


def _uj(pj: float) -> str:
    return f"{pj * 1e-6:,.3f}"


def report(prof) -> str:  # noqa: ANN001 - a lasercc.backends.profiler.Profile
    """The human-readable profile: per node kind, totals, per inference / token, Loihi vs GPU."""
    t = prof.totals()
    rows = [[k, int(v["nodes"]), _uj(v["loihi_pj"]), f"{v['loihi_share']:.1%}", _uj(v["gpu_pj"]),
             f"{v['gpu_share']:.1%}"] for k, v in prof.by_kind().items()]
    lines = [f"profile of {prof.graph}: {prof.rows} row(s) in {prof.batches} batch(es), {prof.tokens} token(s); "
             f"inputs: {prof.input_source}",
             f"spike hops: {prof.hops.source}; {prof.cores} core(s) on {prof.chips} chip(s)",
             table(rows, ["node kind", "nodes", "Loihi 2 uJ", "share", "GPU est. uJ", "share"]), ""]
    parts = prof.parts()
    lines.append("Loihi 2 energy by event: " + ", ".join(f"{k} {_uj(v)} uJ" for k, v in parts.items() if v))
    totals = [
        ["Loihi 2 dynamic (Davies 2018 costs)", _uj(t["loihi_dynamic_pj"])],
        ["Loihi 2 static (0.5 W/chip x time, assumption)", _uj(t["loihi_static_pj"])],
        ["Loihi 2 total", _uj(t["loihi_pj"])],
        ["  of which DecodeMAC (x86 cores)", f"{_uj(t['decodemac_pj'])} ({t['decodemac_share_of_loihi']:.1%} of "
                                             f"total, {t['decodemac_share_of_dynamic']:.1%} of dynamic)"],
        ["Loihi 2 dynamic, SANA-FE calibrated costs", _uj(t["loihi_sanafe_dynamic_pj"])],
        ["Hala Point 15 TOPS/W cross-check (2 ops/synaptic event)", _uj(t["hala_point_crosscheck_pj"])],
        ["GPU estimate (Horowitz 45 nm op counts, not measured)", _uj(t["gpu_estimate_45nm_pj"])],
        ["Loihi 2 total / GPU estimate", f"{t['loihi_over_gpu_estimate']:.3g}" if t["loihi_over_gpu_estimate"]
         else "-"],
        ["Loihi 2 per inference row", _uj(t["loihi_pj_per_inference"])],
        ["Loihi 2 per token", _uj(t["loihi_pj_per_token"])],
        ["GPU estimate per token", _uj(t["gpu_estimate_pj_per_token"])],
    ]
    totals += [[f"GPU measured per token, NVML ({k})", _uj(v)] for k, v in t.items() if k.startswith("gpu_measured")]
    lines.append(table(totals, ["total", "uJ"]))
    lines.append(f"time on Loihi 2: {t['latency_steps']:,} steps x {t['loihi_step_ns']:,.0f} ns per step (+ DecodeMAC) "
                 f"per batch -> {t['loihi_time_s'] * 1e3:,.3f} ms for the run")
    lines += [f"note: {n}" for n in prof.notes]
    return "\n".join(lines)


def plot(prof, path: str | Path) -> None:  # noqa: ANN001
    """Bar chart (log scale) of energy per node kind: Loihi 2 estimate vs GPU 45 nm estimate."""
    try:
        import matplotlib
    except ImportError:
        raise LasercError("--plot needs matplotlib: pip install 'lasercc[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = {k: v for k, v in prof.by_kind().items() if v["loihi_pj"] or v["gpu_pj"]}
    names = list(kinds) + ["static"]
    loihi = [kinds[k]["loihi_pj"] * 1e-6 for k in kinds] + [prof.static_pj * 1e-6]
    gpu = [kinds[k]["gpu_pj"] * 1e-6 for k in kinds] + [0.0]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 4.5))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], loihi, width=0.4, label="Loihi 2 (Loihi-1-derived estimate)")
    ax.bar([i + 0.2 for i in x], gpu, width=0.4, label="GPU (Horowitz 45 nm estimate)")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylabel("energy per run (uJ)")
    ax.set_title(f"{prof.graph}: energy per node kind ({prof.rows} rows)")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as e:
        raise LasercError(f"cannot write {path}: {e}") from None
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from lasercc.backends.profiler import profile
    from lasercc.commands.common import read_npz
    from lasercc.ir.artifact import load

    art = load(args.artifact)
    if args.energy_constants and not Path(args.energy_constants).is_file():
        raise LasercError(f"no such energy constants file: {args.energy_constants}")
    inputs = read_npz(args.input) if args.input else None
    prof = profile(art, inputs=inputs, constants=args.energy_constants, gpu_measured=args.gpu_measured)
    if args.json:
        print(json.dumps(prof.to_json(), indent=2, default=str))
    else:
        print(report(prof))
    if args.plot:
        plot(prof, args.plot)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0
