"""LASER Table 9 explained: energy of one SiLU on Loihi 2 (an ASNC node) vs SiLU on an A100, 16 and 32 bits.

The paper (Table 9) reports Loihi 2 / GPU energy ratios of 5.5e-3 (16 bit) and 5.3e-3 (32 bit):
Loihi "energy per operation ... from on-board probes", the A100 "from sustained-load power
measurements over millions of identical operations using nvidia-smi". Here both sides come from
the energy model (lasercc/hw/energy_constants.json, lasercc/hw/gpu_constants.json, with ranges):
Loihi 2 from the counted events of a one-node graph (input code train -> ASNCSegment SiLU,
``lasercc.asnc.fit``), the A100 from the roofline model (a SiLU = ``gpu_nonlinear_ops``
multiply-adds on the CUDA cores + reading the input from DRAM and writing the output on chip, for
2^20 elements in one kernel, the "millions of identical operations"). The ratio is then taken the
way each accounting choice would take it, which decomposes the gap to the paper's figure.

Input width: the 16-bit row fits a 16-bit input / 16-bit output table; the 32-bit row fits a table
on a 32-bit input grid (``fit`` samples the 2^32 codes on its grid) with a 32-bit output, so the ASNC
neurons integrate 32 input bits (32 neuron-steps per element) and emit up to 32 output spikes.

    .venv/bin/python bench/energy_silu.py [--n 4096] [--out bench/results/energy_silu.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

from lasercc.asnc import fit, span_q
from lasercc.backends.profiler import price, profile
from lasercc.hw.energy import gpu_node_ops, load_constants
from lasercc.hw.gpu import load_gpu, node_cost
from lasercc.ir.artifact import Artifact
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Input
from lasercc.ir.types import CodeType

PAPER = {16: 5.5e-3, 32: 5.3e-3}


def silu_graph(bits: int, n: int) -> tuple[Graph, float]:
    """Input codes [1, n] -> SiLU ASNC, both ``bits`` wide over x in [-8, 8]; returns the graph and its MSE."""
    in_q, out_q = span_q(-8.0, 8.0, bits), span_q(-0.3, 8.0, bits)
    table = fit("silu", input_q=in_q, output_q=out_q)
    x_t = CodeType.per_tensor_type(bits, in_q.scale, in_q.zero_point, (1, n))
    y_t = CodeType.per_tensor_type(bits, out_q.scale, out_q.zero_point, (1, n))
    node, consts = table.to_node("silu", "x", y_t)
    return Graph("silu", (Input(name="x", type=x_t), node), ("silu",), consts).verify(), float(table.mse)


GPU_ELEMENTS = 2 ** 20  # one kernel over "millions of identical operations"


def row(bits: int, n: int, seed: int = 0) -> dict[str, float]:
    g, mse = silu_graph(bits, n)
    rng = np.random.default_rng(seed)
    # inputs ~ N(0, 2) in real units, as activations entering a SiLU typically are
    x_t = g.node("x").type
    codes = np.clip(np.round(rng.normal(0, 2.0, (1, n)) / x_t.scale[0]) + x_t.zero_point[0], 0, x_t.hi)
    prof = profile(Artifact(graph=g), inputs={"x": codes.astype(np.int64)}, gpu="a100")
    node = next(p for p in prof.nodes if p.name == "silu")
    ops = gpu_node_ops(g.node("silu"), g)
    out: dict[str, float] = {"bits": bits, "segments": int(g.constants["silu.slopes"].size), "mse": mse,
                             "updates": node.events["neuron_updates"] / n, "spikes": node.events["spikes"] / n,
                             "sanafe_pj": node.sanafe_pj / n, "paper": PAPER[bits]}
    for corner in ("low", "mid", "high"):
        c = load_constants(corner=corner)
        gpu = load_gpu("a100", corner=corner)
        pr = price(prof.counts, c, gpu)
        ld = pr.dynamic_pj / n
        out[f"loihi_dyn_{corner}"] = ld
        out[f"loihi_static_{corner}"] = pr.static_pj / n
        parts, sec = node_cost(ops, gpu, c.gpu_nonlinear_ops, GPU_ELEMENTS / n)
        out[f"gpu_dyn_{corner}"] = sum(parts.values()) / GPU_ELEMENTS
        out[f"gpu_static_{corner}"] = gpu.active_w * sec / GPU_ELEMENTS * 1e12
        out[f"gpu_time_ns_{corner}"] = sec / GPU_ELEMENTS * 1e9
    out["loihi_step_ns"] = prof.step_ns
    return out


def _r(a: float, b: float) -> str:
    return f"{a / b:.3g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="SiLU elements evaluated in parallel on Loihi (one per neuron)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "energy_silu.md")
    args = ap.parse_args(argv)
    rows = [row(b, args.n) for b in (16, 32)]
    head = ("| bits | neuron-steps / elem | out spikes / elem | Loihi 2 dynamic pJ: central [low .. high] | "
            "Loihi 2 static pJ | A100 dynamic pJ [low .. high] | A100 static pJ (active power x time) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['bits']} | {r['updates']:.0f} | {r['spikes']:.2f} | {r['loihi_dyn_mid']:.0f} "
                     f"[{r['loihi_dyn_low']:.1f} .. {r['loihi_dyn_high']:.0f}] | {r['loihi_static_mid']:.3g} | "
                     f"{r['gpu_dyn_mid']:.0f} [{r['gpu_dyn_low']:.0f} .. {r['gpu_dyn_high']:.0f}] | "
                     f"{r['gpu_static_mid']:.0f} |")
    dec_head = ("| row | bits | accounting (Loihi side / GPU side) | Loihi / A100 ratio | paper | model / paper |")
    dec = [dec_head, "|" + "---|" * (dec_head.count("|") - 1)]
    for r in rows:
        p = r["paper"]
        g_tot = {k: r[f"gpu_dyn_{k}"] + r[f"gpu_static_{k}"] for k in ("low", "mid", "high")}
        l_tot = {k: r[f"loihi_dyn_{k}"] + r[f"loihi_static_{k}"] for k in ("low", "mid", "high")}
        cases = [
            ("dynamic / dynamic (per-op costs on both sides), central", r["loihi_dyn_mid"], r["gpu_dyn_mid"]),
            ("dynamic / board total (probe-style Loihi vs nvidia-smi board power), central", r["loihi_dyn_mid"],
             g_tot["mid"]),
            ("dynamic, low corner (Hala Point-derived per-event costs) / board total, central", r["loihi_dyn_low"],
             g_tot["mid"]),
            ("dynamic, low corner / board total, high corner (most favourable to Loihi)", r["loihi_dyn_low"],
             g_tot["high"]),
            ("total (static x modelled time, 1 core) / board total, central", l_tot["mid"], g_tot["mid"]),
        ]
        for i, (label, a, b) in enumerate(cases, 1):
            dec.append(f"| {i} | {r['bits']} | {label} | {a / b:.3g} | {p:.1e} | {a / b / p:.3g} |")
            r[f"case{i}"] = a / b / p
    r16, r32 = rows
    text = "\n".join([
        "# LASER Table 9 explained: one SiLU, Loihi 2 ASNC vs A100 (energy per element)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, Python "
        f"{platform.python_version()}; no GPU (both sides are model estimates from cited constants with ranges).",
        f"Command: `.venv/bin/python bench/energy_silu.py --n {args.n}`",
        "",
        "\n".join(lines),
        "",
        "Ratios under each accounting choice, against the paper's measured ratio:",
        "",
        "\n".join(dec),
        "",
        "How to read it. The paper's Loihi figure is 'energy per operation from on-board probes' and its GPU figure "
        "is nvidia-smi board power over a sustained run divided by the operations: a probe-style Loihi number is "
        "dynamic energy (Intel's profiler reports dynamic energy per inference separately from static), while "
        "nvidia-smi includes the board's power floor. So the like-for-like reading of Table 9 is row 2 "
        "(dynamic / board total); the decomposition of the remaining gap, 16-bit row:",
        "",
        f"1. Accounting: moving the A100 from per-op (dynamic) to board energy multiplies its cost by "
        f"{(r16['gpu_dyn_mid'] + r16['gpu_static_mid']) / r16['gpu_dyn_mid']:.3g}x (its power floor while the "
        "kernel runs dominates a memory-bound elementwise op); rows 1 -> 2.",
        f"2. Per-event energy: the central Loihi costs are Loihi 1 silicon (Davies 2018); Intel's best-case Loihi 2 "
        f"system figure (Hala Point, 15 TOPS/W) is {r16['loihi_dyn_mid'] / r16['loihi_dyn_low']:.3g}x lower; rows 2 "
        "-> 3. This single unknown spans two orders of magnitude and is the main driver of every Loihi figure.",
        "3. Bit-serial cost: an ASNC element integrates all 16 (32) input bits, one neuron-step each, and emits "
        f"{r16['spikes']:.1f} output spikes on average; the paper's 'single non-linear operation' may count one "
        "neuron-step (the ratio would then be 16x / 32x lower again) -- the paper does not say.",
        "4. What the paper's measurement includes that ours does not: the real Loihi 2 microcode and its "
        "per-step overheads, board-level probes; ours includes what the paper's may not: mesh hops of every spike "
        "and the static power over the run (row 5: on one core the steps are event-bound and static dominates).",
        "",
        f"Conclusion: with per-op costs on both sides (row 1) a bit-serial SiLU costs more on Loihi than on a GPU "
        f"(ratio {r16['case1'] * r16['paper']:.3g} at 16 bit); taken the paper's way (row 2) the model's central "
        f"ratio is still {r16['case2']:.0f}x (16 bit) / {r32['case2']:.0f}x (32 bit) the paper's, and the paper's "
        f"figure is reached only at the low (Hala Point) end of the per-event energy range with the A100 at its "
        f"least efficient (row 4: {r16['case4']:.2g}x / {r32['case4']:.2g}x). Table 9 is consistent with a best-case "
        "per-event energy measured against a GPU's board power; it is not a like-for-like per-op comparison.",
    ])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
