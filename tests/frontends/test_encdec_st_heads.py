"""Encoder-decoder graphs and sentence-transformers heads (bench/hf_zoo.py ``t5`` and ``*_st``), small, torch only.

* A T5-style encoder-decoder exported as one graph with two inputs of different lengths (``input_ids`` with
  its padding mask, ``decoder_input_ids``) and two outputs (decoder logits, encoder output): the decoder's
  causal self-attention and its cross-attention over the encoder output under the encoder's padding mask.
  Exported at opset 13 (Split/Squeeze/ReduceSum axes as attributes, LayerNorm decomposed into ReduceMean/
  Pow/Sqrt/Div); both outputs are compared with onnxruntime.
* sentence-transformers' Pooling (mean over the attention mask: Unsqueeze/Expand/Cast/Mul/ReduceSum/Clip/Div)
  and Normalize (ReduceL2, Clip, Expand, Div) inside the graph, compared on the sentence embedding. A pooled
  embedding that ignored the mask would differ from onnxruntime's on the padded rows (checked below).

Bounds (measured in brackets): float model at 16 bits vs onnxruntime running the same file, cosine > 0.999 on
every output [enc-dec logits 0.99997, encoder output 0.99998; pooled embedding 0.99997 per row]; pooling
that ignores the mask moves onnxruntime's own padded-row embeddings to cosine 0.926.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import lasercc

SEQ, DSEQ, VOCAB, D, HEADS = 8, 5, 48, 32, 4


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    b, s, _ = q.shape
    hd = D // HEADS

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(b, -1, HEADS, hd).transpose(1, 2)

    w = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / hd ** 0.5 + bias, dim=-1)
    return (w @ heads(v)).transpose(1, 2).reshape(b, s, D)


class EncDec(nn.Module):
    """One encoder layer, one decoder layer (causal self-attention, cross-attention), an LM head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D)
        self.enc_qkv, self.dec_qkv, self.cross_q, self.cross_kv = (nn.Linear(D, 3 * D), nn.Linear(D, 3 * D),
                                                                   nn.Linear(D, D), nn.Linear(D, 2 * D))
        self.n1, self.n2, self.n3 = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)
        self.ff = nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))
        self.head = nn.Linear(D, VOCAB, bias=False)
        for p in self.parameters():
            if p.ndim == 2:
                nn.init.normal_(p, std=0.15)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, dec_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        neg = torch.finfo(torch.float32).min
        pad = (1.0 - mask[:, None, None, :].to(torch.float32)) * neg          # [B, 1, 1, S]
        x = self.emb(ids)
        q, k, v = self.enc_qkv(x).split(D, dim=-1)
        enc = self.n1(x + _attend(q, k, v, pad))
        enc = self.n2(enc + self.ff(enc))
        y = self.emb(dec_ids)
        t = dec_ids.shape[1]
        pos = torch.arange(t)  # built from the run-time length, as T5 does (Triu needs opset 14)
        causal = ((pos[None, :] > pos[:, None]).to(torch.float32) * neg)[None, None]
        q, k, v = self.dec_qkv(y).split(D, dim=-1)
        y = y + _attend(q, k, v, causal)
        k, v = self.cross_kv(enc).split(D, dim=-1)
        y = self.n3(y + _attend(self.cross_q(y), k, v, pad))
        return self.head(y), enc


