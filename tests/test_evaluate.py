"""``lasercc eval`` / lasercc.evaluate on the bundled tiny GPT, against independent computations:
onnxruntime's logits turned into NLL here (log-sum-exp by np.logaddexp, not the module's formula), the
artifact's own logits from ``Artifact.run``, and argmax agreement counted here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import lasercc
from lasercc.errors import InputError
from lasercc.evaluate import bootstrap, evaluate

MODELS = Path(__file__).resolve().parents[1] / "examples" / "models"


@pytest.fixture(scope="module")
def lm():
    art = lasercc.compile(str(MODELS / "tiny_gpt.qdq.onnx"))
    tokens = np.load(MODELS / "tiny_gpt.heldout.npz")["input_ids"][:12]
    return art, tokens


def _nll(logits: np.ndarray, tokens: np.ndarray) -> float:
    x = logits.astype(np.float64)[:, :-1]
    lse = np.logaddexp.reduce(x, axis=-1)
    tgt = np.take_along_axis(x, tokens[:, 1:, None], axis=-1)[..., 0]
    return float((lse - tgt).mean())


def _ort_logits(model: Path, tokens: np.ndarray) -> np.ndarray:
    """onnxruntime with graph optimisations off: the model's own arithmetic, as ``evaluate``'s reference runs."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(["logits"], {"input_ids": r[None]})[0] for r in tokens])


def test_nll_against_onnxruntime_and_the_artifact_run(lm, tmp_path) -> None:
    art, tokens = lm
    np.save(tmp_path / "t.npy", tokens)
    r = evaluate(art, tmp_path / "t.npy", "nll", reference=MODELS / "tiny_gpt.onnx", batch_rows=5)
    ref = _nll(_ort_logits(MODELS / "tiny_gpt.onnx", tokens), tokens)
    assert r.reference["value"] == pytest.approx(ref, abs=1e-9)
    own = _nll(art.run({"input_ids": tokens})["logits"], tokens)
    assert r.value == pytest.approx(own, abs=1e-9)
    assert abs(r.value - ref) < 0.02  # 16-bit spiking logits track the float model
    assert r.rows == 12 and r.tokens == 12 * 15 and r.ci_low <= r.value <= r.ci_high
    p = evaluate(art, tmp_path / "t.npy", "ppl", batch_rows=64)
    assert p.value == pytest.approx(np.exp(own), rel=1e-9)
    assert (p.ci_low, p.ci_high) == pytest.approx((np.exp(r.ci_low), np.exp(r.ci_high)), rel=1e-9)


def test_top1_against_onnxruntime_argmax(lm, tmp_path) -> None:
    art, tokens = lm
    np.save(tmp_path / "t.npy", tokens)
    r = evaluate(art, tmp_path / "t.npy", "top1", reference=MODELS / "tiny_gpt.onnx")
    ref = _ort_logits(MODELS / "tiny_gpt.onnx", tokens).argmax(-1)
    own = art.run({"input_ids": tokens})["logits"].argmax(-1)
    assert r.value == pytest.approx(float((ref == own).mean()), abs=1e-12)


def test_stream_file_is_windowed_and_memory_mapped(lm, tmp_path) -> None:
    art, tokens = lm
    np.save(tmp_path / "rows.npy", tokens)
    stream = np.concatenate([tokens.reshape(-1), tokens[0, :7]])  # 7 trailing tokens fill no window
    np.save(tmp_path / "stream.npy", stream)
    a = evaluate(art, tmp_path / "rows.npy", "nll", batch_rows=64)
    b = evaluate(art, tmp_path / "stream.npy", "nll", batch_rows=3)
    assert b.value == a.value and b.dropped_tokens == 7 and b.rows == 12


def test_bootstrap_interval_covers_a_known_mean() -> None:
    """Rows of 10 tokens with NLL ~ N(1, 0.5): the 95% interval of the mean has width about
    2 * 1.96 * 0.5 / sqrt(n) and contains the sample mean."""
    rng = np.random.default_rng(0)
    num = rng.normal(1.0, 0.5, size=400) * 10
    lo, hi = bootstrap(num, np.full(400, 10.0), 2000, 0.95, 0)
    m = num.sum() / 4000
    assert lo < m < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(400), rel=0.15)


def test_bad_input_is_refused(lm, tmp_path) -> None:
    art, tokens = lm
    bad = tokens.copy()
    bad[3, 4] = 64
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(InputError, match="token id 64 at row 3, position 4"):
        evaluate(art, tmp_path / "bad.npy")
    np.save(tmp_path / "f.npy", tokens.astype(np.float32))
    with pytest.raises(InputError, match="must be integers"):
        evaluate(art, tmp_path / "f.npy")
    np.save(tmp_path / "t.npy", tokens)
    with pytest.raises(InputError, match="needs --reference"):
        evaluate(art, tmp_path / "t.npy", "top1")
    np.save(tmp_path / "w.npy", tokens[:, :8])
    with pytest.raises(InputError, match=r"expected \[rows, 16\]"):
        evaluate(art, tmp_path / "w.npy")


def test_cli(lm, tmp_path, capsys) -> None:
    from lasercc.cli import main

    art, tokens = lm
    art.save(tmp_path / "art")
    np.save(tmp_path / "t.npy", tokens[:4])
    assert main(["eval", str(tmp_path / "art"), "--tokens", str(tmp_path / "t.npy"), "--metric", "ppl",
                 "--reference", str(MODELS / "tiny_gpt.onnx")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("perplexity: ") and "95% CI" in out and "reference (" in out
    assert main(["eval", str(tmp_path / "art"), "--tokens", str(tmp_path / "missing.npy")]) == 2
