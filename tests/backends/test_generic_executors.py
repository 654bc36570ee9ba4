"""One executor per mode: NumPy and torch run the *same* node-kind code and differ only in hooks.

Structure: for each mode, the NumPy and torch executors derive from one generic class
(:class:`CodesExecutor`, :class:`SpikesExecutor`); every node kind resolves to the very same
function object in both, defined in the generic modules; the backend classes define only hook
methods. Behaviour: on random graphs (every node kind, both requant rules, signed trains via the
``signed-encode`` pass) the two backends give identical codes and statistics in each mode, and
both equal the int64 codes reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasercc.backends import exec_codes, exec_spikes, generic
from lasercc.backends.base import Executor
from lasercc.backends.exec_codes import CodesExecutor
from lasercc.backends.exec_spikes import SpikesExecutor
from lasercc.backends.numpy_ref import NumpyCodes, NumpySpikes, _NumpyBackend
from lasercc.errors import LasercError
from lasercc.ir import NODE_KINDS
from lasercc.passes.signed import SignedEncode
from lasercc.runtime import run_graph
from lasercc.testing import random_graph, random_inputs

torch = pytest.importorskip("torch")
from lasercc.backends.torch_exec import TorchCodes, TorchSpikes, _TorchBackend  # noqa: E402

MODES = ((CodesExecutor, NumpyCodes, TorchCodes), (SpikesExecutor, NumpySpikes, TorchSpikes))
GENERIC_MODULES = {generic.__name__, exec_codes.__name__, exec_spikes.__name__}
#: what a backend class may override of the generic classes: the hooks of XPExecutor, its set-up, and
#: ``run`` as a context around the walk (NumPy: BLAS threads); ``_table`` is rebuilt per subclass
HOOKS = {"xp", "name", "const", "matmul_const", "matmul_dyn", "accept", "to_host", "__init__", "prepare", "run",
         "stack_steps", "_table"}


@pytest.mark.parametrize("generic_cls,np_cls,torch_cls", MODES)
def test_numpy_and_torch_share_every_node_kind_implementation(generic_cls, np_cls, torch_cls):
    assert issubclass(np_cls, generic_cls) and issubclass(torch_cls, generic_cls)
    kinds = set(generic_cls._table)
    executable = {k for op, k in NODE_KINDS.items() if op != "input"}
    assert kinds == executable, "the generic executor must implement every node kind"
    assert set(np_cls._table) == set(torch_cls._table) == kinds
    for kind, attr in generic_cls._table.items():
        fn = getattr(generic_cls, attr)
        assert np_cls._table[kind] == torch_cls._table[kind] == attr
        assert getattr(np_cls, attr) is fn and getattr(torch_cls, attr) is fn, f"{kind.op}: overridden by a backend"
        assert fn.__module__ in GENERIC_MODULES, f"{kind.op} is implemented outside the generic executors"


def test_backend_hook_classes_define_only_hooks():
    """The shared hook classes of the two backends define only hooks (plus their own helpers, which
    must not be node-kind implementations or override generic methods other than the hooks)."""
    generic_attrs = {a for c in (generic.XPExecutor, CodesExecutor, SpikesExecutor, Executor) for a in vars(c)}
    for cls in (_NumpyBackend, _TorchBackend, NumpyCodes, NumpySpikes, TorchCodes, TorchSpikes):
        own = {a for a, v in vars(cls).items() if not a.startswith("__") or a == "__init__"}
        assert not [a for a in own if getattr(vars(cls)[a], "_impl_kinds", ())], cls
        overrides = (own & generic_attrs) - HOOKS
        assert not overrides, f"{cls.__name__} overrides generic methods {sorted(overrides)}"


def _graph(seed: int, requant: str, signed: bool):
    try:
        g = random_graph(seed, requant=requant, steps=10)
    except (LasercError, ValueError):  # the generator drew a graph the verifier rejects
        return None
    return SignedEncode(min_zero_point_fraction=0.0).run(g).graph.verify() if signed else g


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), requant=st.sampled_from(["ort", "fixed"]), signed=st.booleans(),
       mode=st.sampled_from(["codes", "spikes"]), rows=st.integers(1, 2))
def test_numpy_and_torch_executors_bit_identical_on_random_graphs(seed, requant, signed, mode, rows):
    torch.set_num_threads(1)
    g = _graph(seed, requant, signed)
    if g is None:
        return
    inputs = random_inputs(g, seed, rows=rows)
    np_cls, torch_cls = (NumpyCodes, TorchCodes) if mode == "codes" else (NumpySpikes, TorchSpikes)
    a = run_graph(g, inputs, executor=np_cls(True), collect_stats=True)
    b = run_graph(g, inputs, executor=torch_cls("cpu", True), collect_stats=True)
    ref = run_graph(g, inputs, collect_stats=True)  # the default NumPy codes path
    for o in g.outputs:
        assert a.codes[o].dtype == b.codes[o].dtype == np.int64
        np.testing.assert_array_equal(a.codes[o], b.codes[o], err_msg=o)
        np.testing.assert_array_equal(a.codes[o], ref.codes[o], err_msg=o)
    assert a.stats["nodes"] == b.stats["nodes"]
