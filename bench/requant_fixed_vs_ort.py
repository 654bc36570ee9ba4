"""How often does hardware-realizable ``fixed`` requantization differ from onnxruntime's ``ort`` rule?

Accumulators of realistic int8 layers (K inputs of 8-bit codes x int8 weights) are requantized
with random float32 scales both ways; the table gives the fraction of codes that differ and the
largest difference. Run: ``.venv/bin/python bench/requant_fixed_vs_ort.py`` (writes
bench/results/requant_fixed_vs_ort.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lasercc.semantics import requantize

OUT = Path(__file__).parent / "results" / "requant_fixed_vs_ort.md"


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for out_bits, k in [(8, 64), (8, 768), (8, 3072), (16, 768), (16, 4096)]:
        n = 1_000_000
        x = rng.integers(0, 256, size=(n // 100, k)).astype(np.float64)
        w = rng.integers(-127, 128, size=(k, 100)).astype(np.float64)
        acc = (x @ w).astype(np.int64).ravel() - 128 * int(w.sum())
        typical = float(np.std(acc)) * 4
        total = diff = 0
        worst = 0
        for _ in range(10):
            scale = np.float32((2 ** (out_bits - 1)) / typical * rng.uniform(0.5, 2.0))
            a = requantize(acc, scale, 1.0, 1.0, 2 ** (out_bits - 1), out_bits, mode="ort")
            b = requantize(acc, scale, 1.0, 1.0, 2 ** (out_bits - 1), out_bits, mode="fixed")
            d = np.abs(a - b)
            total += d.size
            diff += int((d > 0).sum())
            worst = max(worst, int(d.max()))
        over = float((np.abs(acc) > 2**24).mean())
        rows.append((out_bits, k, total, diff / total, worst, over))
    lines = ["| out bits | K | codes | fixed != ort | max diff (LSB) | share of acc > 2^24 |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {b} | {k} | {t:,} | {f:.2e} | {w} | {o:.3f} |" for b, k, t, f, w, o in rows]
    text = "\n".join(lines)
    print(text)
    print("\nWhere they differ it is by one LSB: `ort` converts the accumulator to float32 (inexact above 2^24)\n"
          "and rounds half to even; `fixed` multiplies exactly by a 31-bit integer and rounds half up.")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("# fixed vs ort requantization\n\nCommand: `.venv/bin/python bench/requant_fixed_vs_ort.py`\n\n"
                   + text + "\n")


if __name__ == "__main__":
    main()
