"""The core must run on the Lava environment's older stack too (Python 3.10, numpy 1.26, networkx 2.8,
onnxruntime 1.23): run the foundation's tests there, in `.venv-lava`, and check Lava itself imports."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAVA_PY = Path(os.environ.get("LASERCC_LAVA_PYTHON", ROOT / ".venv-lava" / "bin" / "python"))

pytestmark = pytest.mark.skipif(not LAVA_PY.exists(),
                                reason=f"no Lava environment at {LAVA_PY} (create it with `make .venv-lava/.stamp`)")


def test_lava_env_versions_and_imports():
    code = ("import sys, numpy, networkx, lava, lasercc; "
            "from lava.magma.core.run_configs import Loihi2SimCfg; "
            "print(sys.version_info[:2], numpy.__version__, networkx.__version__)")
    r = subprocess.run([str(LAVA_PY), "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("(3, 10) 1.") and " 2." in r.stdout  # numpy 1.x, networkx 2.x


def test_core_suite_on_numpy_1_26():
    tests = ["tests/semantics", "tests/ir", "tests/backends/test_numpy_modes.py", "tests/test_artifact.py"]
    r = subprocess.run([str(LAVA_PY), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                       capture_output=True, text=True, cwd=ROOT, check=False, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
