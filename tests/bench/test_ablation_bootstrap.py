"""The paired bootstrap of bench/_ablation.py (LASER Tables 3-6 intervals) against mathematical identities,
and the plumbing of bench/laser_lm_tables.py (component forward, kinds, rate-code width)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _ablation import paired_bootstrap  # noqa: E402


def test_constant_difference_gives_a_degenerate_interval() -> None:
    # every resample of a constant difference has mean exactly that constant (eighths, 0.25 and n = 64: all
    # sums and the division are exact in binary floating point)
    a = np.random.default_rng(1).integers(-800, 800, size=64) / 8.0
    mean, lo, hi = paired_bootstrap(a, a + 0.25, resamples=1000, seed=3)
    assert mean == lo == hi == 0.25


def test_shared_variation_cancels() -> None:
    # pairing: a huge per-unit effect common to both arms must not widen the interval of the difference
    rng = np.random.default_rng(2)
    d = rng.normal(0.1, 0.01, size=200)
    common = rng.normal(0.0, 100.0, size=200)
    assert paired_bootstrap(common, common + d, seed=0) == pytest.approx(paired_bootstrap(np.zeros(200), d, seed=0),
                                                                          abs=1e-9)


def test_interval_matches_the_normal_theory_width_and_covers_the_mean() -> None:
    # for n = 400 draws of N(mu, 1) the bootstrap-mean distribution is ~N(mean, 1/n): 95% half-width ~1.96/20
    rng = np.random.default_rng(4)
    b = rng.normal(0.5, 1.0, size=400)
    mean, lo, hi = paired_bootstrap(np.zeros(400), b, resamples=4000, seed=0)
    assert lo < mean < hi and lo < 0.5 < hi
    half = 1.96 * b.std(ddof=1) / np.sqrt(400)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)


def test_same_seed_same_interval_and_shape_errors() -> None:
    x = np.random.default_rng(5).normal(size=50)
    assert paired_bootstrap(np.zeros(50), x, seed=7) == paired_bootstrap(np.zeros(50), x, seed=7)
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((2, 3)))


def test_lm_tables_component_forward_is_the_model_forward() -> None:
    # bench/laser_lm_tables.py's per-component forward (what the hybrid rows substitute into) must be
    # LlamaLM.forward exactly, and its Table 3 kinds must cover every component once
    import laser_lm
    import laser_lm_tables as lt
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = laser_lm.build_model(laser_lm.LMConfig(d=48, layers=2, heads=3, ffn=64, ctx=16, vocab=64, dropout=0.0))
    ids = torch.randint(0, 64, (2, 16))
    comps = lt.parts(model.eval())
    with torch.no_grad():
        assert torch.equal(lt.forward(model, ids, comps, {}), model(ids))
    kinds = [lt.pick(list(comps), p) for p in lt.KINDS.values()]
    assert sum(len(k) for k in kinds) == len(comps) and frozenset().union(*kinds) == frozenset(comps)


def test_rate_code_width_is_the_largest_that_t_steps_can_carry() -> None:
    import laser_lm_tables as lt
    for t in range(1, 40):
        b = lt.rate_bits(t)
        assert 2 ** b <= t + 1 < 2 ** (b + 1)
