"""The CLI: simulate and inspect work on the bundled example; bad input is one line on stderr, exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lasercc.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ir" / "attention_block"


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_and_json(capsys, tmp_path):
    code, out, err = run_cli(["simulate", EXAMPLE, "--input", EXAMPLE / "input.npz", "-o", tmp_path / "y.npz"], capsys)
    assert code == 0, err
    assert "spikes" in out and "latency" in out
    y = np.load(tmp_path / "y.npz")
    assert y["out"].shape == (16, 16) and y["out.codes"].dtype == np.int64
    args = ["simulate", EXAMPLE, "--input", EXAMPLE / "input.npz", "--json", "--mode", "spikes"]
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    data = json.loads(out)
    assert data["stats"]["total"]["spikes"] > 0 and data["outputs"]["out"]["shape"] == [16, 16]


def test_inspect(capsys):
    code, out, _ = run_cli(["inspect", EXAMPLE], capsys)
    assert code == 0
    assert "graph attention_block {" in out and "decode_mac" in out and "timesteps" in out
    code, out, _ = run_cli(["inspect", EXAMPLE / "graph.lir", "--json"], capsys)
    assert json.loads(out)["nodes"]["soma"] >= 5


def _write_inputs(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_artifact", "no such artifact"),
        ("missing_input", "no such input file"),
        ("wrong_name", "input names do not match"),
        ("wrong_shape", "expected shape"),
        ("wrong_dtype", "expected real numbers"),
        ("corrupt_weights", "corrupt weights"),
        ("bad_ir", "line 4, column 3: unexpected 'const'"),
        ("not_npz", "cannot read as .npz"),
    ],
)
def test_bad_input_is_one_line_exit_2(case, message, tmp_path, capsys):
    art = tmp_path / "art"
    art.mkdir()
    for f in ("graph.lir", "weights.npz", "manifest.json"):
        (art / f).write_bytes((EXAMPLE / f).read_bytes())
    inp = _write_inputs(tmp_path / "x.npz", x=np.zeros((8, 16), np.float32))
    target = art
    if case == "missing_artifact":
        target = tmp_path / "nope"
    elif case == "missing_input":
        inp = tmp_path / "nope.npz"
    elif case == "wrong_name":
        inp = _write_inputs(tmp_path / "y.npz", tokens=np.zeros((8, 16), np.float32))
    elif case == "wrong_shape":
        inp = _write_inputs(tmp_path / "y.npz", x=np.zeros((8, 15), np.float32))
    elif case == "wrong_dtype":
        inp = _write_inputs(tmp_path / "y.npz", x=np.array([["a"] * 16] * 8))
    elif case == "corrupt_weights":
        (art / "weights.npz").write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "bad_ir":
        text = (art / "graph.lir").read_text().splitlines()
        text[2] = "  const @w1 : i8[16, 16"
        (art / "graph.lir").write_text("\n".join(text))
    elif case == "not_npz":
        inp.write_bytes(b"hello")
    code, out, err = run_cli(["simulate", target, "--input", inp], capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert message in err, err
    assert len(lines) <= 2, err  # one line (a verifier error may add the node's text)


def test_python_dash_m_entry_point():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "lasercc", "inspect", str(EXAMPLE), "--no-ir"], capture_output=True,
                       text=True, env=env, check=False)
    assert r.returncode == 0 and "latency" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lasercc", "simulate", "/nonexistent", "--input", "x.npz"],
                       capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 2 and r.stderr.startswith("lasercc simulate: error:")
