"""Billion-parameter compile through the real frontend: time, peak memory, artifact size, fidelity.

For each layer count of the TinyLlama-1.1B shape (bench/llama_export.py: d 2048, FFN 5632, 32/4 heads,
vocab 32000, random weights, external data) and each form (float, QDQ):

* ``lasercc compile`` in its own process under ``/usr/bin/time`` (wall time, peak RSS), with a 4-row
  calibration file; the float form at ``--bits 16`` (16-bit activations and weights);
* one sequence (batch 1, seq 4) through the artifact in codes mode against onnxruntime on the *same*
  ONNX file: cosine and max |error| of the logits, top-1 agreement (``--sim``; also its time and peak);
* peak RSS against the size of the model's weight file (target <= 1.5x), and a least-squares line of
  time and peak over parameters, extrapolated to TinyLlama-1.1B and LLaMA-2-7B.

    PYTHONPATH=$PWD nice -n 10 python bench/scale_compile.py --layers 1,2,4 --work /tmp/scale [--sim]

Writes bench/results/scale.md (and scale.json beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SHAPE = {"d": 2048, "ffn": 5632, "heads": 32, "kv_heads": 4, "vocab": 32000}


def params(layers: int, d: int = 2048, ffn: int = 5632, kv: int = 256, vocab: int = 32000) -> int:
    """Parameters of the LLaMA shape: embedding, untied head, q/k/v/o, gate/up/down, two norms per layer."""
    return 2 * vocab * d + d + layers * (2 * d * d + 2 * d * kv + 3 * d * ffn + 2 * d)


def timed(cmd: list[str], log: Path, timeout: int) -> tuple[float, float, int]:
    """(wall seconds, peak RSS GiB, exit status) of a command run under /usr/bin/time."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.run(["/usr/bin/time", "-f", "PEAK_KB %M", *cmd], stdout=f, stderr=subprocess.STDOUT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=timeout)
    wall = time.perf_counter() - t0
    peak = next((int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("PEAK_KB")), 0)
    return wall, peak / 2**20, p.returncode


def available_gib() -> float:
    with open("/proc/meminfo") as f:
        info = {ln.split(":")[0]: int(ln.split()[1]) for ln in f}
    return info["MemAvailable"] / 2**20


