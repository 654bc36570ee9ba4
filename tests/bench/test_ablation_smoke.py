"""Fast checks of the ablation bench's plumbing: weights read back from ONNX, per-component forward, NLL."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "examples"))
import fidelity_ablation as fa  # noqa: E402
from build_models import next_token_nll  # noqa: E402


def test_weights_from_onnx_reproduce_onnxruntime_and_component_forward() -> None:
    model = fa.load_trained_lm()
    ids = np.load(fa.MODELS / "tiny_gpt.heldout.npz")["input_ids"][:4]
    with torch.no_grad():
        got = fa.forward(model, torch.from_numpy(ids), fa.components(model), {}).numpy()
        np.testing.assert_array_equal(got, model(torch.from_numpy(ids)).numpy())
    np.testing.assert_allclose(got, fa.ort_logits(fa.MODELS / "tiny_gpt.onnx", ids), atol=1e-4)


def test_seq_nll_matches_build_models_and_kl_is_zero_on_itself() -> None:
    rng = np.random.default_rng(0)
    logits, ids = rng.normal(size=(3, 16, 64)).astype(np.float32), rng.integers(0, 64, (3, 16))
    assert abs(fa.seq_nll(logits, ids).mean() - next_token_nll(logits, ids)) < 1e-12
    row = fa.make_row("x", "8", "lut", logits, logits, ids)
    assert row.kl == 0.0 and row.top1 == 1.0
    other = fa.make_row("y", "8", "lut", logits * 0.5, logits, ids)
    assert other.kl > 0.0
