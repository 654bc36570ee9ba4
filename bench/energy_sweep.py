"""When does Loihi 2 pay? Energy per token and latency vs a GPU over model size, context length and GPU batch.

Models: tiny_gpt (the example, compiled and run: counted events), and GPT-2-small and LLaMA-2-7B
shapes built by ``bench/partition_llama7b.py``'s ``llama_graph`` (LLaMA-style blocks; weights are
shape-only, so events are *expected* counts at the spike density measured on tiny_gpt:
:mod:`lasercc.hw.activity`). Each model is partitioned once (Kapoho Point if it fits, else Hala
Point; its hops, chips and cores feed the Loihi side) and priced by :func:`lasercc.backends.profiler.price`
at the low / central / high corners of every constant; one token = one execution of the graph
(decode with a KV cache of ``context`` tokens). Loihi runs tokens one after another (no
pipelining across tokens: conservative); the GPU runs ``batch`` tokens per batch, reading the
weights once per batch. Energy per token is each side's total (dynamic + static power x its own
time). The crossover is the smallest GPU batch at which the GPU's central total per token falls
below Loihi's; "surely" when even the GPU's high corner is below Loihi's low corner.

    .venv/bin/python bench/energy_sweep.py [--gpu jetson-orin-nano] [--out bench/results/energy_sweep.md]

Writes energy_sweep.md, energy_sweep.csv and (when matplotlib is installed) energy_sweep.png.
Targets: a few minutes on 2 cores (the 7B partition dominates).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lasercc
from lasercc.backends.profiler import Counts, count, metrics, price, shape_counts
from lasercc.hw.activity import measured_density
from lasercc.hw.energy import load_constants
from lasercc.hw.gpu import default_gpu, load_gpu
from lasercc.ir.artifact import load
from lasercc.passes.partition import PartitionError, partition_graph

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent / "examples" / "models"
BATCHES = (1, 4, 16, 64, 256)
CONTEXTS = (128, 512, 2048)
SHAPES = {"gpt2-small": {"layers": 12, "d": 768, "ffn": 3072, "heads": 12, "vocab": 50257},
          "llama2-7b": {"layers": 32, "d": 4096, "ffn": 11008, "heads": 32, "vocab": 32000}}


def _llama_graph():  # noqa: ANN202 - bench/partition_llama7b.py is a script, not a package
    spec = importlib.util.spec_from_file_location("partition_llama7b", HERE / "partition_llama7b.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.llama_graph


def _partition(graph) -> dict:  # noqa: ANN001
    for system in ("kapoho-point", "hala-point"):
        try:
            return partition_graph(graph, system=system).to_json(cores=False)
        except PartitionError:
            continue
    raise SystemExit(f"{graph.name} fits neither Kapoho Point nor Hala Point")


def tiny_gpt() -> tuple[Counts, float, dict]:
    """tiny_gpt compiled for Loihi 2, run on one calibration row: counts, measured density, partition."""
    from lasercc.runtime import run_graph

    with np.load(MODELS / "tiny_gpt.calib.npz") as z:
        ids = z["input_ids"][:1]
    with tempfile.TemporaryDirectory() as d:
        art = lasercc.compile(str(MODELS / "tiny_gpt.qdq.onnx"), target="loihi2",
                              calibration=str(MODELS / "tiny_gpt.calib.npz"), progress=False)
        art.save(Path(d) / "art")
        art = load(Path(d) / "art")
        counts, _ = count(art, {"input_ids": ids})
        st = run_graph(art.graph, {"input_ids": ids}).stats
        import json

        part = json.loads((Path(d) / "art" / "partition.json").read_text())
    return counts, measured_density(st, art.graph), part


KEYS = ("loihi_total_pj", "gpu_total_pj", "loihi_time_s", "gpu_time_s", "loihi_dynamic_pj", "gpu_dynamic_pj")


def corner_metrics(c: Counts, gpu: str) -> dict[str, tuple[float, ...]]:
    """(low, mid, high) per token of each of KEYS."""
    out: dict[str, list[float]] = {}
    for corner in ("low", "mid", "high"):
        m = metrics(c, price(c, load_constants(corner=corner), load_gpu(gpu, corner=corner)))
        for k in KEYS:
            out.setdefault(k, []).append(m[k] / c.tokens)
    return {k: tuple(v) for k, v in out.items()}


def per_token(counts: Counts, gpu: str, batch: int) -> dict[str, tuple[float, ...]]:
    """Per-token corners of a one-token-per-execution ``counts`` with the GPU at ``batch`` tokens per batch."""
    if counts.rows != counts.tokens or counts.gpu_rows != 1.0:
        raise ValueError("per_token expects one token per execution")
    c2 = Counts(**{**counts.__dict__, "gpu_rows": float(batch), "gpu_batches": counts.tokens / batch})
    return corner_metrics(c2, gpu)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", default=default_gpu())
    ap.add_argument("--out", type=Path, default=HERE / "results" / "energy_sweep.md")
    ap.add_argument("--skip-7b", action="store_true", help="leave out the LLaMA-7B shapes (the slow partition)")
    args = ap.parse_args(argv)
    llama_graph = _llama_graph()
    t0 = time.perf_counter()
    gpt_counts, density, gpt_part = tiny_gpt()
    # tiny_gpt runs a 16-token row per execution: per-token figures divide by 16; GPU batches of rows
    rows: list[dict] = []
    models: list[tuple[str, int, Counts, dict]] = []
    tg = Counts(**{**gpt_counts.__dict__})
    models.append(("tiny_gpt (16-token rows, counted)", 0, tg, gpt_part))
    parts: dict[str, dict] = {}
    for name, cfg in SHAPES.items():
        if name == "llama2-7b" and args.skip_7b:
            continue
        ref = llama_graph(**cfg, context=512)
        parts[name] = _partition(ref)
        for ctx in CONTEXTS:
            g = llama_graph(**cfg, context=ctx)
            models.append((name, ctx, shape_counts(g, density, tokens=1, part=parts[name]), parts[name]))
    for name, ctx, counts, part in models:
        for b in BATCHES:
            if name.startswith("tiny"):
                c = Counts(**{**counts.__dict__})
                per_batch = c.rows / max(c.batches, 1)
                c.nodes = [type(n)(n.name, n.op, n.events, {k: (v if k in ("bits", "dram_weight_bytes")
                                                                else v / per_batch) for k, v in n.gpu_ops.items()})
                           for n in c.nodes]
                c.gpu_rows, c.gpu_batches = float(b), c.rows / b
                pt = corner_metrics(c, args.gpu)
                bt = b * 16
            else:
                pt = per_token(counts, args.gpu, b)
                bt = b
            rows.append({"model": name, "context": ctx or 16, "gpu_batch_tokens": bt,
                         "system": part.get("system"), "chips": part.get("chips_used"), "cores": part.get("cores_used"),
                         **{f"{k}_{c}": v[i] * (1e-12 if k.endswith("_pj") else 1.0)
                            for k, v in pt.items() for i, c in enumerate(("low", "mid", "high"))}})
    elapsed = time.perf_counter() - t0

    # ---- crossover per (model, context) -------------------------------------------------------------
    lines = ["| model | context | Loihi 2 system (chips, cores) | GPU batch (tokens) | Loihi 2 J/token: central "
             "[low .. high] | GPU J/token | Loihi 2 ms/token | GPU ms/token | cheaper (central) |",
             "|---|---|---|---|---|---|---|---|---|"]
    cross = []
    for key in dict.fromkeys((r["model"], r["context"]) for r in rows):
        sub = [r for r in rows if (r["model"], r["context"]) == key]
        first = next((r for r in sub if r["gpu_total_pj_mid"] < r["loihi_total_pj_mid"]), None)
        sure = next((r for r in sub if r["gpu_total_pj_high"] < r["loihi_total_pj_low"]), None)
        never = f"never (up to {sub[-1]['gpu_batch_tokens']})"
        cross.append(f"| {key[0]} | {key[1]} | {first['gpu_batch_tokens'] if first else never} | "
                     f"{sure['gpu_batch_tokens'] if sure else 'not within the ranges'} |")
        for r in sub:
            lines.append(
                f"| {r['model']} | {r['context']} | {r['system']} ({r['chips']}, {r['cores']}) | "
                f"{r['gpu_batch_tokens']} | "
                f"{r['loihi_total_pj_mid']:.3g} [{r['loihi_total_pj_low']:.2g} .. {r['loihi_total_pj_high']:.2g}] | "
                f"{r['gpu_total_pj_mid']:.3g} [{r['gpu_total_pj_low']:.2g} .. {r['gpu_total_pj_high']:.2g}] | "
                f"{r['loihi_time_s_mid'] * 1e3:.3g} | {r['gpu_time_s_mid'] * 1e3:.3g} | "
                f"{'GPU' if r['gpu_total_pj_mid'] < r['loihi_total_pj_mid'] else 'Loihi 2'} |")
    gpu_label = load_gpu(args.gpu).label
    csv_path = args.out.with_suffix(".csv")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    png = _plot(rows, args.out.with_suffix(".png"), gpu_label)
    text = "\n".join([
        f"# When does Loihi 2 pay? Energy per token and latency vs {gpu_label}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, Python "
        f"{platform.python_version()}; model estimates only (no hardware measured). {elapsed:.0f} s.",
        f"Command: `.venv/bin/python bench/energy_sweep.py --gpu {args.gpu}`",
        "",
        f"Spike density (set bits / code bits) measured on tiny_gpt's calibration row: {density:.3f}; the "
        "GPT-2-small and LLaMA-7B rows use it for expected events (their weights are shape-only). Per token: one "
        "decode step with a KV cache of `context` tokens (tiny_gpt: a 16-token row, per token). Loihi 2: tokens "
        "run one after another; GPU: `batch` tokens share one weight read.",
        "",
        "Crossover (smallest GPU batch, in tokens, at which the GPU's total energy per token is below Loihi 2's):",
        "",
        "| model | context | central | surely (GPU high < Loihi low) |",
        "|---|---|---|---|",
        "\n".join(cross),
        "",
        "\n".join(lines),
        "",
        f"CSV: {csv_path.name}" + (f"; plot: {png.name} (ranges shaded, crossover marked)" if png else
                                    "; no plot (matplotlib not installed)"),
        "",
        "What this can and cannot say: totals include each side's static power over its own modelled time, so a "
        "Loihi system whose steps are event-bound (few cores) pays static energy per token that no batch size "
        "amortises, while the GPU's per-token weight traffic and busy power fall as 1/batch. The Loihi per-event "
        "energy is uncertain by ~two orders of magnitude (see the low corner); the ranges say so.",
    ])
    print(text)
    args.out.write_text(text + "\n")
    return 0


def _plot(rows: list[dict], path: Path, gpu_label: str) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys((r["model"], r["context"]) for r in rows))
    keys = [k for k in keys if k[1] in (16, 512)]
    fig, axes = plt.subplots(2, len(keys), figsize=(4.2 * len(keys), 7), squeeze=False)
    for j, key in enumerate(keys):
        sub = [r for r in rows if (r["model"], r["context"]) == key]
        x = [r["gpu_batch_tokens"] for r in sub]
        for i, (metric, unit, lab) in enumerate((("total_pj", 1.0, "J / token"), ("time_s", 1e3, "ms / token"))):
            ax = axes[i][j]
            for side, color in (("loihi", "tab:blue"), ("gpu", "tab:orange")):
                lo = [r[f"{side}_{metric}_low"] * unit for r in sub]
                mid = [r[f"{side}_{metric}_mid"] * unit for r in sub]
                hi = [r[f"{side}_{metric}_high"] * unit for r in sub]
                ax.plot(x, mid, color=color, marker="o", label="Loihi 2" if side == "loihi" else gpu_label)
                ax.fill_between(x, lo, hi, color=color, alpha=0.2)
            if i == 0:
                first = next((r for r in sub if r["gpu_total_pj_mid"] < r["loihi_total_pj_mid"]), None)
                if first:
                    ax.axvline(first["gpu_batch_tokens"], color="gray", linestyle="--", label="crossover (central)")
                ax.set_title(f"{key[0].split(' ')[0]}, context {key[1]}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("GPU batch (tokens)")
            ax.set_ylabel(lab)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
