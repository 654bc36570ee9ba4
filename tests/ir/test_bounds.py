"""Verifier bounds computed with exact integers and scales checked in float32 (lasercc.ir.bounds).

Each case was a silent wrong answer: the graph verified and every backend then computed garbage.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from lasercc.errors import VerifyError
from lasercc.ir import parse_graph, print_graph
from lasercc.ir.bounds import abs_max, check_requant_scales, column_abs_sum_max
from lasercc.ir.types import CodeType
from lasercc.testing import mlp_graph

INT64_MIN = np.iinfo(np.int64).min


def _with_weight(fn) -> object:  # noqa: ANN001
    """mlp_graph(1 layer) re-parsed with its first Soma weight replaced by ``fn(weight)``."""
    g = mlp_graph(layers=1, width=4, batch=1)
    arrays = g.constants.arrays()
    name = next(k for k, v in arrays.items() if v.ndim == 2)
    arrays[name] = fn(arrays[name].astype(np.int64))
    text = print_graph(g)
    decl = text[text.index(f"const @{name} : "):].split("[", 1)[0]
    return parse_graph(text.replace(decl, f"const @{name} : i64"), arrays)


def test_int64_min_weight_fails_the_accumulator_bound() -> None:
    assert int(np.abs(np.array([INT64_MIN]))[0]) < 0  # why: NumPy's abs of INT64_MIN is negative
    assert abs_max(np.array([INT64_MIN, 5])) == 1 << 63

    def poison(w: np.ndarray) -> np.ndarray:
        w = w.copy()
        w[0, 0] = INT64_MIN
        return w

    g = _with_weight(poison)
    with pytest.raises(VerifyError, match="accumulator can reach"):
        g.verify()
    _with_weight(lambda w: w).verify()  # the unpoisoned graph is fine


def test_column_sums_do_not_wrap() -> None:
    w = np.full((4, 2), 1 << 62, np.int64)  # int64 column sum 2^64 wraps to 0
    assert int(np.abs(w).sum(axis=0).max()) == 0
    assert column_abs_sum_max(w) == 1 << 64
    g = _with_weight(lambda w: np.full_like(w, 1 << 62))
    with pytest.raises(VerifyError, match="accumulator can reach"):
        g.verify()
    rng = np.random.default_rng(0)
    small = rng.integers(-128, 128, (33, 7))
    assert column_abs_sum_max(small) == max(sum(abs(int(v)) for v in col) for col in small.T)


def test_scales_are_checked_in_float32() -> None:
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(1e39))
    with pytest.raises(ValidationError, match="not representable in float32"):
        CodeType(bits=8, scale=(1e39,), zero_point=(0,), shape=(2,))
    with pytest.raises(ValidationError, match="not representable in float32"):
        CodeType(bits=8, scale=(1e-300,), zero_point=(0,), shape=(2,))  # float32 zero: every value dequantizes to 0
    CodeType(bits=8, scale=(3e38,), zero_point=(0,), shape=(2,))
    with pytest.raises(ValueError, match="multiplier .* in float32"):
        check_requant_scales(1e30, (1e30,), (1e-30,))  # each representable, the product is not
    check_requant_scales(0.05, (0.01, 0.02), (0.1,))


def test_soma_with_an_overflowing_multiplier_is_refused() -> None:
    g = mlp_graph(layers=1, width=4, batch=1)
    text = print_graph(g)
    i = text.index("scale_in = ") + len("scale_in = ")
    j = text.index(",", i)
    bad = text[:i] + "1e30" + text[j:]
    i = bad.index("scale_w = [") + len("scale_w = [")
    j = bad.index("]", i)
    bad = bad[:i] + ", ".join(["1e30"] * len(bad[i:j].split(","))) + bad[j:]
    with pytest.raises(VerifyError, match="multiplier"):
        parse_graph(bad, g.constants.arrays()).verify()
