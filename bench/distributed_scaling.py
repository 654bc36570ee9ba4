"""Distributed simulation: one process vs 1 and 2 Ray workers on this machine (``simulate --workers``).

Compiles the bundled tiny GPT (examples/models/tiny_gpt.qdq.onnx), runs ROWS random token rows
(batch 1, seq 16) through the NumPy codes executor in one process (``run_graph``, the peer), then
through :func:`lasercc.distributed.run_distributed` with 1 and 2 workers of one local Ray (started
once; its start-up time is reported apart). Checks on every run that the codes and the merged
statistics equal the one-process run. Writes bench/results/distributed_scaling.md.

    PYTHONPATH=$PWD python bench/distributed_scaling.py [--rows 1024] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="best of N per configuration")
    ap.add_argument("--out", default=str(ROOT / "bench/results/distributed_scaling.md"))
    args = ap.parse_args()

    import ray

    import lasercc
    from lasercc import distributed as D
    from lasercc.ir.data import random_inputs
    from lasercc.runtime import run_graph

    art = lasercc.compile(str(ROOT / "examples/models/tiny_gpt.qdq.onnx"))
    g = art.graph
    x = random_inputs(g, 0, rows=args.rows)

    def best(fn):  # noqa: ANN001, ANN202
        times, out = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    t_one, ref = best(lambda: run_graph(g, x))
    tmp = tempfile.mkdtemp(prefix="lcray", dir="/tmp")
    t0 = time.perf_counter()
    for attempt in range(3):  # on a loaded machine the raylet can miss Ray's fixed 30 s start-up window
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _temp_dir=tmp, object_store_memory=D.LOCAL_OBJECT_STORE_BYTES)
            break
        except Exception as e:  # noqa: BLE001
            ray.shutdown()
            print(f"ray.init attempt {attempt + 1} failed: {e}")
    else:
        raise SystemExit("could not start a local Ray")
    t_start = time.perf_counter() - t0
    rows = [["one process (run_graph)", "-", f"{t_one:.2f}", f"{args.rows / t_one:.1f}", "1.00", "-"]]
    try:
        D.run_distributed(g, {k: v[:8] for k, v in x.items()}, workers=2)  # warm the workers (imports)
        for w in (1, 2):
            t, res = best(lambda w=w: D.run_distributed(g, x, workers=w))
            same = all(np.array_equal(res.codes[o], ref.codes[o]) for o in ref.codes) and \
                {k: v for k, v in res.stats.items() if k != "distributed"} == ref.stats
            rows.append([f"Ray, {w} worker(s)", res.stats["distributed"]["shards"], f"{t:.2f}",
                         f"{args.rows / t:.1f}", f"{t_one / t:.2f}", "yes" if same else "NO"])
    finally:
        ray.shutdown()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    head = ["configuration", "shards", "seconds", "rows/s", "speed-up vs one process", "same codes+stats"]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in [head] + rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    load = os.getloadavg()
    text = "\n".join([
        "# Distributed simulation: one process vs Ray workers", "",
        f"Command: `PYTHONPATH=$PWD python bench/distributed_scaling.py --rows {args.rows} --repeat {args.repeat}`",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs; "
        f"load average at the end {load[0]:.1f}), ray {ray.__version__}. Model: tiny_gpt.qdq (batch 1, seq 16), "
        f"{args.rows} rows, numpy codes mode; best of {args.repeat}.", "",
        *lines, "",
        f"Local Ray start-up (not in the times above): {t_start:.1f} s.", ""])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
