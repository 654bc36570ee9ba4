"""bench/minilm_error_propagation.py's site switch: only the chosen kind and layers, only real-token values,
pass through the compiled artifact, whatever the count of values (padded to the artifact's row width)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import minilm_error_propagation as ep  # noqa: E402


class Doubler:
    """Stands in for a compiled artifact: y = 2x on [n, WIDTH] rows."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.shapes.append(feeds["x"].shape)
        return {"y": 2 * feeds["x"]}


def test_spike_mode_replaces_exactly_the_valid_values_of_the_chosen_sites() -> None:
    sites = ep.Sites()
    art = Doubler()
    sites.arts = {("GELU", 3): art}
    sites.mode, sites.kind, sites.layers = "spike", "GELU", {3}
    x = torch.arange(2 * 5 * 13, dtype=torch.float32).reshape(2, 5, 13) / 7
    valid = torch.zeros_like(x, dtype=torch.bool)
    valid[0, :3] = True  # 39 values: not a multiple of the row width
    y = sites("GELU", 3, 3, x, valid, torch.neg)
    np.testing.assert_array_equal(y[valid].numpy(), 2 * x[valid].numpy())
    np.testing.assert_array_equal(y[~valid].numpy(), -x[~valid].numpy())
    assert art.shapes == [(1, ep.t2.WIDTH)]
    # another layer, or another kind, stays float
    np.testing.assert_array_equal(sites("GELU", 4, 4, x, valid, torch.neg).numpy(), -x.numpy())
    np.testing.assert_array_equal(sites("exp", 3, 3, x, valid, torch.neg).numpy(), -x.numpy())


def test_capture_mode_keeps_only_valid_values_and_returns_the_float_result() -> None:
    sites = ep.Sites()
    sites.mode = "capture"
    x = torch.tensor([[1.0, 2.0, 3.0]])
    valid = torch.tensor([[True, False, True]])
    np.testing.assert_array_equal(sites("rsqrt", 0, -1, x, valid, torch.exp).numpy(), torch.exp(x).numpy())
    np.testing.assert_array_equal(sites.seen[("rsqrt", 0)][0], [1.0, 3.0])
