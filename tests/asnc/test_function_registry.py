"""Every ASNC function the frontend can write into a graph is known to a process that never imported it.

Why: a loaded artifact is refitted (``asnc-fit``) or inspected by function name; if a name were registered
only as a side effect of importing the ONNX frontend, `lasercc passes` on a saved graph would fail with
"unknown ASNC function" in a fresh process (the Lava environment, a user's script).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import lasercc.frontends.onnx  # noqa: F401 - registers every handler (and, formerly, functions)
from lasercc.frontends.onnx.ops_elementwise import UNARY

FRONTEND = Path(__file__).resolve().parents[2] / "lasercc" / "frontends" / "onnx"


def _names_the_frontend_writes() -> set[str]:
    names = set(UNARY.values()) | {"gelu", "leaky_relu", "clip", "hard_sigmoid", "quick_gelu"}  # unary_params, contrib
    for f in FRONTEND.glob("*.py"):
        names |= set(re.findall(r'asnc_lut\([^,]+, [^,]+, "([a-z_0-9]+)"', f.read_text()))
    return names


def test_registry_alone_knows_every_frontend_function() -> None:
    code = ("import json, sys; import lasercc.asnc.functions as f; "
            "assert 'lasercc.frontends' not in ' '.join(sys.modules); print(json.dumps(sorted(f.FUNCTIONS)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    known = set(json.loads(out.stdout))
    wanted = _names_the_frontend_writes()
    assert len(wanted) > 15, "the scan found too few names: the regex no longer matches the frontend's calls"
    assert wanted <= known, f"registered only by importing the frontend: {sorted(wanted - known)}"
