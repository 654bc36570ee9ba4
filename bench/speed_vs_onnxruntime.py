"""Speed target of issue 3: the NumPy ``codes`` mode within 3x of onnxruntime CPU on the same quantized model.

For each static-QDQ model (examples/models/tiny_gpt.qdq.onnx, tiny_bert.qdq.onnx and, when
bench/minilm_fidelity.py has exported it, all-MiniLM-L6-v2's QDQ model) this compiles the model with
lasercc (target numpy, the model's own calibration file) and times, on the same held-out rows:

* onnxruntime CPU row by row (the models are batch 1, as exported), with 1 intra-op thread and with
  its default thread count;
* lasercc's NumPy ``codes`` mode via :func:`lasercc.runtime.run_graph` on all rows at once (it chunks
  by the model's batch size), statistics off, with NumPy's BLAS pinned to 1 thread and with lasercc's
  default (``NumpyCodes.blas_threads = "auto"``: 1 thread when every GEMM is small or the load average
  shows no idle core, else BLAS's own default); and statistics on (default threads).

Like is compared with like: ratio 1T = lasercc 1 BLAS thread / ORT 1 thread, ratio default = lasercc
default / ORT default. Within a pass every configuration is timed in turn (so machine load hits all of
them alike); each figure is the median of ``--repeat`` timings, in ms per row, and with ``--passes N``
the table shows the median over passes and, in brackets, the lowest and highest pass.

    .venv/bin/python bench/speed_vs_onnxruntime.py [--rows 32] [--repeat 7] [--passes 3] [--minilm DIR]
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


def _lasercc_threads(threads: int | str | None):  # noqa: ANN202 - a context manager
    """Run lasercc's codes mode with this BLAS thread setting (1, or "auto": lasercc's default)."""
    import contextlib

    from lasercc.backends.numpy_ref import NumpyCodes

    @contextlib.contextmanager
    def cm():  # noqa: ANN202
        old = NumpyCodes.blas_threads
        NumpyCodes.blas_threads = threads
        try:
            yield
        finally:
            NumpyCodes.blas_threads = old

    return cm()


CONFIGS = ("ort_1", "codes_1t", "ort_0", "codes_auto", "codes_stats")


def bench_model(name: str, onnx_path: Path, calib: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                input_shapes: dict[str, tuple[int, ...]] | None, repeat: int, passes: int) -> dict[str, object]:
    n = len(next(iter(feeds.values())))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(str(onnx_path), target="numpy", calibration=calib, input_shapes=input_shapes,
                              progress=False)
    t_compile = time.perf_counter() - t0
    g = art.graph
    fns = {}
    for threads in (1, 0):
        sess = ort_session(onnx_path, threads)
        in_names = [i.name for i in sess.get_inputs()]
        row_feeds = [{k: feeds[k][i:i + 1] for k in in_names} for i in range(n)]
        fns[f"ort_{threads}"] = lambda s=sess, r=row_feeds: [s.run(None, f) for f in r]

    def codes(threads: int | str, stats: bool):  # noqa: ANN202
        def run() -> None:
            with _lasercc_threads(threads):
                run_graph(g, feeds, mode="codes", collect_stats=stats)
        return run

    fns["codes_1t"], fns["codes_auto"], fns["codes_stats"] = codes(1, False), codes("auto", False), codes("auto", True)
    per_pass: dict[str, list[float]] = {k: [] for k in CONFIGS}
    for _ in range(passes):
        for k in CONFIGS:
            per_pass[k].append(median_ms_per_row(fns[k], n, repeat))
    out: dict[str, object] = {"compile_s": t_compile, "rows": n, "passes": per_pass}
    out.update({k: float(np.median(v)) for k, v in per_pass.items()})
    out["ratio_1t"] = [c / o for c, o in zip(per_pass["codes_1t"], per_pass["ort_1"])]
    out["ratio_default"] = [c / o for c, o in zip(per_pass["codes_auto"], per_pass["ort_0"])]
    print(f"{name}: " + ", ".join(f"{k} {' / '.join(f'{x:.3f}' for x in per_pass[k])}" for k in CONFIGS)
          + f"; compile {t_compile:.1f} s", flush=True)
    return out


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (OSError, AttributeError):
        return "n/a"


def _cell(values: list[float], digits: int = 3, suffix: str = "") -> str:
    """Median of the passes, with the lowest and highest in brackets when there are several."""
    med = float(np.median(values))
    if len(values) == 1:
        return f"{med:.{digits}f}{suffix}"
    return f"{med:.{digits}f}{suffix} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=32, help="held-out rows timed per pass (default 32)")
    ap.add_argument("--repeat", type=int, default=7, help="timings per pass; their median is the pass's figure")
    ap.add_argument("--passes", type=int, default=1, help="passes over all configurations (spread reported)")
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

    load0 = _load()
    results = [(name, bench_model(name, p, c, f, s, args.repeat, args.passes)) for name, p, c, f, s in cases]
    load1 = _load()
    lines = [
        "# NumPy codes mode vs onnxruntime CPU (same static-QDQ model, same rows)",
        "",
        f"Command: `.venv/bin/python bench/speed_vs_onnxruntime.py --rows {args.rows} --repeat {args.repeat} "
        f"--passes {args.passes}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs ({platform.processor() or platform.system()}); "
        f"Python {platform.python_version()}, NumPy {np.__version__}, onnxruntime {ort.__version__}  ",
        "ORT runs row by row (batch-1 models); lasercc runs all rows through `run_graph` (codes mode, statistics "
        "off unless stated), which chunks by the model's batch size. Like with like: *1 thread* pins ORT's "
        "intra-op pool and lasercc's BLAS to one thread; *default* is each library's own default (ORT: its "
        "default pool; lasercc: one BLAS thread when every GEMM is small or the load average shows no idle core, "
        "else BLAS's default). Figures are ms "
        "per row, the median of the passes (each pass: median of the timings), with the lowest and highest pass "
        "in brackets; ratio = lasercc / ORT in the same thread setting, per pass (median and range over passes). "
        f"1-minute load average at start / end: {load0} / {load1} (the machine is shared: other work inflates "
        "both libraries' figures, multi-threaded ones most).",
        "",
        "| model | rows | ORT 1 thread | lasercc 1 thread | ratio 1 thread | ORT default | lasercc default "
        "| ratio default | lasercc stats on | compile s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results:
        pp = r["passes"]
        lines.append(f"| {name} | {r['rows']} | {_cell(pp['ort_1'])} | {_cell(pp['codes_1t'])} | "
                     f"{_cell(r['ratio_1t'], 2, 'x')} | {_cell(pp['ort_0'])} | {_cell(pp['codes_auto'])} | "
                     f"{_cell(r['ratio_default'], 2, 'x')} | {_cell(pp['codes_stats'])} | {r['compile_s']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
