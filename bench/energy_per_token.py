"""End-to-end energy per token on Loihi 2 vs a GPU (roofline model), like for like, with the DecodeMAC share.

Each example LM is compiled with ``lasercc.compile(..., target="loihi2", calibration=<calib.npz>)``
(so the artifact carries ``partition.json``) and profiled on its calibration rows with
:func:`lasercc.backends.profiler.profile`. The DecodeMAC share answers the LASER review's point: the
paper's 200x claim prices nonlinearities only and leaves the dense activation x activation MACs
(attention's QK^T and AV) out; here they run on the embedded x86 cores and are counted.
MiniLM is not included (its export in bench/minilm_fidelity.py needs the HF weights and minutes).

    .venv/bin/python bench/energy_per_token.py [--models tiny_gpt tiny_llama] [--out bench/results/...]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

import lasercc
from lasercc.backends.profiler import profile
from lasercc.hw.gpu import load_gpu

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"


def row(name: str, onnx_path: Path | None = None, calib: Path | None = None, bits: int | None = None,
        gpu: str | None = None) -> dict:
    """Compile a model for loihi2 and profile it: a bundled example by name, or any ONNX file + calibration."""
    onnx_path = onnx_path or MODELS / f"{name}.qdq.onnx"
    calib = calib or MODELS / f"{name}.calib.npz"
    with np.load(calib) as z:
        shapes = {k: (1,) + z[k].shape[1:] for k in z.files}
    with tempfile.TemporaryDirectory() as d:
        art = lasercc.compile(str(onnx_path), target="loihi2", calibration=str(calib), input_shapes=shapes,
                              bits=bits, progress=False)
        art.save(Path(d) / "art")
        p = profile(Path(d) / "art", gpu=gpu)
    t = p.totals()
    r = p.ranges
    tok = 1e-6 / p.tokens
    return {"model": name, "rows": p.rows, "tokens": p.tokens, "cores": p.cores, "steps": p.latency_steps,
            "dyn": r["loihi_dynamic_pj"].scaled(tok), "loihi": r["loihi_total_pj"].scaled(tok),
            "gpu_dyn": r["gpu_dynamic_pj"].scaled(tok), "gpu": r["gpu_total_pj"].scaled(tok),
            "ratio_dyn": r["loihi_over_gpu_dynamic"], "ratio": r["loihi_over_gpu_total"],
            "sanafe_uj": p.sanafe_pj * tok, "dm_dyn": t["decodemac_share_of_dynamic"],
            "ms_token": r["loihi_time_s"].mid / p.tokens * 1e3, "gpu_ms_token": r["gpu_time_s"].mid / p.tokens * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny_gpt", "tiny_llama"])
    ap.add_argument("--gpu", default=None, help="GPU of the roofline model (default: lasercc.hw.gpu.default_gpu())")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "energy_per_token.md")
    ap.add_argument("--minilm", type=Path, default=None,
                    help="directory with minilm.onnx and minilm.calib.npz from bench/minilm_fidelity.py --work "
                         "(adds all-MiniLM-L6-v2, float model compiled at 8 bits)")
    args = ap.parse_args(argv)
    rows = [row(m, gpu=args.gpu) for m in args.models]
    if args.minilm is not None:
        rows.append(row("all-MiniLM-L6-v2 (8-bit)", args.minilm / "minilm.onnx", args.minilm / "minilm.calib.npz", 8,
                        gpu=args.gpu))
    gpu_label = load_gpu(args.gpu).label

    def f(rg) -> str:  # noqa: ANN001 - a Range
        return f"{rg.mid:.3g} [{rg.low:.2g} .. {rg.high:.2g}]"

    head = ("| model | tokens | cores | Loihi 2 dynamic uJ/tok | Loihi 2 total uJ/tok | GPU dynamic uJ/tok | "
            "GPU total uJ/tok | Loihi/GPU dynamic | Loihi/GPU total (driver) | DecodeMAC share of Loihi dyn. | "
            "Loihi / GPU ms/tok |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['tokens']} | {r['cores']} | {f(r['dyn'])} | {f(r['loihi'])} | "
                     f"{f(r['gpu_dyn'])} | {f(r['gpu'])} | {f(r['ratio_dyn'])} | {f(r['ratio'])} "
                     f"({r['ratio'].driver}) | {r['dm_dyn']:.1%} | {r['ms_token']:.3g} / {r['gpu_ms_token']:.2g} |")
    text = "\n".join([
        f"# Energy per token: example LMs on Loihi 2 vs {gpu_label} (model estimates, ranges)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, Python "
        f"{platform.python_version()}; no GPU, so no NVML-measured column (pass `lasercc profile "
        "--gpu-measured` a bench/torch_throughput.py --json file to add one).",
        f"Command: `.venv/bin/python bench/energy_per_token.py --models {' '.join(args.models)}"
        + (f" --gpu {args.gpu}" if args.gpu else "")
        + (" --minilm /tmp/lasercc_minilm` (after `bench/minilm_fidelity.py`)" if args.minilm else "`"),
        "",
        "\n".join(lines),
        "",
        "central [low .. high] over the constants' ranges (lasercc/hw/*_constants.json). Each side's total is its "
        "dynamic energy + static power x its own modelled time (Loihi 2: 0.232 W per chip, measured; GPU: its busy "
        "power floor). Calibration rows run one row per batch on both sides. The partitioner packs these tiny "
        "models onto one core, so Loihi steps are event-bound and static energy dominates its total; the GPU's "
        "time is per-kernel launch overhead, so its busy power floor dominates its total.",
    ])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
