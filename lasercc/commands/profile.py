"""``lasercc profile``: energy and time of an artifact on Loihi 2 (from counted events and cited
constants) next to the same model on a GPU (a roofline model; NVML-measured when given).

Every figure is an estimate printed as a range (central [low .. high]) with its main driver:
Loihi 2 per-operation energies are not published (see :mod:`lasercc.hw.energy`), and the table
says so, so that no number is read as a measurement.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lasercc.commands.common import table
from lasercc.errors import LasercError


def register(sub: argparse._SubParsersAction) -> None:
    from lasercc.hw.gpu import default_gpu, gpu_names

    p = sub.add_parser("profile", help="estimate energy and time on Loihi 2 vs a GPU",
                       description="Run an artifact on the NumPy backend, count its events per node and price them "
                                   "with cited Loihi 2 constants and a GPU roofline model, like for like: dynamic "
                                   "energy, and total = dynamic + static power x time. Every figure is a range.")
    p.add_argument("artifact", help="artifact directory (from lasercc compile)")
    p.add_argument("--input", metavar="NPZ", help="inputs (.npz, one array per input name); default: the "
                                                  "manifest's calibration file, else a seeded synthetic input")
    p.add_argument("--json", action="store_true", help="print the full profile as JSON")
    p.add_argument("--plot", metavar="PNG", help="write a bar chart of energy per node kind (needs the 'plot' extra)")
    p.add_argument("--energy-constants", metavar="JSON", help="override energy constants (keys of "
                                                              "lasercc/hw/energy_constants.json)")
    p.add_argument("--gpu-measured", metavar="JSON", help="bench/torch_throughput.py --json result with NVML power")
    p.add_argument("--gpu", choices=gpu_names(), default=None,
                   help=f"GPU to compare against (default {default_gpu()}: the edge GPU of the published Loihi 2 "
                        "LLM measurement, Abreu et al. 2025)")
    p.add_argument("--gpu-constants", metavar="JSON", help="override GPU constants (keys of "
                                                           "lasercc/hw/gpu_constants.json)")
    p.add_argument("--tokens-per-s", type=float, metavar="RATE",
                   help="report totals at this throughput: each side pays its static power for tokens / RATE "
                        "seconds (or its own run time if longer)")
    p.add_argument("--sweep-batch", metavar="B,B,..",
                   help="also print GPU energy per token and the Loihi/GPU ratio at these GPU batch sizes "
                        "(weights re-read once per batch)")
    p.set_defaults(func=run)


def _uj(pj: float) -> str:
    return f"{pj * 1e-6:,.3f}"


def report(prof) -> str:  # noqa: ANN001 - a lasercc.backends.profiler.Profile
    """The human-readable profile: per node kind, like-for-like totals as ranges, per token."""
    t = prof.totals()
    r = prof.ranges
    rows = [[k, int(v["nodes"]), _uj(v["loihi_pj"]), f"{v['loihi_share']:.1%}", _uj(v["gpu_pj"]),
             f"{v['gpu_share']:.1%}"] for k, v in prof.by_kind().items()]
    lines = [f"profile of {prof.graph}: {prof.rows} row(s) in {prof.batches} batch(es), {prof.tokens} token(s); "
             f"inputs: {prof.input_source}",
             f"spike hops: {prof.hops.source}; {prof.cores} core(s) on {prof.chips} chip(s); GPU: {prof.gpu.label}",
             table(rows, ["node kind", "nodes", "Loihi 2 dyn. uJ", "share", "GPU dyn. uJ", "share"]), ""]
    parts = prof.parts()
    lines.append("Loihi 2 energy by event: " + ", ".join(f"{k} {_uj(v)} uJ" for k, v in parts.items() if v))
    lines.append("GPU energy by part: " + ", ".join(f"{k} {_uj(v)} uJ" for k, v in prof.gpu_parts().items() if v))
    tok = 1e-6 / max(prof.tokens, 1)
    where = (f"at the stated {prof.tokens_per_s:g} tokens/s" if prof.tokens_per_s else
             "each side at its own modelled throughput")
    rt = [["Loihi 2 dynamic", r["loihi_dynamic_pj"].fmt(tok)],
          ["Loihi 2 static (chips x static power x time)", r["loihi_static_pj"].fmt(tok)],
          ["Loihi 2 total", r["loihi_total_pj"].fmt(tok)],
          [f"GPU dynamic ({prof.gpu.name})", r["gpu_dynamic_pj"].fmt(tok)],
          ["GPU static (busy floor x run time [+ idle x rest])", r["gpu_static_pj"].fmt(tok)],
          ["GPU total", r["gpu_total_pj"].fmt(tok)],
          ["Loihi / GPU, dynamic", r["loihi_over_gpu_dynamic"].fmt()],
          ["Loihi / GPU, total", r["loihi_over_gpu_total"].fmt()]]
    lines.append(f"per token, uJ, central [low .. high], {where}:")
    lines.append(table(rt, ["figure", "value"]))
    lines.append(f"time per token: Loihi 2 {r['loihi_time_s'].fmt(1e3 / max(prof.tokens, 1))} ms; "
                 f"GPU {r['gpu_time_s'].fmt(1e3 / max(prof.tokens, 1))} ms")
    if prof.tokens_per_s:
        wall = prof.tokens / prof.tokens_per_s
        for side, own in (("Loihi 2", prof.time_s), ("GPU", prof.priced.gpu_time_s)):
            if own > wall:
                lines.append(f"note: {side} cannot sustain {prof.tokens_per_s:g} tokens/s at central constants "
                             f"(modelled {prof.tokens / own:,.4g} tokens/s); its figures use its own time")
    refs = [["DecodeMAC (x86 cores), central", f"{_uj(t['decodemac_pj'])} uJ ({t['decodemac_share_of_dynamic']:.1%} "
                                               "of Loihi dynamic)"],
            ["Loihi 2 dynamic at SANA-FE's Loihi 1 costs", f"{_uj(t['loihi_sanafe_dynamic_pj'])} uJ"],
            ["Hala Point 15 TOPS/W cross-check (2 ops/synaptic event)", f"{_uj(t['hala_point_crosscheck_pj'])} uJ"],
            ["GPU at Horowitz 45 nm op energies (no idle, reference)", f"{_uj(t['gpu_45nm_reference_pj'])} uJ"]]
    for k, v in t.items():
        if k.startswith("gpu_measured"):
            refs.append([f"GPU measured per token, NVML ({k[len('gpu_measured_pj_per_token'):]})", f"{_uj(v)} uJ"])
        if k.startswith("gpu_model_over_measured"):
            refs.append([f"GPU model / measured {k[len('gpu_model_over_measured'):]}", f"{v:.3g}"])
    lines.append(table(refs, ["reference (whole run)", "value"]))
    lines.append(f"Loihi 2 steps: {t['latency_steps']:,} x {t['loihi_step_ns']:,.0f} ns per step "
                 "(+ DecodeMAC) per batch")
    lines += [f"note: {n}" for n in prof.notes]
    return "\n".join(lines)


def sweep_batch(prof, batches: list[int]) -> str:  # noqa: ANN001
    """GPU energy per token at other batch sizes: weight traffic per token falls as 1 / batch."""
    from lasercc.backends.profiler import Counts, profile_counts

    c = prof.counts
    per_batch = c.rows / max(c.batches, 1)  # rows one execution of the graph holds
    if per_batch <= 0:
        raise LasercError("the profile has no rows to re-batch")
    keep = ("bits", "dram_weight_bytes")
    rows = []
    for b in batches:
        one = [type(n)(n.name, n.op, n.events, {k: (v if k in keep else v / per_batch) for k, v in n.gpu_ops.items()})
               for n in c.nodes]
        cc = Counts(**{**c.__dict__, "nodes": one, "gpu_rows": float(b), "gpu_batches": c.rows / b})
        p = profile_counts(cc, gpu=prof.gpu.name, tokens_per_s=prof.tokens_per_s)
        tok = 1e-6 / max(p.tokens, 1)
        rows.append([b, p.ranges["gpu_total_pj"].fmt(tok), p.ranges["loihi_total_pj"].fmt(tok),
                     p.ranges["loihi_over_gpu_total"].fmt()])
    return table(rows, ["GPU batch", "GPU total uJ/token", "Loihi 2 total uJ/token", "Loihi / GPU total"])


def plot(prof, path: str | Path) -> None:  # noqa: ANN001
    """Bar chart (log scale) of energy per node kind: Loihi 2 vs the GPU model (central constants), static included."""
    try:
        import matplotlib
    except ImportError:
        raise LasercError("--plot needs matplotlib: pip install 'lasercc[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = {k: v for k, v in prof.by_kind().items() if v["loihi_pj"] or v["gpu_pj"]}
    names = list(kinds) + ["static"]
    loihi = [kinds[k]["loihi_pj"] * 1e-6 for k in kinds] + [prof.static_pj * 1e-6]
    gpu = [kinds[k]["gpu_pj"] * 1e-6 for k in kinds] + [prof.priced.gpu_static_pj * 1e-6]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 4.5))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], loihi, width=0.4, label="Loihi 2 (central estimate)")
    ax.bar([i + 0.2 for i in x], gpu, width=0.4, label=f"GPU ({prof.gpu.label}, roofline model)")
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


def _batches(text: str) -> list[int]:
    try:
        out = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise LasercError(f"--sweep-batch takes comma-separated positive integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise LasercError(f"--sweep-batch takes comma-separated positive integers, got {text!r}")
    return out


def run(args: argparse.Namespace) -> int:
    from lasercc.backends.profiler import profile
    from lasercc.commands.common import read_npz
    from lasercc.ir.artifact import load

    art = load(args.artifact)
    if args.energy_constants and not Path(args.energy_constants).is_file():
        raise LasercError(f"no such energy constants file: {args.energy_constants}")
    inputs = read_npz(args.input) if args.input else None
    if args.gpu_constants and not Path(args.gpu_constants).is_file():
        raise LasercError(f"no such GPU constants file: {args.gpu_constants}")
    batches = _batches(args.sweep_batch) if args.sweep_batch else []
    prof = profile(art, inputs=inputs, constants=args.energy_constants, gpu_measured=args.gpu_measured,
                   gpu=args.gpu, gpu_constants=args.gpu_constants, tokens_per_s=args.tokens_per_s)
    if args.json:
        print(json.dumps(prof.to_json(), indent=2, default=str))
    else:
        print(report(prof))
        if batches:
            print(sweep_batch(prof, batches))
    if args.plot:
        plot(prof, args.plot)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0
