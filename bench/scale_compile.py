"""Billion-parameter compile through the real frontend: time, peak memory, artifact size, fidelity.

For each layer count of the TinyLlama-1.1B shape (bench/llama_export.py: d 2048, FFN 5632, 32/4 heads,
vocab 32000, random weights, external data) and each form (float, QDQ):

* ``lasercc compile`` in its own process under ``/usr/bin/time`` (wall time, peak RSS), with a 4-row
  calibration file; the float form at ``--bits 16`` (16-bit activations and weights);
* one sequence (batch 1, seq 4) through the artifact in codes mode against onnxruntime on the *same*
  ONNX file: cosine and max |error| of the logits, top-1 agreement (``--sim``; also its time and peak);
* peak RSS against the size of the model's weight file (target <= 1.5x), and a least-squares line of
  time and peak over parameters, extrapolated to TinyLlama-1.1B and LLaMA-2-7B;
* the artifact partitioned onto Loihi 2 (``partition_graph``, the partition pass's API, on the shape-only
  parse of graph.lir): the smallest system it fits (oheo-gulch, kapoho-point, hala-point), chips, cores and
  seconds -- or each system's refusal. ``--target loihi2`` compiles for Loihi 2 (``lasercc compile --target
  loihi2``: 8-bit weights, fixed requantization, ASNC tables fitted to segments) with the target's default
  passes minus the trailing ``partition`` (which would try only kapoho-point and fail the compile when the
  model needs more); the bench partitions the artifact itself, smallest system first.

    PYTHONPATH=$PWD nice -n 10 python bench/scale_compile.py --layers 1,2,4 --work /tmp/scale [--sim]
    PYTHONPATH=$PWD nice -n 10 python bench/scale_compile.py --layers 1,2,4 --forms qdq --target loihi2

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

from lasercc.compiler import DEFAULT_PASSES
from lasercc.passes.partition import load_spec

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# lasercc compile --target loihi2's default pipeline without its last pass, partition (see the module doc)
LOIHI2_PASSES = DEFAULT_PASSES["loihi2"].removesuffix(",partition")
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
    ap.add_argument("--merge", action="append", default=[], metavar="JSON",
                    help="merge the rows of another run's scale.json (a concurrent run with its own --out) and "
                         "rewrite the report; with --layers '' nothing is compiled")
    ap.add_argument("--target", choices=("numpy", "loihi2"), default="numpy",
                    help="compile target; loihi2: fitted ASNC segments, partitioned by the bench (module doc)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/scale.md"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    calib = work / "calib.npz"
    np.savez(calib, input_ids=np.random.default_rng(3).integers(0, 32000, size=(4, args.seq)).astype(np.int64))
    jpath = Path(args.out).with_suffix(".json")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    provenance = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": commit or "?",
                  "command": "python bench/scale_compile.py " + " ".join(sys.argv[1:])}
    rows: list[dict] = json.loads(jpath.read_text()) if jpath.exists() else []
    for extra in args.merge:
        for rec in json.loads(Path(extra).read_text()):
            rows = [r for r in rows if key(r) != key(rec)] + [rec]
    if args.merge:
        jpath.write_text(json.dumps(rows, indent=1))
    for layers in [int(x) for x in args.layers.split(",") if x]:
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
            tag = f"l{layers}_{form}" + ("" if args.target == "numpy" else f"_{args.target}")
            art = work / f"art_{tag}"
            cmd = [PY, "-m", "lasercc", "compile", str(model), "-o", str(art), "--calibration", str(calib)]
            if args.target == "loihi2":
                cmd += ["--target", "loihi2", "--passes", LOIHI2_PASSES]
            elif form == "float":
                cmd += ["--bits", "16"]
            t, peak, rc = timed(cmd, work / f"compile_{tag}.log", args.timeout)
            rec = {"layers": layers, "form": form, "target": args.target, "params": params(layers), **provenance,
                   "weight_file_gib": size([model, Path(str(model) + ".data")]), "export_s": t_exp,
                   "compile_s": t, "peak_gib": peak, "rc": rc, "artifact_gib": size([art / "weights.npz",
                                                                                      art / "graph.lir"])}
            rec["peak_over_file"] = peak / rec["weight_file_gib"]
            if rc == 0 and args.sim:
                log = work / f"sim_{tag}.log"
                ts, ps, rcs = timed([PY, "-c", SIM, str(art), str(model), str(args.seq)], log, args.timeout)
                line = next((ln for ln in log.read_text().splitlines() if ln.startswith("SIM ")), None)
                rec.update(sim_peak_gib=ps, sim_rc=rcs, **({"sim": json.loads(line[4:])} if line else {}))
            if rc == 0:
                log = work / f"part_{tag}.log"
                timed([PY, "-c", PART, str(art)], log, args.timeout)
                line = next((ln for ln in log.read_text().splitlines() if ln.startswith("PART ")), None)
                rec["partition"] = json.loads(line[5:]) if line else {"error": log.read_text()[-300:]}
            print(json.dumps(rec), flush=True)
            rows = [r for r in rows if key(r) != key(rec)] + [rec]
            jpath.write_text(json.dumps(rows, indent=1))
            if not args.keep:
                import shutil

                shutil.rmtree(art, ignore_errors=True)
        if not args.keep:
            for form in forms:
                for f in (work / f"llama_l{layers}.{form}.onnx", work / f"llama_l{layers}.{form}.onnx.data"):
                    f.unlink(missing_ok=True)
    write_md(rows, Path(args.out), args)


def key(r: dict) -> tuple[int, str, str]:
    """A row's identity: rows of earlier runs (before --target) are numpy-target rows."""
    return r["layers"], r["form"], r.get("target", "numpy")