class PooledEncoder(nn.Module):
    """One encoder layer, then sentence-transformers' mean Pooling and Normalize modules as they are written."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = EncDec()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _, h = self.enc(ids, mask, ids[:, :2])
        m = mask.unsqueeze(-1).expand(h.size()).to(h.dtype)
        emb = torch.sum(h * m, 1) / torch.clamp(m.sum(1), min=1e-9)
        return nn.functional.normalize(emb, p=2, dim=1)


def feeds(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((rows, SEQ), np.int64)
    for r in range(1, rows, 2):
        mask[r, SEQ - int(rng.integers(1, 4)):] = 0
    return {"input_ids": rng.integers(0, VOCAB, (rows, SEQ)).astype(np.int64), "attention_mask": mask,
            "decoder_input_ids": rng.integers(0, VOCAB, (rows, DSEQ)).astype(np.int64)}


def export(model: nn.Module, names: list[str], outs: list[str], dst: Path, opset: int) -> Path:
    torch.manual_seed(0)
    x = feeds(1, 0)
    dyn = {k: {0: "batch", 1: "dec_seq" if k.startswith("decoder") else "seq"} for k in names}
    dyn.update({o: {0: "batch"} for o in outs})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), tuple(torch.from_numpy(x[k]) for k in names), str(dst), dynamo=False,
                          opset_version=opset, input_names=names, output_names=outs, dynamic_axes=dyn)
    return dst


def ort_rows(path: Path, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    n = len(next(iter(x.values())))
    rows = [s.run(names, {k: v[i:i + 1] for k, v in x.items()}) for i in range(n)]
    return {o: np.concatenate([r[j] for r in rows]) for j, o in enumerate(names)}


def lasercc_rows(path: Path, calib: dict[str, np.ndarray], x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Compile at 16 bits (shapes pinned to one row) and run: outputs by their ONNX names."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(path, bits=16, calibration=calib, input_shapes={k: (1, *v.shape[1:])
                                                                            for k, v in calib.items()},
                              progress=False)
    onnx_of = {k: v["onnx"] for k, v in art.manifest.get("onnx_outputs", {}).items()}
    return {onnx_of.get(k, k): np.asarray(v) for k, v in art.run(x).items()}


def cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("opset", [13])  # 17/18 exports of the real T5: bench/hf_zoo.py --models t5
def test_encoder_decoder_both_outputs_track_onnxruntime(tmp_path: Path, opset: int) -> None:
    torch.manual_seed(0)
    names, outs = ["input_ids", "attention_mask", "decoder_input_ids"], ["logits", "encoder_last_hidden_state"]
    path = export(EncDec(), names, outs, tmp_path / "encdec.onnx", opset)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ("LayerNormalization" in ops) == (opset >= 17)  # opset 13 writes it decomposed
    calib, held = feeds(16, 1), feeds(6, 2)
    ref, got = ort_rows(path, held), lasercc_rows(path, calib, held)
    assert set(got) >= set(outs)
    assert got["logits"].shape == (6, DSEQ, VOCAB)
    keep = held["attention_mask"].astype(bool)  # padded encoder positions are meaningless in both
    assert cos(ref["logits"], got["logits"]) > 0.999
    assert cos(ref["encoder_last_hidden_state"][keep], got["encoder_last_hidden_state"][keep]) > 0.999


@pytest.mark.parametrize("opset", [17])  # 13/14/18 exports of the real heads: bench/hf_zoo.py --models bert_st ...
def test_sentence_transformers_pooling_and_normalize_track_onnxruntime(tmp_path: Path, opset: int) -> None:
    torch.manual_seed(0)
    names = ["input_ids", "attention_mask"]
    path = export(PooledEncoder(), names, ["sentence_embedding"], tmp_path / "st.onnx", opset)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"ReduceSum", "Clip", "Div"} <= ops
    calib = {k: v for k, v in feeds(16, 1).items() if k in names}
    held = {k: v for k, v in feeds(6, 2).items() if k in names}
    ref = ort_rows(path, held)["sentence_embedding"]
    got = lasercc_rows(path, calib, held)["sentence_embedding"]
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=0.01)  # the L2 normalize ran
    for r in range(len(ref)):
        assert cos(ref[r], got[r]) > 0.999, r
    # the mask matters on padded rows: pooling every position instead is measurably different
    unmasked = ort_rows(path, {**held, "attention_mask": np.ones_like(held["attention_mask"])})["sentence_embedding"]
    assert min(cos(unmasked[r], ref[r]) for r in range(1, len(ref), 2)) < 0.999
