"""The float32 Soma and DecodeMAC paths of the NumPy codes mode give exactly the int64 paths' codes.

The reference is the plain int64 walk (:class:`NumpyCodes`: int64 accumulator,
:func:`lasercc.semantics.requantize`; ``f32_paths = False`` is kept on it for clarity); random graphs
(every node kind, both requant modes, up to 16-bit codes) and the example models are compared code
for code.
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

import lasercc.backends.numpy_ref as nr
from lasercc.backends.numpy_ref import NumpyCodes
from lasercc.runtime import run_graph
from lasercc.semantics import requantize, requantize_exact_f32, requantize_scale
from lasercc.semantics.quant import code_range
from lasercc.testing import mlp_graph, random_graph, random_inputs

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"


class _IntOnly(NumpyCodes):
    f32_paths = False


def _same(g, inputs):
    """Codes of the default run (chunk-stacked, float32 path) equal the int64-only per-chunk run's."""
    a = run_graph(g, inputs, collect_stats=False)
    b = run_graph(g, inputs, executor=_IntOnly(False), collect_stats=False)  # explicit executor: per chunk
    for o in g.outputs:
        np.testing.assert_array_equal(a.codes[o], b.codes[o])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 4))
def test_f32_soma_path_equals_int_path_on_random_graphs(seed, rows):
    try:
        g = random_graph(seed, requant="ort")
    except ValueError:  # a few seeds overflow a float32 scale in random_graph: not this test's subject
        reject()
    _same(g, random_inputs(g, seed, rows=rows))


def test_f32_path_is_taken_and_falls_back_above_2_24():
    """The data-checked float32 Soma accumulator (what :class:`NumpyCodesF32` runs for a Soma without a
    static plan) is taken when this call's max |x| * column sum stays below 2^24 and declined above it;
    when taken it gives the int64 reference's codes."""
    from lasercc.backends.numpy_f32 import NumpyCodesF32

    # 8-bit codes, width 128, |w| <= 127: bound <= 255 * 128 * 127 < 2^24; 16-bit codes: ~2^30
    for bits, expect in ((8, True), (16, False)):
        g = mlp_graph(layers=2, width=128, batch=4, bits=bits)
        fast, ref = NumpyCodesF32(False), NumpyCodes(False)
        fast.prepare(g)
        ref.prepare(g)
        soma = next(n for n in g.nodes if n.op == "soma")
        t = g.type_of(soma.inputs[0])
        x = np.random.default_rng(bits).integers(0, t.hi + 1, size=(1, *t.shape))
        x[0, 0] = t.hi  # the largest code, so the bound is reached when the weights allow
        got = fast._soma_f32(soma, (x,))  # a stacked value: one chunk
        assert (got is not None) == expect
        if got is not None:
            np.testing.assert_array_equal(got[0], ref.soma(soma, x[0]))
        _same(g, random_inputs(g, 0, rows=2))


@pytest.mark.parametrize("model", ["tiny_gpt", "tiny_bert"])
def test_f32_soma_path_on_example_models(model):
    import warnings

    import lasercc

    held = dict(np.load(MODELS / f"{model}.heldout.npz"))
    feeds = {k: v[:4] for k, v in held.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calib = dict(np.load(MODELS / f"{model}.calib.npz"))
        art = lasercc.compile(str(MODELS / f"{model}.qdq.onnx"), calibration=calib,
                              input_shapes={k: (1, v.shape[1]) for k, v in feeds.items()}, progress=False)
    _same(art.graph, feeds)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([2, 8, 12, 16, 24]), per_channel=st.booleans())
def test_requantize_exact_f32_equals_requantize(seed, bits, per_channel):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**24) + 1, 2**24, size=(5, 7))
    acc[0, :3] = [2**24 - 1, -(2**24) + 1, 0]
    s_w = rng.uniform(1e-4, 1e-1, size=7 if per_channel else ()).astype(np.float32)
    s_in, s_out = np.float32(rng.uniform(1e-3, 1)), np.float32(rng.uniform(1e-3, 10))
    lo, hi = code_range(bits)
    zp = np.int64(rng.integers(lo, hi + 1))
    ref = requantize(acc, s_in, s_w, s_out, zp, bits, "ort")
    got = requantize_exact_f32(acc.astype(np.float32), requantize_scale(s_in, s_w, s_out), zp, bits)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ref)


def test_requantize_exact_f32_ties_round_half_even():
    acc = np.array([1.0, 3.0, 5.0, -1.0, -3.0], np.float32)  # times 0.5: 0.5, 1.5, 2.5, -0.5, -1.5
    got = requantize_exact_f32(acc, np.float32(0.5), np.int64(8), 8)
    np.testing.assert_array_equal(got, [8, 10, 10, 8, 6])


def test_blas_threads_context_is_a_noop_for_none():
    with nr.blas_threads(None):
        pass
    with nr.blas_threads(1):
        assert (np.ones((3, 3), np.float32) @ np.ones((3, 3), np.float32)).sum() == 27


def test_auto_blas_threads_single_for_small_gemms_default_for_large(monkeypatch):
    monkeypatch.setattr(nr, "_no_idle_core", lambda: False)
    ex = NumpyCodes(False)
    small = mlp_graph(layers=1, width=64, batch=2)
    big = mlp_graph(layers=1, width=4096, batch=2)  # 2 * 4096 * 4096 = 2^25 multiply-adds > 2^24
    assert ex._blas_threads_for(small, random_inputs(small, 0, rows=2)) == 1
    assert ex._blas_threads_for(big, random_inputs(big, 0, rows=2)) is None


def test_auto_blas_threads_single_when_no_core_is_idle(monkeypatch):
    monkeypatch.setattr(nr, "_no_idle_core", lambda: True)
    big = mlp_graph(layers=1, width=4096, batch=2)
    assert NumpyCodes(False)._blas_threads_for(big, random_inputs(big, 0, rows=2)) == 1


def test_no_idle_core_reads_the_load_average(monkeypatch):
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert nr._no_idle_core() is False
    monkeypatch.setattr(os, "getloadavg", lambda: (1e6, 0.0, 0.0))
    assert nr._no_idle_core() is True
