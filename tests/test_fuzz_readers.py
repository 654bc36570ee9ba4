"""Fuzzing the readers: for any mutant of a bundled ONNX model, ``.npz`` file, ``.lir`` text or artifact, a
reader returns or raises a ``LasercError`` -- never another exception. Mutants come from ``lasercc.fuzz``
(a pure function of a seed, so a failure reproduces from the seed hypothesis prints); long campaigns are
``bench/fuzz_campaign.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasercc import fuzz

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus() -> dict[str, object]:
    return fuzz.build_corpus(ROOT)


def _check(target: str, seed: int, corpus: dict[str, object], scratch: Path) -> None:
    outcome, crash = fuzz.run_case(target, seed, corpus, scratch)
    assert crash is None, f"{target} seed {seed}: {crash.error} at {crash.where}"


@pytest.mark.parametrize(("target", "examples"), [("onnx", 60), ("npz", 100), ("lir", 40), ("artifact", 40)])
def test_reader_never_crashes(target: str, examples: int, corpus: dict[str, object],
                              tmp_path_factory: pytest.TempPathFactory) -> None:
    scratch = tmp_path_factory.mktemp(target)

    @settings(max_examples=examples, deadline=None, database=None)
    @given(seed=st.integers(min_value=0, max_value=2**32 - 1))
    def run(seed: int) -> None:
        _check(target, seed, corpus, scratch)

    run()


def test_mutants_are_deterministic_and_mostly_refused(corpus: dict[str, object], tmp_path: Path) -> None:
    """The fuzzer reaches the checks: most mutants are refused (a mutator that produced only valid or
    only unparsable inputs would test nothing), and a seed always gives the same mutant."""
    outcomes = [fuzz.run_case("onnx", s, corpus, tmp_path)[0] for s in range(20)]
    assert outcomes == [fuzz.run_case("onnx", s, corpus, tmp_path)[0] for s in range(20)]
    assert outcomes.count("refused") >= 5 and outcomes.count("ok") >= 2, outcomes


def test_fuzz_findings_are_input_errors(tmp_path: Path) -> None:
    """What the ONNX campaigns found (each crashed before): a Cast without 'to', an unknown element type in
    value_info."""
    import onnx
    from onnx import TensorProto, helper

    from lasercc.errors import LasercError

    def model(nodes: list, out_type: int = TensorProto.FLOAT) -> bytes:  # noqa: ANN001
        g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", out_type, [2, 4])], [])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m.SerializeToString()

    cases = {
        "no 'to' attribute": model([helper.make_node("Cast", ["x"], ["h"], name="c"),
                                    helper.make_node("Relu", ["h"], ["y"])]),
        "unknown ONNX element type 999": model([helper.make_node("Relu", ["x"], ["y"])], out_type=999),
    }
    for message, data in cases.items():
        with pytest.raises(LasercError, match=message):
            fuzz.load_onnx_target(data, tmp_path)
    assert onnx  # the module is used by the helpers above