def fit(rows: list[dict], key: str) -> tuple[float, float]:
    x = np.array([r["params"] for r in rows], float)
    y = np.array([r[key] for r in rows], float)
    if len(rows) < 2:
        return 0.0, float(y[0]) if len(y) else 0.0
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b)


def _part_cell(r: dict) -> str:
    """A row's partition: the smallest system it fits with chips / cores, else why each refused."""
    p = r.get("partition") or {}
    if "system" in p:
        return (f"{p['system']}: {p.get('chips_used')} of {p.get('chips_available')} chips, "
                f"{p.get('cores_used'):,} cores ({p.get('binding_resource', '?')}-bound), {p['seconds']:.0f} s")
    why = {str(v).split(";")[0][:100] for k, v in p.items() if k not in ("seconds", "error")}
    return ("refused on every system: " + " / ".join(sorted(why)) if why
            else p.get("error", "not run")[-100:]).replace("|", "/").replace("\n", " ")


def write_md(rows: list[dict], out: Path, args: argparse.Namespace) -> None:
    rows = sorted(rows, key=lambda r: (r.get("target", "numpy"), r["form"], r["layers"]))
    head = "| target | form | layers | params | weight file GiB | compile s | peak RSS GiB | peak / file | " \
           "artifact GiB | sim cos | sim max abs | top-1 | sim s | sim peak GiB |"
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        s = r.get("sim", {})
        lines.append(f"| {r.get('target', 'numpy')} | {r['form']} | {r['layers']} | {r['params'] / 1e6:.0f}M | "
                     f"{r['weight_file_gib']:.2f} | {r['compile_s']:.0f} | {r['peak_gib']:.2f} | "
                     f"{r['peak_over_file']:.2f} | {r['artifact_gib']:.2f} | {s.get('cosine', float('nan')):.5f} | "
                     f"{s.get('max_abs', float('nan')):.3g} | {s.get('top1', float('nan')):.2f} | "
                     f"{s.get('seconds', float('nan')):.0f} | {r.get('sim_peak_gib', float('nan')):.2f} |")
    ext = ["", "Least-squares lines over the measured sizes (per target and form), extrapolated (same d=2048 shape "
           "for 1.1B; LLaMA-2-7B has d=4096, so its figure is the parameter-count extrapolation):", "",
           "| target | form | compile s per 100M params | peak GiB per 100M params | TinyLlama-1.1B: s / peak GiB | "
           "LLaMA-2-7B (6.74B): s / peak GiB |", "|---|---|---|---|---|---|"]
    groups = sorted({(r.get("target", "numpy"), r["form"]) for r in rows})
    for target, form in groups:
        rs = [r for r in rows if (r.get("target", "numpy"), r["form"]) == (target, form) and r["rc"] == 0]
        if not rs:
            continue
        (at, bt), (ap_, bp) = fit(rs, "compile_s"), fit(rs, "peak_gib")
        p11, p7 = params(22), 6.74e9
        ext.append(f"| {target} | {form} | {at * 1e8:.1f} | {ap_ * 1e8:.3f} | {at * p11 + bt:.0f} / "
                   f"{ap_ * p11 + bp:.1f} | {at * p7 + bt:.0f} / {ap_ * p7 + bp:.1f} |")
    part = ["", "Partition onto Loihi 2 (`partition_graph` on the shape-only parse of graph.lir; systems tried "
            "smallest first: oheo-gulch, kapoho-point, hala-point; seconds for all the systems tried):", "",
            "| target | form | layers | smallest system that fits |", "|---|---|---|---|"]
    part += [f"| {r.get('target', 'numpy')} | {r['form']} | {r['layers']} | {_part_cell(r)} |" for r in rows]
    for target, form in groups:  # cores grow linearly with layers (same layer shape): extrapolate to 22
        rs = [r for r in rows if (r.get("target", "numpy"), r["form"]) == (target, form)
              and "system" in (r.get("partition") or {})]
        if len(rs) >= 2 and not any(r["layers"] == 22 for r in rs):
            x = np.array([r["layers"] for r in rs], float)
            a, b = np.polyfit(x, np.array([r["partition"]["cores_used"] for r in rs], float), 1)
            at, bt = np.polyfit(x, np.array([r["partition"]["seconds"] for r in rs], float), 1)
            c22 = a * 22 + b
            hw = load_spec(None)
            fits = [f"{n} ({s.chips} chips x {hw.cores_per_chip(s)} cores)" for n, s in
                    sorted(hw.systems.items(), key=lambda kv: kv[1].chips) if s.chips * hw.cores_per_chip(s) >= c22]
            part.append(f"\n{target} {form}, extrapolated (least squares over {len(rs)} sizes, not measured): "
                        f"{a:,.0f} cores per layer + {b:,.0f}; 22 layers (TinyLlama-1.1B) ~ {c22:,.0f} cores -> "
                        f"smallest system: {fits[0] if fits else 'none known'}; partition ~ {at * 22 + bt:.0f} s.")
    runs = sorted({(r.get("date", "2026-12-02"), r.get("commit", "?"), r.get("command", "see git log")) for r in rows})
    load = os.getloadavg()
    text = "\n".join([
        "# Scale: LLaMA-shaped models through `lasercc compile`", "",
        "Runs whose rows are shown (rows merge through scale.json, runs with their own `--out` through "
        "`--merge`; date, commit, command):", "",
        *[f"* {d}, {c}: `{cmd}`" for d, c, cmd in runs], "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average "
        f"{load[0]:.1f} at the end of the last run: times are wall-clock under contention), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM.",
        "Models: bench/llama_export.py, TinyLlama-1.1B shape with fewer layers (d 2048, FFN 5632, 32/4 heads, "
        "vocab 32000, untied head), random weights, external data; numpy target: float compiled at --bits 16, QDQ "
        "(uint8 act, int8 reduce-range per-channel weights, 16-bit internal) at its defaults; loihi2 target: "
        f"`--target loihi2 --passes {LOIHI2_PASSES}` (8-bit weights, fixed requantization, fitted ASNC segments); "
        "4 calibration rows.",
        "Simulation: one sequence (batch 1, 4 tokens), NumPy codes mode, logits against onnxruntime on the "
        "same ONNX file.", "", *lines, *ext, *part, ""])
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
