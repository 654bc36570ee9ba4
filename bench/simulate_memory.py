"""Peak memory of ``lasercc simulate -i big.npz -o out.npz`` against the row count: streamed vs whole input.

``simulate`` reads its input ``.npz`` in row blocks (``lasercc.ir.data.NpzRows``) and writes outputs block by
block (``NpzStreamWriter``), so its peak RSS should not grow with the number of rows. The peer in the same
run is the same command with the input read whole first (``read_npz``, what simulate did before), which
grows by the input's size. Each configuration runs in a fresh process; peak RSS is the child's
``VmHWM`` (/proc/self/status, Linux).

Model: a synthetic 512 -> 64 layer (BSE encoder, one 8-bit Soma; batch 8), so that a row is 2 KiB of
float32 input and the input file dominates what a whole-file reader holds: 100k rows = 205 MB.

    .venv/bin/python bench/simulate_memory.py                 # 8, 10k and 100k rows
    .venv/bin/python bench/simulate_memory.py --rows 8,10000  # quicker

Writes ``bench/results/simulate_memory.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH, OUT, BATCH = 512, 64, 8


def build(directory: Path) -> Path:
    """The synthetic artifact: x [8, 512] f32 -> bse_encode -> soma (512 x 64, int8 weights) -> out."""
    from lasercc.ir.artifact import Artifact
    from lasercc.ir.nodes import BSEEncode, Input, Soma
    from lasercc.ir.types import CodeType, TensorType
    from lasercc.testing import GraphBuilder

    rng = np.random.default_rng(0)
    b = GraphBuilder("mem")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(BATCH, WIDTH))))
    e = b.add(BSEEncode(name="e", inputs=(x,), type=CodeType.per_tensor_type(8, 0.02, 128, (BATCH, WIDTH))))
    wa = rng.integers(-127, 128, size=(WIDTH, OUT)).astype(np.int8)
    w = b.const("w", wa)
    bias = b.const("b", -128 * wa.astype(np.int64).sum(axis=0))  # the input zero point, folded
    # accumulator std ~ sqrt(512) * 40 codes * 73 ~ 66k: map it to ~30 output codes
    scale = float(np.float32(30 / 66000 * 0.05))
    b.add(Soma(name="out", inputs=(e,), weights=(w,), forms=("matmul",), bias=bias, scale_in=scale, scale_w=(1.0,),
               type=CodeType.per_tensor_type(8, 0.05, 128, (BATCH, OUT))))
    return Artifact(graph=b.graph(["out"]), manifest={}).save(directory / "art")


def child(mode: str, art: str, inp: str, out: str) -> int:
    """One simulate run (stdout discarded): ``stream`` as shipped, ``whole`` with the input read whole."""
    import lasercc.ir.data as data
    import lasercc.runtime  # noqa: F401 - bound to the real NpzRows before the patch below
    from lasercc.cli import main

    if mode == "whole":
        class WholeInput(dict):
            """The arrays read whole (read_npz), offering NpzRows's shapes(): the pre-streaming behaviour."""

            def __init__(self, path: str, what: str = "input file") -> None:
                super().__init__(data.read_npz(path, what))

            def shapes(self) -> dict:
                return {k: (v.shape, v.dtype) for k, v in self.items()}

        data.NpzRows = WholeInput  # type: ignore[misc, assignment]
    with open(os.devnull, "w") as devnull:
        sys.stdout = devnull
        rc = main(["simulate", art, "-i", inp, "-o", out])
    hwm = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM:"))
    print(f"VMHWM {hwm.split()[1]}", file=sys.stderr)
    return rc


def measure(mode: str, art: Path, inp: Path, out: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one child process. The child reports its own ``VmHWM``: a
    child's ``ru_maxrss`` also counts the parent's pages it was forked with before ``exec``."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--child", mode, str(art), str(inp), str(out)],
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{mode} run failed with status {p.returncode}: {p.stderr[-2000:]}")
    kb = int(next(ln for ln in p.stderr.splitlines() if ln.startswith("VMHWM ")).split()[1])
    return kb / 1024, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="8,10000,100000", help="comma-separated row counts (multiples of 8)")
    ap.add_argument("--child", nargs=4, metavar=("MODE", "ART", "IN", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.child:
        return child(*args.child)
    rows_list = [int(r) for r in args.rows.split(",")]
    lines = []
    with tempfile.TemporaryDirectory(prefix="lasercc-mem-") as td:
        d = Path(td)
        art = build(d)
        rng = np.random.default_rng(1)
        for rows in rows_list:
            x = (rng.standard_normal((rows, WIDTH)) * 0.8).astype(np.float32)
            inp = d / f"x{rows}.npz"
            np.savez(inp, x=x)
            del x
            mb = inp.stat().st_size / 1e6
            res = {m: measure(m, art, inp, d / f"y_{m}.npz") for m in ("stream", "whole")}
            same = _same(d / "y_stream.npz", d / "y_whole.npz")
            (s_rss, s_t), (w_rss, w_t) = res["stream"], res["whole"]
            lines.append(f"| {rows:,} | {mb:,.1f} | {s_rss:,.0f} | {w_rss:,.0f} | {w_rss / s_rss:.2f} | "
                         f"{s_t:.1f} | {w_t:.1f} | {'yes' if same else 'NO'} |")
            print(lines[-1], flush=True)
            inp.unlink()
    head = [f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"{os.cpu_count()} CPUs (shared), Python {platform.python_version()}, numpy {np.__version__}", "",
            f"`bench/simulate_memory.py --rows {args.rows}`: a {WIDTH} -> {OUT} layer, batch {BATCH}; "
            "`lasercc simulate -i x.npz -o y.npz`, one fresh process per cell; peak RSS = the child's VmHWM.", "",
            "| rows | input file (MB) | streamed input: peak RSS (MiB) | input read whole: peak RSS (MiB) | "
            "whole / streamed | streamed (s) | whole (s) | same output file |",
            "|---|---|---|---|---|---|---|---|"]
    text = "\n".join(head + lines) + "\n"
    print(text)
    if not args.no_write:
        out = ROOT / "bench" / "results" / "simulate_memory.md"
        title = "" if out.exists() else "# simulate: peak memory vs rows (bench/simulate_memory.py)\n\n"
        with open(out, "a") as f:
            f.write(title + text + "\n")
    return 0


def _same(a: Path, b: Path) -> bool:
    with np.load(a) as za, np.load(b) as zb:
        return sorted(za.files) == sorted(zb.files) and all(np.array_equal(za[k], zb[k]) for k in za.files)


if __name__ == "__main__":
    sys.exit(main())
