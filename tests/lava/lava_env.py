"""Where the Lava tests find the Python 3.10 Lava environment, and the one skip they share.

Lava (lava-nc 0.10.0) does not import on Python 3.11, so the tests run it in ``.venv-lava`` in a
subprocess; without that environment they skip with this reason (``make test`` creates it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAVA_PY = REPO / ".venv-lava" / "bin" / "python"
needs_lava = pytest.mark.skipif(not LAVA_PY.exists(), reason=f"no Lava environment at {LAVA_PY} "
                                "(create it with `make .venv-lava/.stamp`)")
