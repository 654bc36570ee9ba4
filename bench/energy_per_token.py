"""End-to-end energy per token on Loihi 2 (estimate) vs a GPU (45 nm estimate), with the DecodeMAC share.

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

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"


def row(name: str, onnx_path: Path | None = None, calib: Path | None = None, bits: int | None = None
        ) -> dict[str, float | str]:
    """Compile a model for loihi2 and profile it: a bundled example by name, or any ONNX file + calibration."""
    onnx_path = onnx_path or MODELS / f"{name}.qdq.onnx"
    calib = calib or MODELS / f"{name}.calib.npz"
    with np.load(calib) as z:
        shapes = {k: (1,) + z[k].shape[1:] for k in z.files}
    with tempfile.TemporaryDirectory() as d:
        art = lasercc.compile(str(onnx_path), target="loihi2", calibration=str(calib), input_shapes=shapes,
                              bits=bits, progress=False)
        art.save(Path(d) / "art")
        p = profile(Path(d) / "art")
    t = p.totals()
    return {"model": name, "rows": p.rows, "tokens": p.tokens, "cores": p.cores, "steps": p.latency_steps,
            "dyn_uj": p.dynamic_pj / p.tokens * 1e-6, "static_uj": p.static_pj / p.tokens * 1e-6,
            "loihi_uj": t["loihi_pj_per_token"] * 1e-6, "sanafe_uj": p.sanafe_pj / p.tokens * 1e-6,
            "gpu_uj": t["gpu_estimate_pj_per_token"] * 1e-6, "dm_dyn": t["decodemac_share_of_dynamic"],
            "dm_tot": t["decodemac_share_of_loihi"], "ratio_dyn": p.dynamic_pj / p.gpu_pj,
            "ratio": t["loihi_over_gpu_estimate"], "ms_token": p.time_s / p.tokens * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny_gpt", "tiny_llama"])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "energy_per_token.md")
    ap.add_argument("--minilm", type=Path, default=None,
                    help="directory with minilm.onnx and minilm.calib.npz from bench/minilm_fidelity.py --work "
                         "(adds all-MiniLM-L6-v2, float model compiled at 8 bits)")
    args = ap.parse_args(argv)
    rows = [row(m) for m in args.models]
    if args.minilm is not None:
        rows.append(row("all-MiniLM-L6-v2 (8-bit)", args.minilm / "minilm.onnx", args.minilm / "minilm.calib.npz", 8))
    head = ("| model | tokens | cores | steps | Loihi 2 dynamic uJ/tok | static uJ/tok | Loihi 2 total uJ/tok | "
            "SANA-FE dyn. uJ/tok | GPU est. uJ/tok | DecodeMAC share (dyn / total) | Loihi dyn/GPU | "
            "Loihi total/GPU | Loihi ms/tok |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['tokens']} | {r['cores']} | {r['steps']} | {r['dyn_uj']:.3f} | "
                     f"{r['static_uj']:.1f} | {r['loihi_uj']:.1f} | {r['sanafe_uj']:.3f} | {r['gpu_uj']:.4f} | "
                     f"{r['dm_dyn']:.1%} / {r['dm_tot']:.2%} | {r['ratio_dyn']:.3g} | {r['ratio']:.3g} | "
                     f"{r['ms_token']:.3f} |")
    text = "\n".join([
        "# Energy per token: example LMs on Loihi 2 (estimate) vs GPU (45 nm estimate)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, Python "
        f"{platform.python_version()}; no GPU, so no NVML-measured column (pass `lasercc profile "
        "--gpu-measured` a bench/torch_throughput.py --json file to add one).",
        f"Command: `.venv/bin/python bench/energy_per_token.py --models {' '.join(args.models)}"
        + (" --minilm /tmp/lasercc_minilm` (after `bench/minilm_fidelity.py`)" if args.minilm else "`"),
        "",
        "\n".join(lines),
        "",
        "Inputs: each model's calibration rows. Loihi 2: Davies et al. 2018 (Loihi 1) per-event costs, spike hops "
        "from partition.json, DecodeMAC on the x86 cores at 140 pJ / 2 ns per MAC (estimate), static 0.5 W per "
        "chip (assumption) over the run time. The partitioner packs these tiny models onto a few cores, so the "
        "event time per step exceeds the 1 us floor and static energy dominates. Loihi 2 per-operation "
        "energies are not published: all Loihi figures are Loihi-1-derived estimates.",
    ])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
