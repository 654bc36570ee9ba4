"""bench/hf_zoo.py: rewriting bench/results/hf_zoo.md replaces its run section only -- the per-family summary above
it (bench/hf_zoo_summary.py) and the sections after it survive a rerun; any other results file is written whole."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import hf_zoo  # noqa: E402

NEW = "# Hugging Face architecture zoo\n\nCommand: new  \n\n| model | format |\n| bert | new row |\n"
OLD = ("# Hugging Face architecture zoo\n\n<!-- family-summary:start -->\nsummary\n<!-- family-summary:end -->\n\n"
       + hf_zoo.RUN_HEAD + "\nCommand: old  \n\n| model | format |\n| bert | old row |\n\n"
       "## Before the fixes of this change\n\nhistory\n\n## Findings\n\n* kept\n")


def test_run_section_replaced_rest_kept() -> None:
    got = hf_zoo.merge(OLD, NEW)
    assert "new row" in got and "old row" not in got and "Command: old" not in got
    assert got.startswith("# Hugging Face architecture zoo\n\n<!-- family-summary:start -->\nsummary\n")
    assert got.endswith("## Before the fixes of this change\n\nhistory\n\n## Findings\n\n* kept\n")
    assert got.count(hf_zoo.RUN_HEAD) == 1
    assert hf_zoo.merge(got, NEW) == got  # rerunning is idempotent


def test_other_files_written_whole() -> None:
    assert hf_zoo.merge(None, NEW) == NEW
    assert hf_zoo.merge("# another zoo file\n\n| model | format |\n| x | y |\n", NEW) == NEW
