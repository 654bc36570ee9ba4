"""bench/laser_tables.py reads the LM helpers' JSON schema and puts each figure beside the paper's row.

Fixtures are written here in the documented schema (bench/results/laser_lm_tables.json, laser_lm_ste.json), with
numbers chosen so that a misread field (ppl vs dnll, wrong table, wrong bits) shows in the rendered cell.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import laser_tables as lt  # noqa: E402


def _lm_row(row: str, bits: int, ppl: float, coding: str = "bse") -> dict:
    return {"row": row, "bits": bits, "coding": coding, "nonlinearity": "asnc16", "nll": 3.0, "ppl": ppl,
            "dnll": ppl / 1000, "ci95": [-0.5, 0.25], "kl": 1e-3}


def _write_fixture(d: Path) -> None:
    tables = {
        "table3": [_lm_row("float model (reference)", 32, 20.0, "float"), _lm_row("SwiGLU FFN only", 16, 21.5),
                   _lm_row("SwiGLU FFN only", 8, 23.25), _lm_row("all components", 16, 22.0)],
        "table4": [_lm_row("float model (reference)", 32, 20.0, "float"), _lm_row("QKV projections", 16, 20.5),
                   _lm_row("+ SwiGLU FFN", 16, 21.75)],
        "table5": [_lm_row("QKV projections only", 16, 20.125)],
        "table6": [_lm_row("BSE + ReLU instead of SiLU, 16 steps", 16, 77.5),
                   _lm_row("rate coding + ASNC, 16 steps (emulated as 4-bit codes)", 16, 512.0, "rate")],
        "timesteps": [_lm_row("BSE + ASNC, 4 steps", 4, 99.0)],
    }
    (d / "laser_lm_tables.json").write_text(json.dumps({
        "commit": "abc1234", "date": "2026-12-03", "model": {"params": 2_560_000, "float_ppl": 20.0,
                                                           "test_tokens": 40_000}, "tables": tables}))
    (d / "laser_lm_ste.json").write_text(json.dumps({"commit": "abc1234", "date": "2026-12-03", "rows": [
        {"bits": 4, "method": "STE", "seeds": 3, "ppl_mean": 30.5, "ppl_sd": 0.25, "float_ppl": 20.0}]}))


def _cells(rows: list[lt.Row], item: str) -> list[lt.Row]:
    return [r for r in rows if r[0] == item]


def test_lm_figures_sit_beside_the_matching_paper_rows(tmp_path: Path) -> None:
    _write_fixture(tmp_path)
    rows = lt.build(tmp_path)
    t3 = _cells(rows, "Table 3")
    ffn = [r for r in t3 if "SwiGLU FFN only" in r[3]]
    assert [r[1] for r in ffn] == ["FFN layers only", ""]  # paper row once, 16 bits first, then 8
    assert "PPL 21.500" in ffn[0][3] and "[16 steps]" in ffn[0][3] and "PPL 23.250" in ffn[1][3]
    assert ffn[0][2] == "5.35 ± 0.03"
    assert "ΔNLL +0.0215 [-0.5000, +0.2500]" in ffn[0][3]
    full = next(r for r in t3 if r[1].startswith("Full SNN"))
    assert "PPL 22.000" in full[3]
    assert "2,560,000 params" in full[4]
    t6 = _cells(rows, "Table 6")
    relu = next(r for r in t6 if r[1].startswith("BSE + ReLU"))
    assert relu[2] == "50.74 ± 0.04" and "PPL 77.500" in relu[3]
    rate = next(r for r in t6 if r[1].startswith("Rate coding"))
    assert "PPL 512.000" in rate[3]
    assert next(r for r in t6 if r[1].startswith("Ideal"))[3] == "no matching row"
    t4 = _cells(rows, "Table 4")  # cumulative: only the last paper step (all spiking) is paired, with our last row
    assert [r[1] for r in t4[:len(lt.PAPER_T4)]] == [p[0] for p in lt.PAPER_T4]
    assert "PPL 21.750" in t4[len(lt.PAPER_T4) - 1][3] and "PPL 20.500" not in t4[0][3]
    ours = [r[3] for r in t4[len(lt.PAPER_T4):]]  # ours listed in our order, the float row left out
    assert len(ours) == 2 and "PPL 20.500" in ours[0] and "PPL 21.750" in ours[1]
    assert any("PPL 99.000" in r[3] for r in _cells(rows, "Timesteps"))
    ste = _cells(rows, "STE (Sec. 3.3)")
    assert len(ste) == 1 and "PPL 30.500 ± 0.250 over 3 seeds (float 20.000)" in ste[0][3]


def test_missing_results_say_which_command_produces_them(tmp_path: Path) -> None:
    rows = lt.build(tmp_path)
    t6 = _cells(rows, "Table 6")
    assert len(t6) == len(lt.PAPER_T6)
    assert all(r[3] == "not yet run (`python bench/laser_lm_tables.py`)" for r in t6)
    assert _cells(rows, "STE (Sec. 3.3)")[0][3] == "not yet run (`python bench/laser_lm_ste.py`)"
    assert "not yet run" in _cells(rows, "Table 2")[0][3]


def test_table2_reads_the_minilm_json_and_markdown_tables(tmp_path: Path) -> None:
    (tmp_path / "minilm_table2.json").write_text(json.dumps({"provenance": {"commit": "def5678", "date": "d"}, "rows": [
        {"component": "Linear 384->1536 layer 0 FFN-up, input rate (IF) in 16 steps, float weights",
         "segments": None, "mse": 5.5, "rel": 4.125, "floor": None}]}))
    (tmp_path / "fidelity_bse_coding.md").write_text(
        "# t\n\n| steps | BSE | eq | rate (Bernoulli) | rate (IF) | TTFS |\n|---:|---:|:-:|---:|---:|---:|\n"
        "| 16 | 1e-11 | yes | 2e-2 | 3e-3 | 4e-4 |\n\ntext\n\n"
        "| steps | BSE | eq | rate (Bernoulli) | rate (IF) | TTFS |\n"
        "|---:|---:|:-:|---:|---:|---:|\n| 16 | 5e-9 | yes | 6e-1 | 7e-2 | 8e-3 |\n")
    rows = lt.build(tmp_path)
    rate = [r for r in _cells(rows, "Table 2") if r[1].startswith("Linear, rate coding")]
    assert rate[1][3] == "5.5 (rel 4.1)" and "(def5678, d)" in rate[1][6]
    t1 = {r[1]: r[3] for r in _cells(rows, "Table 1")}
    assert t1["BSE, 16 steps"] == "U[0,1): 1e-11; N(0,1) in ±4: 5e-9"
    assert t1["TTFS, 16 steps"] == "U[0,1): 4e-4; N(0,1) in ±4: 8e-3"
    assert t1["BSE, 8 steps"] == "U[0,1): ?; N(0,1) in ±4: ?"
