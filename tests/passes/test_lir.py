"""Pass tests written as IR text: ``tests/passes/lir/NAME.lir`` is an input graph whose comments say
what to run and what to expect (in the style of LLVM's lit + FileCheck):

* ``# RUN: PIPELINE`` -- the ``--passes`` pipeline to run (``lasercc.passes.opt_text``);
* ``# CHECK: text`` -- a later output line contains ``text``; ``# CHECK-NEXT:`` the very next line does;
  ``# CHECK-SAME:`` the line of the previous match does; ``# CHECK-NOT: text`` no line between the
  previous match and the next one (or the end) contains ``text``;
* ``# DATA: @name = [json list]`` -- the values of a declared constant (reshaped to its declared dtype and
  shape); constants without data stay shape-only, which is enough for passes that only restructure;
  ``# CHECK-DATA: @name = [json list]`` -- the result's constant holds exactly these values;
* ``# ERROR: text`` -- the pipeline must fail with a lasercc error whose message contains ``text``;
* or a file ``NAME.expected.lir`` beside it: the whole output must equal it.

Comments are ignored by the parser, so each file is itself a valid ``.lir`` input for ``lasercc opt``.
To add a test, drop a file in the directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lasercc.errors import LasercError
from lasercc.ir.text import parse_graph
from lasercc.passes import opt_graph, opt_text

LIR_DIR = Path(__file__).parent / "lir"
CASES = sorted(p for p in LIR_DIR.glob("*.lir") if not p.name.endswith(".expected.lir"))
DIRECTIVE = re.compile(r"^\s*#\s*(RUN|CHECK|CHECK-NEXT|CHECK-SAME|CHECK-NOT|CHECK-DATA|ERROR|DATA):(.*)$")


def directives(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2).strip()) for line in text.splitlines() if (m := DIRECTIVE.match(line))]


def constants(text: str, ds: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Arrays for the ``# DATA: @name = [...]`` lines, typed and shaped as the graph declares them."""
    data = [v for k, v in ds if k == "DATA"]
    if not data:
        return {}
    specs = parse_graph(text).constants
    out = {}
    for d in data:
        name, _, values = d.partition("=")
        name = name.strip().lstrip("@")
        spec = specs[name]
        out[name] = np.asarray(json.loads(values), dtype=spec.dtype).reshape(spec.shape)
    return out


def filecheck(output: str, checks: list[tuple[str, str]]) -> None:
    """Match the CHECK directives against ``output``; raise AssertionError saying which one failed."""
    lines = output.splitlines()
    pos = 0  # first line not yet consumed
    last = -1  # line of the previous positive match
    nots: list[str] = []

    def fail(kind: str, pat: str, why: str) -> None:
        raise AssertionError(f"{kind}: {pat!r} {why}\n--- output ---\n{output}")

    def check_nots(upto: int) -> None:
        for pat in nots:
            for i in range(pos, upto):
                if pat in lines[i]:
                    fail("CHECK-NOT", pat, f"found on output line {i + 1}: {lines[i]!r}")
        nots.clear()

    for kind, pat in checks:
        if kind == "CHECK-NOT":
            nots.append(pat)
        elif kind == "CHECK":
            idx = next((i for i in range(pos, len(lines)) if pat in lines[i]), None)
            if idx is None:
                fail(kind, pat, f"not found after output line {pos}")
            check_nots(idx)
            last, pos = idx, idx + 1
        elif kind == "CHECK-NEXT":
            if last < 0:
                fail(kind, pat, "has no previous CHECK")
            if pos >= len(lines) or pat not in lines[pos]:
                fail(kind, pat, f"not on output line {pos + 1}")
            check_nots(pos)
            last, pos = pos, pos + 1
        elif kind == "CHECK-SAME":
            if last < 0 or pat not in lines[last]:
                fail(kind, pat, f"not on the line of the previous match ({last + 1})")
    check_nots(len(lines))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_lir(path: Path) -> None:
    text = path.read_text()
    ds = directives(text)
    runs = [v for k, v in ds if k == "RUN"]
    assert len(runs) == 1, f"{path.name}: needs exactly one '# RUN: pipeline' line"
    errors = [v for k, v in ds if k == "ERROR"]
    checks = [(k, v) for k, v in ds if k.startswith("CHECK") and k != "CHECK-DATA"]
    data_checks = [v for k, v in ds if k == "CHECK-DATA"]
    expected = path.with_name(path.stem + ".expected.lir")
    assert errors or checks or data_checks or expected.exists(), f"{path.name}: nothing to check"
    consts = constants(text, ds)
    if errors:
        with pytest.raises(LasercError) as e:
            opt_text(text, runs[0], consts)
        assert all(m in str(e.value) for m in errors), str(e.value)
        return
    out = opt_text(text, runs[0], consts)
    if expected.exists():
        assert out == expected.read_text()
    filecheck(out, checks)
    if data_checks:
        result, _ = opt_graph(parse_graph(text, consts or None), runs[0])
        for d in data_checks:
            name, _, values = d.partition("=")
            name = name.strip().lstrip("@")
            assert name in result.constants, f"CHECK-DATA: no constant @{name} in the result"
            got = np.asarray(result.constants[name])
            assert got.tolist() == json.loads(values), f"CHECK-DATA @{name}: got {got.tolist()}"
    assert opt_text(out, "") == out  # the result parses, verifies and prints back the same


def test_there_are_cases_for_several_passes() -> None:
    passes = {p.split("{")[0] for path in CASES for k, v in directives(path.read_text()) if k == "RUN"
              for p in v.split(",")}
    assert len(passes) >= 3, passes


def test_filecheck_reports_what_failed() -> None:
    out = "a\nb\nc\n"
    filecheck(out, [("CHECK", "a"), ("CHECK-NEXT", "b"), ("CHECK-NOT", "x"), ("CHECK", "c")])
    with pytest.raises(AssertionError, match="CHECK-NEXT: 'c'"):
        filecheck(out, [("CHECK", "a"), ("CHECK-NEXT", "c")])
    with pytest.raises(AssertionError, match="CHECK-NOT: 'b'"):
        filecheck(out, [("CHECK", "a"), ("CHECK-NOT", "b"), ("CHECK", "c")])
    with pytest.raises(AssertionError, match="not found"):
        filecheck(out, [("CHECK", "b"), ("CHECK", "a")])


def test_opt_cli_writes_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lasercc.cli import main

    src = LIR_DIR / "dce.lir"
    dst = tmp_path / "out.lir"
    assert main(["opt", str(src), "--passes", "dce", "-o", str(dst)]) == 0
    assert dst.read_text() == opt_text(src.read_text(), "dce")
    assert main(["opt", str(src), "--passes", "dce"]) == 0
    assert capsys.readouterr().out == dst.read_text()
    assert main(["opt", str(LIR_DIR / "verify_error.lir"), "--passes", "dce"]) == 2
    assert "no node defines" in capsys.readouterr().err
