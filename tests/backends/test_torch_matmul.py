"""Exact integer matmul plans: every plan is proved exact by its bound, and computes x @ w exactly.

The reference is NumPy int64 matmul on values small enough that int64 cannot overflow. Plans for
the GPU engines (fp16 operands with fp32 accumulation, int8 x int8 -> int32) are checked two ways
without a GPU: their slices are representable in the engine's operand type, their per-tile
partial-sum bounds stay under the engine's exact limit (recomputed here independently), and
their slicing/tiling/recombination, run with CPU kernels exact under the same bounds, gives x @ w.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from lasercc.backends.torch_matmul import (  # noqa: E402
    ConstMatmul,
    dynamic_matmul,
    plan_const_matmul,
    plan_dynamic_matmul,
    slice_numpy,
)

LIMIT = {"fp16": 2**24, "fp32": 2**24, "int8": 2**31 - 1, "f64": 2**53}
OPERAND_OK = {
    "fp16": lambda s: np.array_equal(s.astype(np.float16).astype(np.int64), s),
    "fp32": lambda s: np.array_equal(s.astype(np.float32).astype(np.int64), s),
    "int8": lambda s: s.min(initial=0) >= -128 and s.max(initial=0) <= 127,
    "f64": lambda s: True,
}
RUN_AS = {"fp16": "fp32", "int8": "i64", "fp32": "fp32", "f64": "f64", "i64": "i64"}


def _check_bound(plan, x_lo: int, x_hi: int, w: np.ndarray) -> None:
    """Independent proof: max|x slice| * sum over each K tile of |w slice| < the engine limit."""
    xs = slice_numpy(np.arange(x_lo, x_hi + 1, dtype=np.int64) if x_hi - x_lo < 4096
                     else np.array([x_lo, x_hi, x_lo + 1, x_hi - 1], np.int64), plan.x_slices)
    for s in xs:
        assert OPERAND_OK[plan.engine](s)
    assert sum(s.astype(np.int64) << (plan.x_slices.bits * j) for j, s in enumerate(xs)).tolist() == \
        (np.arange(x_lo, x_hi + 1) if x_hi - x_lo < 4096 else np.array([x_lo, x_hi, x_lo + 1, x_hi - 1])).tolist()
    xmax = max(int(np.abs(s).max()) for s in xs)
    for ws in slice_numpy(w.astype(np.int64), plan.w_slices):
        assert OPERAND_OK[plan.engine](ws)
        for k0 in range(0, w.shape[0], plan.tile):
            col = np.abs(ws[k0:k0 + plan.tile]).sum(axis=0)
            assert xmax * int(col.max(initial=0)) < LIMIT[plan.engine]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), x_bits=st.integers(1, 24), w_bits=st.integers(2, 24),
       k=st.integers(1, 300), engine=st.sampled_from(["fp16", "fp32", "int8", "f64", "i64"]))
def test_const_matmul_exact(seed: int, x_bits: int, w_bits: int, k: int, engine: str) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**x_bits, size=(5, k), dtype=np.int64)
    x[0] = 2**x_bits - 1  # the extreme row
    w = rng.integers(-(2 ** (w_bits - 1)), 2 ** (w_bits - 1), size=(k, 6), dtype=np.int64)
    w[:, 0] = -(2 ** (w_bits - 1))
    mm = ConstMatmul(w, 0, 2**x_bits - 1, engine, torch.device("cpu"), run_as=RUN_AS[engine])
    if engine != "i64":
        _check_bound(mm.plan, 0, 2**x_bits - 1, w)
    np.testing.assert_array_equal(mm(torch.from_numpy(x)).numpy(), x @ w)


def test_gpt2_shapes_need_one_fp16_product_at_d768() -> None:
    """8-bit codes x int8 weights at K = 768 fit fp32 accumulation in a single fp16 product (the
    fast path); K = 3072 (the MLP down projection) needs K tiles, not extra slices."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(768, 64), dtype=np.int64)
    p = plan_const_matmul(0, 255, w, "fp16")
    assert (p.products, p.tile) == (1, 768)
    w4 = rng.integers(-127, 128, size=(3072, 64), dtype=np.int64)
    p4 = plan_const_matmul(0, 255, w4, "fp16")
    assert p4.products == 1 and p4.tile < 3072
    _check_bound(p4, 0, 255, w4)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), a_bits=st.integers(1, 20), b_bits=st.integers(1, 20), k=st.integers(1, 200),
       engine=st.sampled_from(["fp16", "fp32", "int8", "f64"]))
def test_dynamic_matmul_exact(seed: int, a_bits: int, b_bits: int, k: int, engine: str) -> None:
    rng = np.random.default_rng(seed)
    za, zb = int(rng.integers(0, 2**a_bits)), int(rng.integers(0, 2**b_bits))
    a = rng.integers(0, 2**a_bits, size=(2, 3, 4, k), dtype=np.int64) - za
    b = rng.integers(0, 2**b_bits, size=(3, k, 5), dtype=np.int64) - zb
    a[0, 0, 0] = -za
    plan = plan_dynamic_matmul(-za, 2**a_bits - 1 - za, -zb, 2**b_bits - 1 - zb, k, engine)
    got = dynamic_matmul(torch.from_numpy(a), torch.from_numpy(b), plan, RUN_AS[engine]).numpy()
    np.testing.assert_array_equal(got, np.matmul(a, b))