def size(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 2**30


SIM = r"""
import json, sys, time, resource
import numpy as np, onnxruntime as ort
from lasercc.ir.artifact import load
art_dir, model, seq = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
art = load(art_dir)
ids = np.random.default_rng(7).integers(0, 32000, size=(1, seq)).astype(np.int64)
import os
big = os.path.getsize(os.path.join(art_dir, "weights.npz")) > 2**30
if big:
    # The NumPy executors cache int64 and float copies of every weight per constant table (fast repeated
    # runs; ~18 bytes per parameter). For one pass over a billion parameters: the reference codes executor,
    # the table's cached copies dropped after each node (same codes, nothing reused).
    from lasercc.backends import get_executor
    from lasercc.backends.plans import CONSTANTS
    from lasercc.runtime import run_graph
    ex = get_executor("numpy", "codes", "cpu", False)
    orig = ex.observe
    def observe(node, inputs, output):
        orig(node, inputs, output)
        CONSTANTS.of(art.graph.constants).clear()
    ex.observe = observe
    y = run_graph(art.graph, {"input_ids": ids}, collect_stats=False, executor=ex).values
else:
    y = art.run({"input_ids": ids}, mode="codes")
y = y[next(iter(y))]
t_sim = time.perf_counter() - t0
so = ort.SessionOptions(); so.log_severity_level = 3
r = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"input_ids": ids})[0]
a, b = r.astype(np.float64).ravel(), y.astype(np.float64).ravel()
print("SIM " + json.dumps({"cosine": float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)),
      "max_abs": float(np.abs(a - b).max()), "top1": float((r.argmax(-1) == y.argmax(-1)).mean()),
      "seconds": t_sim, "executor": "reference, caches dropped per node" if big else "default"}))
"""


PART = r"""
import json, sys, time
from pathlib import Path
from lasercc.ir.text import parse_graph
from lasercc.passes.partition import PartitionError, partition_graph
t0 = time.perf_counter()
g = parse_graph((Path(sys.argv[1]) / "graph.lir").read_text(), {})  # shapes only: no weights loaded
out = {}
for system in ("oheo-gulch", "kapoho-point", "hala-point"):
    try:
        p = partition_graph(g, system=system)
    except PartitionError as e:
        out[system] = str(e).splitlines()[0][:200]
        continue
    out = {"system": system, **{k: v for k, v in p.summary().items() if not isinstance(v, (dict, list))}}
    break
out["seconds"] = time.perf_counter() - t0
print("PART " + json.dumps(out, default=str))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="1,2,4")
    ap.add_argument("--forms", default="float,qdq")
    ap.add_argument("--work", default="/tmp/lasercc-scale")
    ap.add_argument("--seq", type=int, default=4)
    ap.add_argument("--sim", action="store_true", help="one-sequence simulation vs onnxruntime for each artifact")
    ap.add_argument("--keep", action="store_true", help="keep models and artifacts (default: delete after each)")
    ap.add_argument("--timeout", type=int, default=7200)
    ap.add_argument("--out", default=str(ROOT / "bench/results/scale.md"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    calib = work / "calib.npz"
    np.savez(calib, input_ids=np.random.default_rng(3).integers(0, 32000, size=(4, args.seq)).astype(np.int64))
    jpath = Path(args.out).with_suffix(".json")
    rows: list[dict] = json.loads(jpath.read_text()) if jpath.exists() else []
    for layers in [int(x) for x in args.layers.split(",")]:
        forms = args.forms.split(",")
        avail = available_gib()
        if params(layers) > 5e8 and avail < 12:  # a shared machine: the big run only with room to spare
            print(f"skipping {layers} layers: {avail:.1f} GiB available, 12 needed", flush=True)
            continue
        for f in forms:  # another process still exporting this model (its data file grows): wait for it
            data = work / f"llama_l{layers}.{f}.onnx.data"
            while data.exists() and not data.with_suffix("").exists() and time.time() - data.stat().st_mtime < 120:
                time.sleep(10)
        have = all((work / f"llama_l{layers}.{f}.onnx").exists() for f in forms)  # written last
        t_exp, peak_exp, rc = (float("nan"), 0.0, 0) if have else timed(  # exported beforehand: reused
            [PY, str(ROOT / "bench/llama_export.py"), "--layers", str(layers), "--seq", str(args.seq), "--out",
             str(work), "--forms", ",".join(forms)], work / f"export_l{layers}.log", args.timeout)
        if rc:
            raise SystemExit(f"export failed, see {work / f'export_l{layers}.log'}")
        for form in forms:
            model = work / f"llama_l{layers}.{form}.onnx"
            art = work / f"art_l{layers}_{form}"
            cmd = [PY, "-m", "lasercc", "compile", str(model), "-o", str(art), "--calibration", str(calib)]
            if form == "float":
                cmd += ["--bits", "16"]
            t, peak, rc = timed(cmd, work / f"compile_l{layers}_{form}.log", args.timeout)
            rec = {"layers": layers, "form": form, "params": params(layers),
                   "weight_file_gib": size([model, Path(str(model) + ".data")]), "export_s": t_exp,
                   "compile_s": t, "peak_gib": peak, "rc": rc, "artifact_gib": size([art / "weights.npz",
                                                                                      art / "graph.lir"])}
            rec["peak_over_file"] = peak / rec["weight_file_gib"]
            if rc == 0 and args.sim:
                log = work / f"sim_l{layers}_{form}.log"
                ts, ps, rcs = timed([PY, "-c", SIM, str(art), str(model), str(args.seq)], log, args.timeout)
                line = next((ln for ln in log.read_text().splitlines() if ln.startswith("SIM ")), None)
                rec.update(sim_peak_gib=ps, sim_rc=rcs, **({"sim": json.loads(line[4:])} if line else {}))
            if rc == 0:
                log = work / f"part_l{layers}_{form}.log"
                timed([PY, "-c", PART, str(art)], log, args.timeout)
                line = next((ln for ln in log.read_text().splitlines() if ln.startswith("PART ")), None)
                rec["partition"] = json.loads(line[5:]) if line else {"error": log.read_text()[-300:]}
            print(json.dumps(rec), flush=True)
            rows = [r for r in rows if (r["layers"], r["form"]) != (layers, form)] + [rec]
            jpath.write_text(json.dumps(rows, indent=1))
            if not args.keep:
                import shutil

                shutil.rmtree(art, ignore_errors=True)
        if not args.keep:
            for form in forms:
                for f in (work / f"llama_l{layers}.{form}.onnx", work / f"llama_l{layers}.{form}.onnx.data"):
                    f.unlink(missing_ok=True)
    write_md(rows, Path(args.out), args)


def fit(rows: list[dict], key: str) -> tuple[float, float]:
    x = np.array([r["params"] for r in rows], float)
    y = np.array([r[key] for r in rows], float)
    if len(rows) < 2:
        return 0.0, float(y[0]) if len(y) else 0.0
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b)


def write_md(rows: list[dict], out: Path, args: argparse.Namespace) -> None:
    rows = sorted(rows, key=lambda r: (r["form"], r["layers"]))
    head = "| form | layers | params | weight file GiB | compile s | peak RSS GiB | peak / file | artifact GiB | " \
           "sim cos | sim max abs | top-1 | sim s | sim peak GiB |"
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        s = r.get("sim", {})
        lines.append(f"| {r['form']} | {r['layers']} | {r['params'] / 1e6:.0f}M | {r['weight_file_gib']:.2f} | "
                     f"{r['compile_s']:.0f} | {r['peak_gib']:.2f} | {r['peak_over_file']:.2f} | "
                     f"{r['artifact_gib']:.2f} | {s.get('cosine', float('nan')):.5f} | "
                     f"{s.get('max_abs', float('nan')):.3g} | {s.get('top1', float('nan')):.2f} | "
                     f"{s.get('seconds', float('nan')):.0f} | {r.get('sim_peak_gib', float('nan')):.2f} |")
    ext = ["", "Least-squares lines over the measured sizes (per form), extrapolated (same d=2048 shape for 1.1B; "
           "LLaMA-2-7B has d=4096, so its figure is the parameter-count extrapolation):", "",
           "| form | compile s per 100M params | peak GiB per 100M params | TinyLlama-1.1B: s / peak GiB | "
           "LLaMA-2-7B (6.74B): s / peak GiB |", "|---|---|---|---|---|"]
    for form in sorted({r["form"] for r in rows}):
        rs = [r for r in rows if r["form"] == form and r["rc"] == 0]
        if not rs:
            continue
        (at, bt), (ap_, bp) = fit(rs, "compile_s"), fit(rs, "peak_gib")
        p11, p7 = params(22), 6.74e9
        ext.append(f"| {form} | {at * 1e8:.1f} | {ap_ * 1e8:.3f} | {at * p11 + bt:.0f} / {ap_ * p11 + bp:.1f} | "
                   f"{at * p7 + bt:.0f} / {ap_ * p7 + bp:.1f} |")
    load = os.getloadavg()
    text = "\n".join([
        "# Scale: LLaMA-shaped models through `lasercc compile`", "",
        f"Command: `PYTHONPATH=$PWD nice -n 10 python bench/scale_compile.py --layers {args.layers} "
        f"--forms {args.forms} --seq {args.seq}{' --sim' if args.sim else ''}` (rows merge with earlier runs "
        "kept in scale.json)",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average "
        f"{load[0]:.1f} at the end: times are wall-clock under contention), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM.",
        "Models: bench/llama_export.py, TinyLlama-1.1B shape with fewer layers (d 2048, FFN 5632, 32/4 heads, "
        "vocab 32000, untied head), random weights, external data; float compiled at --bits 16, QDQ (uint8 act, "
        "int8 reduce-range per-channel weights, 16-bit internal) at its defaults; 4 calibration rows.",
        "Simulation: one sequence (batch 1, 4 tokens), NumPy codes mode, logits against onnxruntime on the "
        "same ONNX file.", "", *lines, *ext, ""])
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
