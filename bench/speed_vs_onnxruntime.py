"""Speed target of issue 3: the NumPy ``codes`` mode within 3x of onnxruntime CPU on the same quantized model.

For each static-QDQ model (examples/models/tiny_gpt.qdq.onnx, tiny_bert.qdq.onnx and, when
bench/minilm_fidelity.py has exported it, all-MiniLM-L6-v2's QDQ model) this compiles the model with
lasercc (target numpy, the model's own calibration file) and times, on the same held-out rows in one run:

* onnxruntime CPU with 1 intra-op thread and with its default thread count, row by row (the models
  are batch 1, as exported);
* lasercc's NumPy ``codes`` mode via :func:`lasercc.runtime.run_graph` on all rows at once (it chunks
  by the model's batch size), with ``collect_stats`` off and on.

Each figure is the median of ``--repeat`` passes, in ms per row. Ratio = lasercc / ORT (1 thread).

    .venv/bin/python bench/speed_vs_onnxruntime.py [--rows 32] [--repeat 5] [--minilm DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

import lasercc
from lasercc.runtime import run_graph

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
OUT = Path(__file__).parent / "results" / "speed_vs_onnxruntime.md"


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def median_ms_per_row(fn, rows: int, repeat: int) -> float:  # noqa: ANN001
    fn()  # warm up (caches, allocator)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3 / rows)
    return float(np.median(times))


def bench_model(name: str, onnx_path: Path, calib: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                input_shapes: dict[str, tuple[int, ...]] | None, repeat: int) -> dict[str, float]:
    n = len(next(iter(feeds.values())))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(str(onnx_path), target="numpy", calibration=calib, input_shapes=input_shapes,
                              progress=False)
    t_compile = time.perf_counter() - t0
    g = art.graph
    out = {"compile_s": t_compile, "rows": n}
    for threads in (1, 0):
        sess = ort_session(onnx_path, threads)
        in_names = [i.name for i in sess.get_inputs()]
        row_feeds = [{k: feeds[k][i:i + 1] for k in in_names} for i in range(n)]
        out[f"ort_{threads}"] = median_ms_per_row(lambda s=sess, r=row_feeds: [s.run(None, f) for f in r], n, repeat)
    for stats in (False, True):
        out[f"codes_{int(stats)}"] = median_ms_per_row(
            lambda s=stats: run_graph(g, feeds, mode="codes", collect_stats=s), n, repeat)
    print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
    return out


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=32, help="held-out rows timed per pass (default 32)")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes; the median is reported")
    ap.add_argument("--minilm", type=Path, default=Path("/tmp/lasercc_minilm"),
                    help="work dir of bench/minilm_fidelity.py (minilm.qdq.onnx, minilm.calib.npz, minilm.eval.npz)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    args = ap.parse_args(argv)

    cases = []
    for m in ("tiny_gpt", "tiny_bert"):
        held = load_npz(MODELS / f"{m}.heldout.npz")
        feeds = {k: v[: args.rows] for k, v in held.items()}
        seq = next(iter(feeds.values())).shape[1]
        cases.append((m, MODELS / f"{m}.qdq.onnx", load_npz(MODELS / f"{m}.calib.npz"), feeds,
                      {k: (1, seq) for k in feeds}))
    mini = args.minilm / "minilm.qdq.onnx"
    if mini.exists() and (args.minilm / "minilm.calib.npz").exists() and (args.minilm / "minilm.eval.npz").exists():
        feeds = load_npz(args.minilm / "minilm.eval.npz")
        seq = feeds["input_ids"].shape[1]
        cases.append(("all-MiniLM-L6-v2", mini, load_npz(args.minilm / "minilm.calib.npz"), feeds,
                      {k: (1, seq) for k in feeds}))
    else:
        print(f"MiniLM skipped: no {mini} (+ calib/eval npz); run bench/minilm_fidelity.py --work {args.minilm} first")

    results = [(name, bench_model(name, p, c, f, s, args.repeat)) for name, p, c, f, s in cases]
    lines = [
        "# NumPy codes mode vs onnxruntime CPU (same static-QDQ model, same rows)",
        "",
        f"Command: `.venv/bin/python bench/speed_vs_onnxruntime.py --rows {args.rows} --repeat {args.repeat}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs ({platform.processor() or platform.system()}); "
        f"Python {platform.python_version()}, NumPy {np.__version__}, onnxruntime {ort.__version__}  ",
        "ORT runs row by row (batch-1 models) with 1 intra-op thread and with its default thread count; "
        "lasercc runs all rows through `run_graph` (codes mode), which chunks by the model's batch size. "
        "Median of the passes, ms per row; ratio = lasercc (stats off) / ORT 1 thread. NumPy's BLAS runs with "
        "its default thread count. On a shared machine the figures move by tens of percent between runs.",
        "",
        "| model | rows | ORT 1 thread | ORT default threads | lasercc codes, stats off | lasercc codes, stats on "
        "| ratio (stats off) | ratio (stats on) | lasercc compile s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results:
        lines.append(f"| {name} | {r['rows']} | {r['ort_1']:.3f} | {r['ort_0']:.3f} | {r['codes_0']:.3f} | "
                     f"{r['codes_1']:.3f} | {r['codes_0'] / r['ort_1']:.2f}x | {r['codes_1'] / r['ort_1']:.2f}x | "
                     f"{r['compile_s']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
