"""ONNX's own backend node tests for the ops transformer exports contain, through lasercc (the peer suite).

Every case of every op in :data:`lasercc.onnx_conformance.TRANSFORMER_OPS` is compiled at 16 bits (and the
float ones at 8 bits), calibrated on its own inputs, run and classified against ONNX's expected outputs
(tolerance derived from the code step: see :mod:`lasercc.onnx_conformance`). One test per op and width:

* no case may be ``wrong`` (a silent wrong answer) or ``crash`` (a Python error escaping the library), except
  the commented :data:`KNOWN_WRONG` entries (strict: an entry that stops being wrong must be removed);
* the number of passing cases may not fall below the floor recorded in ``onnx_node_floor.json``, which
  ``python bench/onnx_node_tests.py --write-floor`` writes from a run (never edited by hand): coverage
  only ratchets up.

The N/A classes (string/complex/float8/sub-byte tensors, NaN/Inf data, sequences, cases with no input)
are justified in :func:`lasercc.onnx_conformance.not_applicable`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from lasercc.onnx_conformance import Case, collect, for_bits, run_case, variants

FLOOR_FILE = Path(__file__).with_name("onnx_node_floor.json")

# Known wrong answers (case id -> why), each a bug still to fix; the test fails when one of them passes so that
# this list only shrinks. Empty: the last ones (ReduceLogSumExp and LayerNormalization function bodies, Attention
# softcap over a "poison" V) were fixed or are refused by a general rule -- see notes/frontend.md.
KNOWN_WRONG: dict[tuple[str, int], str] = {}


@lru_cache(maxsize=1)
def _cases() -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for c in variants(collect()):
        out.setdefault(c.op, []).append(c)
    return out


def _floor() -> dict[str, dict[str, int]]:
    return json.loads(FLOOR_FILE.read_text()) if FLOOR_FILE.exists() else {}


# every op at 16 bits; at 8 bits only ops with a float-output case (integer outputs are exact at any width)
PARAMS = [(op, bits) for op in sorted(_cases()) for bits in (16, 8) if for_bits(_cases()[op], bits)]


@pytest.mark.parametrize(("op", "bits"), PARAMS)
def test_node_cases(op: str, bits: int) -> None:
    cases = for_bits(_cases()[op], bits)
    res = [run_case(c, bits) for c in cases]
    bad = [f"{r.case}: {r.status}: {r.detail}" for r in res
           if r.status == "crash" or (r.status == "wrong" and (r.case, bits) not in KNOWN_WRONG)]
    assert not bad, "\n".join(bad)
    fixed = [f"{r.case} ({r.status})" for r in res if (r.case, bits) in KNOWN_WRONG and r.status != "wrong"]
    assert not fixed, f"no longer wrong, remove from KNOWN_WRONG: {fixed}"
    passed = sum(r.status == "pass" for r in res)
    floor = _floor().get(str(bits), {}).get(op, 0)
    assert passed >= floor, (f"{op} at {bits} bits: {passed} cases pass, the recorded floor is {floor}; "
                             "non-passing: " + "; ".join(f"{r.case} {r.status} {r.detail}" for r in res
                                                        if r.status != "pass"))
