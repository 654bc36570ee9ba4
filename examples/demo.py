"""`make demo`: compile the bundled example transformer for Loihi 2, simulate it, compare with
onnxruntime, print the energy report.

Each stage runs when the part of lasercc it needs is present; until the ONNX frontend lands the
demo simulates the bundled example IR graph (examples/ir/attention_block) and prints its outputs
and spike statistics.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sh(*args: str) -> None:
    print(f"\n$ lasercc {' '.join(args)}", flush=True)
    r = subprocess.run([sys.executable, "-m", "lasercc", *args], cwd=ROOT, check=False)
    if r.returncode:
        sys.exit(r.returncode)


def main() -> None:
    example = "examples/ir/attention_block"
    print("lasercc demo: one spiking attention + GELU FFN block (examples/build_example_ir.py)")
    sh("inspect", example, "--no-ir")
    sh("simulate", example, "--input", f"{example}/input.npz", "--mode", "spikes")


if __name__ == "__main__":
    main()
