"""bench/hf_zoo_summary.py: reads zoo rows written before and after the "ORT vs ORT ×(1+2^-20)" column, tells
which onnxruntime a results file compared with, and sorts rows under target into misses and ill-conditioned files.

The rows are built here (no zoo run); the expected cells and verdicts follow from the targets the issue sets
(quantized file >= 0.995 vs ORT on that file; all-ops s8 QDQ files vs ORT float, README "QOperator attention
masks") and the conditioning rule (a file below 0.995 against itself perturbed is not determined by its arithmetic).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import hf_zoo_summary as hs  # noqa: E402


def _line(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


NEW_HEAD = _line("model", "format", "compile", "cos vs ORT float", "cos vs ORT quantized", "ORT vs ORT ×(1+2^-20)",
                 "top-1 vs own ORT", "max abs err vs own ORT", "notes")
OLD_HEAD = _line("model", "format", "compile", "cos vs ORT float", "cos vs ORT quantized", "top-1 vs own ORT",
                 "max abs err vs own ORT", "notes")


def test_row_with_and_without_the_conditioning_column() -> None:
    new = hs.text_row(_line("llama.dynamo", "lasercc on ORT QDQ", "ok", "0.99900", "0.99950", "0.99990", "0.957",
                            "0.2583", "130 IR nodes, 0.2 s"))
    old = hs.text_row(_line("llama.dynamo", "lasercc on ORT QDQ", "ok", "0.99900", "0.99950", "0.957", "0.2583",
                            "130 IR nodes, 0.2 s"))
    assert new is not None and old is not None
    assert new[hs.COND] == "0.99990" and old[hs.COND] == ""
    for c in (new, old):
        assert (c[hs.MODEL], c[hs.RUN], c[hs.COMPILE]) == ("llama.dynamo", "lasercc on ORT QDQ", "ok")
        assert (c[hs.COS_FLOAT], c[hs.COS_QUANT], c[hs.TOP1], c[hs.MAX_ABS]) == ("0.99900", "0.99950", "0.957",
                                                                                   "0.2583")
        assert c[hs.NOTES] == "130 IR nodes, 0.2 s"
    fail_new = hs.text_row(_line("t5", "lasercc on ORT QDQ", "**fail**", "", "", "", "", "", "FrontendError: x"))
    fail_old = hs.text_row(_line("t5", "lasercc on ORT QDQ", "**fail**", "", "", "", "", "FrontendError: x"))
    assert fail_new is not None and fail_old is not None
    assert fail_new[hs.NOTES] == fail_old[hs.NOTES] == "FrontendError: x"
    assert hs.text_row(NEW_HEAD) is None and hs.text_row(OLD_HEAD) is None
    assert hs.text_row("|---|---|---|---:|---:|---:|---:|---:|---|") is None
    assert hs.text_row("| bert | 6/7 | 7/7 | FrontendError |") is None  # another table of the same file


def _file(tmp_path: Path, name: str, reference_line: bool, attention: str, rows: list[str]) -> Path:
    head = [OLD_HEAD, "|---|---|---|---:|---:|---:|---:|---|"] if not reference_line else \
        [NEW_HEAD, "|---|---|---|---:|---:|---:|---:|---:|---|"]
    text = ["# Hugging Face architecture zoo: tiny random models through lasercc", "",
            f"Command: `.venv/bin/python bench/hf_zoo.py --dynamo{attention}`  "]
    if reference_line:
        text.append(hs.NOOPT_MARK + " (`_ort_conditioning.session`), for every row (float and quantized files).  ")
    text += ["Machine: x86_64", "", *head, *rows, ""]
    p = tmp_path / name
    p.write_text("\n".join(text))
    return p


def test_reference_and_attention_read_from_the_header(tmp_path: Path) -> None:
    new = _file(tmp_path, "new.md", True, " --attention default",
                [_line("bert", "float --bits 16", "ok", "0.99990", "0.99960", "", "0.99", "0.2", "1 IR nodes, 0.1 s")])
    old = _file(tmp_path, "old.md", False, "",
                [_line("bert", "float --bits 16", "ok", "0.99990", "0.99960", "0.99", "0.2", "1 IR nodes, 0.1 s")])
    assert hs.reference(new.read_text()) == hs.NOOPT
    assert hs.reference(old.read_text()) == hs.DEFAULT
    (key_new, (kind_new, _, ref_new)), = hs.text_runs(new).items()
    (key_old, (kind_old, _, ref_old)), = hs.text_runs(old).items()
    assert key_new == ("bert", "ts17/sdpa", "float --bits 16") and ref_new == hs.NOOPT and kind_new == "f16"
    assert key_old == ("bert", "ts17/eager", "float --bits 16") and ref_old == hs.DEFAULT and kind_old == "f16"


def _cells(run: str, cos_float: str, cos_quant: str, cond: str) -> list[str]:
    return ["m", run, "ok", cos_float, cos_quant, cond, "0.9", "0.1", "10 IR nodes, 0.5 s"]


@pytest.mark.parametrize(("kind", "run", "cos_float", "cos_quant", "cond", "expected"), [
    ("q", "lasercc on ORT QDQ", "0.99900", "0.99700", "0.99990", "ok"),
    ("q", "lasercc on ORT QDQ", "0.99000", "0.98000", "0.96000", "ill-conditioned"),  # the file itself is noise
    ("q", "lasercc on ORT QDQ", "0.99000", "0.98000", "0.99990", "miss"),  # well-conditioned: a real miss
    ("q", "lasercc on ORT QDQ", "0.99000", "0.98000", "", "miss"),  # conditioning not measured: counted as a miss
    ("q", "lasercc on ORT QDQ", "0.99900", "0.99499", "0.99500", "miss"),  # 0.995 itself is well-conditioned
    # all-ops s8 QDQ: ORT float counts; the file's own collapsed output does not, in either direction
    ("s8all", "lasercc on ORT QDQ s8 all ops", "0.99700", "0.81000", "0.99990", "ok"),
    ("s8all", "lasercc on ORT QDQ s8 all ops", "0.99000", "0.99900", "0.90000", "miss"),
    ("f16", "float --bits 16", "0.98900", "0.99990", "", "miss"),
    ("f8", "float --bits 8", "0.90100", "0.80000", "", "ok"),
])
def test_verdict(kind: str, run: str, cos_float: str, cos_quant: str, cond: str, expected: str) -> None:
    assert hs._kind(run.replace("lasercc on ", "")) == kind
    assert hs.verdict(kind, _cells(run, cos_float, cos_quant, cond)) == expected


def test_family_counts_misses_apart_from_ill_conditioned_files() -> None:
    rows: hs.Rows = {
        ("fam", "ts17/eager", "ORT QDQ (ORT reference)"): ("ref", _cells("ORT QDQ (ORT reference)", "0.999",
                                                                          "1.00000", "0.96000"), hs.NOOPT),
        ("fam", "ts17/eager", "ORT dynamic (ORT reference)"): ("ref", _cells("ORT dynamic (ORT reference)", "0.999",
                                                                              "1.00000", "0.99990"), hs.NOOPT),
        ("fam", "ts17/eager", "ORT QDQ s8 all ops (ORT reference)"): (
            "ref", _cells("ORT QDQ s8 all ops (ORT reference)", "0.8", "1.00000", "0.90000"), hs.NOOPT),
        ("fam", "ts17/eager", "lasercc on ORT QDQ"): ("q", _cells("lasercc on ORT QDQ", "0.99", "0.98000",
                                                                  "0.96000"), hs.NOOPT),
        ("fam", "ts17/eager", "lasercc on ORT dynamic"): ("q", _cells("lasercc on ORT dynamic", "0.99", "0.99000",
                                                                      "0.99990"), hs.NOOPT),
        ("fam", "ts17/eager", "lasercc on ORT QDQ s8 all ops"): (
            "s8all", _cells("lasercc on ORT QDQ s8 all ops", "0.99700", "0.81000", "0.90000"), hs.NOOPT),
        ("fam", "ts13/eager", "lasercc on ORT QDQ"): ("q", _cells("lasercc on ORT QDQ", "0.99", "0.99000", ""),
                                                      hs.DEFAULT),
    }
    f = hs.collect_rows(rows)["fam"]
    assert (f.ok, f.total) == (4, 4)
    assert len(f.ill) == 1 and f.ill[0].startswith("ts17/eager lasercc on ORT QDQ 0.9800")
    assert sorted(b.split(" 0.99")[0] for b in f.below) == ["ts13/eager lasercc on ORT QDQ",
                                                             "ts17/eager lasercc on ORT dynamic"]
    assert "conditioning not measured" in next(b for b in f.below if b.startswith("ts13"))
    assert hs.DEFAULT in next(b for b in f.below if b.startswith("ts13"))
    assert sorted(f.cond) == [0.96, 0.9999]  # the MatMul/Gemm-quantized files only, not the all-ops one
    assert f.s8_float == [0.997] and f.cos["s8all"] == [0.81]
    table = hs.summary({"fam": f})
    assert "| fam | ts13/eager, ts17/eager | 4 / 4 | 2 | 1 |" in table
    assert "0.96000 - 0.99990" in table and "0.99700 - 0.99700 / 0.81000 - 0.81000" in table


def test_reference_of_hf_zoo_md_read_below_the_summary(tmp_path: Path) -> None:
    """hf_zoo.md carries this script's summary (a table, and prose naming other runs' options) above its run
    header: the reference and attention come from the run header, not from the first lines of the file."""
    run = _file(tmp_path, "run.md", True, " --attention default",
                [_line("bert", "float --bits 16", "ok", "0.99990", "0.99960", "", "0.99", "0.2", "1 IR nodes, 0.1 s")])
    title, body = run.read_text().split("\n", 1)
    summary = "\n".join([hs.START, "Command: `x --attention eager`, ORT with default graph optimisations", "",
                         "| family | exports |", "|---|---|", "| bert | ts17/eager |", hs.END])
    md = tmp_path / "hf_zoo.md"
    md.write_text(f"{title}\n\n{summary}\n\n## Opset-17 / dynamo run with every format\n{body}")
    assert hs.reference(md.read_text()) == hs.NOOPT and hs.attention(md.read_text()) == "sdpa"
    (key, (_, _, ref)), = hs.text_runs(md).items()
    assert key == ("bert", "ts17/sdpa", "float --bits 16") and ref == hs.NOOPT
