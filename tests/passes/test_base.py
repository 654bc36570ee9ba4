"""Pass infrastructure: pipeline parsing, typed options, errors, PassManager records and blame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pytest

from lasercc.errors import VerifyError
from lasercc.ir.nodes import Soma
from lasercc.passes.base import (
    Pass,
    PassManager,
    PassResult,
    PassVerifyError,
    PipelineError,
    all_passes,
    parse_pipeline,
    register_pass,
)
from lasercc.testing import mlp_graph


@register_pass
@dataclass(frozen=True)
class _Opts(Pass):
    """Test pass with one option of each supported type."""

    name: ClassVar[str] = "test-opts"
    n: int = 3
    ratio: float = 0.5
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    layers: tuple[str, ...] = ()
    limit: int | None = None

    def run(self, graph):
        return PassResult(graph, False, {"n": self.n})


@register_pass
@dataclass(frozen=True)
class _Breaker(Pass):
    """Test pass that drops the first Soma's weight constant (produces an invalid graph)."""

    name: ClassVar[str] = "test-break"

    def run(self, graph):
        soma = next(n for n in graph.nodes if isinstance(n, Soma))
        nodes = tuple(n.replace(weights=("nope",)) if n is soma else n for n in graph.nodes)
        return PassResult(graph.replace(nodes=nodes), True)


def test_options_are_typed_and_round_trip():
    (p,) = parse_pipeline("test-opts{n=0x10, ratio=2.5e-1, flag=yes, mode=b, layers=[fc1,fc2], limit=none}")
    assert p == _Opts(n=16, ratio=0.25, flag=True, mode="b", layers=("fc1", "fc2"), limit=None)
    assert parse_pipeline(p.spec()) == [p]
    assert parse_pipeline("test-opts{layers=fc1}")[0].layers == ("fc1",)
    assert parse_pipeline("test-opts")[0].spec() == "test-opts"


@pytest.mark.parametrize("spec, words", [
    ("nosuch", ["unknown pass 'nosuch'", "dce", "fold", "partition"]),
    ("test-opts{m=1}", ["no option 'm'", "n: int", "mode: a|b"]),
    ("test-opts{n=abc}", ["n=abc", "integer"]),
    ("test-opts{mode=c}", ["one of a, b"]),
    ("test-opts{n}", ["needs a value"]),
    ("test-opts{n=1", ["unbalanced"]),
    ("nosuchmodule_xyz:Foo", ["cannot import"]),
    ("lasercc.passes.base:PassManager", ["not a Pass subclass"]),
])
def test_bad_specs_give_one_clear_error(spec, words):
    with pytest.raises(PipelineError) as e:
        parse_pipeline(spec)
    for w in words:
        assert w in str(e.value)


def test_builtins_registered_with_docs():
    passes = all_passes()
    for name in ("fold", "dce", "encode-elim", "partition"):
        assert name in passes and passes[name].doc()


def test_pass_manager_records_and_blames():
    g = mlp_graph(layers=2, width=8, batch=2)
    out, recs = PassManager("test-opts{n=7},dce").run(g)
    assert [r.name for r in recs] == ["test-opts", "dce"]
    assert recs[0].info == {"n": 7} and not recs[0].changed and recs[0].seconds >= 0
    assert out == g
    with pytest.raises(PassVerifyError) as e:
        PassManager("dce,test-break").run(g)
    assert "pass 'test-break'" in str(e.value) and "@nope" in str(e.value)
    assert isinstance(e.value, VerifyError) and e.value.node_text and "soma" in e.value.node_text


def test_module_class_spec_and_custom_pass_example():
    import examples.custom_pass as cp

    g = mlp_graph(layers=2, width=8, batch=2)
    (p,) = parse_pipeline("examples.custom_pass:WidenLayers{layers=[fc1],extra_bits=3}")
    assert isinstance(p, cp.WidenLayers) and p.extra_bits == 3
    out, recs = PassManager([p]).run(g)
    t0, t1 = g.type_of("fc1"), out.type_of("fc1")
    assert t1.bits == t0.bits + 3 and recs[0].info["widened"] == ["fc1"]
    # the wider code represents the same reals more finely: decoded values agree within half the old LSB
    # except at saturation, where the wider range reaches (2^e - 1) finer steps further (< 1 old LSB)
    from lasercc.runtime import run_graph
    from lasercc.testing import random_inputs

    x = random_inputs(g, 0)
    a, b = run_graph(g, x).values["fc1"], run_graph(out, x).values["fc1"]
    lsb = t0.scale[0]
    sat = (np.abs(a - (t0.hi - t0.zero_point[0]) * lsb) < 1e-6) | (np.abs(a + t0.zero_point[0] * lsb) < 1e-6)
    assert np.max(np.abs(a - b)) < lsb
    assert np.all(np.abs(a - b)[~sat] <= lsb * 0.5 + 1e-6)
    assert np.any(a != b)  # the extra bits carry information the narrow code rounded away
