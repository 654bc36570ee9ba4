"""Integer arithmetic on integer inputs: position ids and ALiBi computed inside the model.

Hugging Face families compute positions in the graph from ``input_ids`` / ``attention_mask`` (found by
bench/hf_zoo.py): RoBERTa ``cumsum(ids != pad) * (ids != pad) + pad`` (Equal/Not/Cast/CumSum/Mul/Add, a
GatherElements of the ``token_type_ids`` buffer by the positions), OPT ``cumsum(mask) * mask - 1 + 2``,
BLOOM's ALiBi ``slopes * ((cumsum(mask) - 1) * mask)`` added to the attention scores. Tiny torch modules
(no transformers) reproduce each pattern as the TorchScript exporter writes it; the compiled graph is
compared with onnxruntime on held-out rows with padding: position ids exactly, float outputs at
``--bits 16`` with cosine >= 0.999 (measured: RoBERTa 0.99994, OPT 0.99999, ALiBi 0.9996). Positions
one off (an exclusive cumsum) measure cosine 0.70 (RoBERTa) and 0.71 (OPT); softmax forgives that shift
of ALiBi (0.9996 either way), so the ALiBi bias itself is compared too (off by one: error 0.0625).

The IR side -- a Gather whose index is a code value computed in the network -- is checked on a hand-built
graph: NumPy codes, NumPy spikes, the stacked float32 path and torch (codes, spikes) give identical codes,
equal to an independent ``table[x + 2]``; Lava plans a ``gather_by_code`` process for it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import lasercc
from lasercc.ir.nodes import BSEEncode, Gather, Input, Soma
from lasercc.ir.types import CodeType, TensorType
from lasercc.runtime import run_graph
from lasercc.testing import GraphBuilder

logging.getLogger().setLevel(logging.ERROR)
SEQ, VOCAB, D, HEADS, MAXPOS, PAD = 8, 48, 16, 2, 40, 1




@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)  # each module's weights do not depend on which tests ran before


# ---- the three patterns, as Hugging Face writes them (reduced) -------------------------------------------


class RobertaEmbeddings(nn.Module):
    """``create_position_ids_from_input_ids`` + the token-type buffer gathered by position ids."""

    def __init__(self) -> None:
        super().__init__()
        self.word, self.pos, self.tt = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.norm = nn.LayerNorm(D)
        self.register_buffer("token_type_ids", torch.zeros(1, MAXPOS, dtype=torch.int64))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ids.ne(PAD).int()
        pos = (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + PAD
        tt = torch.gather(self.token_type_ids.expand(ids.shape[0], -1), 1, pos)
        return self.norm(self.word(ids) + self.pos(pos) + self.tt(tt)), pos


class OptPositions(nn.Module):
    """OPT's learned positions ``cumsum(mask) * mask - 1`` (+ offset 2), then masked self-attention."""

    def __init__(self) -> None:
        super().__init__()
        self.word, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(SEQ + 2, D)
        self.q, self.k = nn.Linear(D, D), nn.Linear(D, D)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() - 1
        h = self.word(ids) + self.pos(pos + 2)
        bias = (1.0 - mask[:, None, :].float()) * torch.finfo(torch.float32).min
        att = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2) / D ** 0.5 + bias, dim=-1)
        return att @ h, pos


class Alibi(nn.Module):
    """BLOOM's ALiBi: ``slopes * ((cumsum(mask) - 1) * mask)`` added to per-head scores."""

    def __init__(self) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB, D)
        self.qk = nn.Linear(D, 2 * D)
        self.register_buffer("slopes", torch.tensor([0.5 ** (8 * (h + 1) / HEADS) for h in range(HEADS)]))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = ids.shape
        h = self.word(ids)
        q, k = self.qk(h).view(b, s, 2, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        arange = ((mask.cumsum(dim=-1) - 1) * mask)[:, None, :]
        alibi = (self.slopes[..., None] * arange.float())[:, :, None, :]  # [b, heads, 1, s]
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        att = torch.softmax(q @ k.transpose(-1, -2) / (D // HEADS) ** 0.5 + alibi + bias, dim=-1)
        v = h.view(b, s, HEADS, D // HEADS).transpose(1, 2)
        return (att @ v).transpose(1, 2).reshape(b, s, D), alibi


# ---- export, inputs, comparison ------------------------------------------------------------------------


def export(model: nn.Module, names: list[str], outs: list[str], dst: Path) -> Path:
    torch.manual_seed(0)
    args = tuple(torch.full((1, SEQ), 2, dtype=torch.int64) if n == "ids" else torch.ones(1, SEQ, dtype=torch.int64)
                 for n in names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, str(dst), dynamo=False, opset_version=17, input_names=names,
                          output_names=outs, dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, *outs]})
    m = onnx.load(str(dst))
    m.ir_version = 8
    onnx.save(m, str(dst))
    return dst


def feeds(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Random ids (never PAD) and an all-ones mask; odd rows right-padded, rows 2 mod 4 left-padded, by
    1..3 tokens (the pad id in ``ids`` and 0 in ``mask``)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(PAD + 1, VOCAB, (rows, SEQ)).astype(np.int64)
    mask = np.ones((rows, SEQ), np.int64)
    for r in range(1, rows, 2):
        mask[r, SEQ - int(rng.integers(1, 4)):] = 0
    for r in range(2, rows, 4):
        mask[r, :int(rng.integers(1, 4))] = 0
    ids[mask == 0] = PAD
    return {"ids": ids, "mask": mask}


def ort_rows(path: Path, x: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = len(next(iter(x.values())))
    runs = [s.run(None, {k: v[i:i + 1] for k, v in x.items()}) for i in range(n)]
    return [np.concatenate([r[j] for r in runs]) for j in range(len(runs[0]))]


def compiled(path: Path, calib: dict[str, np.ndarray], bits: int = 16) -> lasercc.Artifact:
    shapes = {k: (1, SEQ) for k in calib}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(path, bits=bits, calibration=calib, input_shapes=shapes, progress=False)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def code_gathers(graph) -> list[Gather]:  # noqa: ANN001
    """Gathers whose index is a code computed in the network (not a host input)."""
    return [n for n in graph.nodes if isinstance(n, Gather) and isinstance(graph.type_of(n.inputs[0]), CodeType)]


# ---- the patterns against onnxruntime ------------------------------------------------------------------


def test_roberta_position_ids_with_padding(tmp_path: Path) -> None:
    path = export(RobertaEmbeddings(), ["ids"], ["hidden", "pos"], tmp_path / "roberta.onnx")
    calib, held = {"ids": feeds(16, 1)["ids"]}, {"ids": feeds(8, 2)["ids"]}
    art = compiled(path, calib)
    assert len(code_gathers(art.graph)) == 1  # the position table, indexed by the computed positions
    ref_h, ref_pos = ort_rows(path, held)
    got = run_graph(art.graph, held, collect_stats=False).values
    h, pos = got[art.graph.outputs[0]], got[art.graph.outputs[1]]
    np.testing.assert_array_equal(pos, ref_pos)  # exact: 1 at pads, 2.. at real tokens
    assert (ref_pos == PAD).any() and ref_pos.max() == SEQ + PAD
    assert cosine(h, ref_h) >= 0.999


def test_opt_positions_from_attention_mask(tmp_path: Path) -> None:
    path = export(OptPositions(), ["ids", "mask"], ["hidden", "pos"], tmp_path / "opt.onnx")
    art = compiled(path, feeds(16, 1))
    held = feeds(8, 2)
    ref_h, ref_pos = ort_rows(path, held)
    got = run_graph(art.graph, held, collect_stats=False).values
    h, pos = got[art.graph.outputs[0]], got[art.graph.outputs[1]]
    np.testing.assert_array_equal(pos, ref_pos)  # -1 at pads (a negative integer code), 0.. at tokens
    assert ref_pos.min() == -1
    keep = held["mask"].astype(bool)
    assert cosine(h[keep], ref_h[keep]) >= 0.999
    # the codes run on the torch backend too, identically
    torch_h = run_graph(art.graph, held, backend="torch", collect_stats=False).values[art.graph.outputs[0]]
    np.testing.assert_array_equal(torch_h, h)


def test_bloom_alibi_bias(tmp_path: Path) -> None:
    path = export(Alibi(), ["ids", "mask"], ["out", "alibi"], tmp_path / "alibi.onnx")
    art = compiled(path, feeds(16, 1))
    held = feeds(8, 2)
    ref, ref_alibi = ort_rows(path, held)
    got = run_graph(art.graph, held, collect_stats=False).values
    out, alibi = got[art.graph.outputs[0]], got[art.graph.outputs[1]]
    keep = held["mask"].astype(bool)
    assert cosine(out[keep], ref[keep]) >= 0.999
    # softmax forgives a per-row shift of ALiBi, so the bias itself is checked: a position off by one moves it
    # by a slope (>= 0.0039); 16-bit codes are within 1e-4
    np.testing.assert_allclose(alibi, ref_alibi, atol=1e-4)
    # the cumulative sum is one Soma with a triangular ones matrix (exact integer weights, scale 1)
    tri = [n for n in art.graph.nodes if isinstance(n, Soma) and n.forms == ("matmul",)
           and np.array_equal(art.graph.constants[n.weights[0]], np.triu(np.ones((SEQ, SEQ))))]
    assert len(tri) == 1 and tri[0].scale_in == 1.0 and tri[0].scale_w == (1.0,)


def test_integer_input_beyond_its_bound_is_an_input_error(tmp_path: Path) -> None:
    """A mask bounded only by calibration (0/1): a 2 at run time has no row in the exact lookup -- an error,
    never a silently saturated position."""

    class CountOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pos = nn.Embedding(64, D)

        def forward(self, mask: torch.Tensor) -> torch.Tensor:
            return self.pos(torch.cumsum(mask, dim=1))

    path = export(CountOnly(), ["mask"], ["out"], tmp_path / "count.onnx")
    art = compiled(path, {"mask": feeds(4, 1)["mask"]})
    ok = {"mask": feeds(2, 3)["mask"]}
    (ref,) = ort_rows(path, ok)
    assert cosine(next(iter(run_graph(art.graph, ok, collect_stats=False).values.values())), ref) >= 0.999
    bad = {"mask": np.full((1, SEQ), 2, np.int64)}
    with pytest.raises(Exception, match="token id out of range"):
        run_graph(art.graph, bad, collect_stats=False)


# ---- the IR node: Gather indexed by codes, on every backend ------------------------------------------


def _code_gather_graph() -> tuple[lasercc.Graph, np.ndarray]:
    """x (real integers 0..13) -> 4-bit codes -> Soma x + 2 (5-bit codes) -> Gather of a [16, 3] code table."""
    rng = np.random.default_rng(0)
    table = rng.integers(0, 256, (16, 3)).astype(np.int64)
    b = GraphBuilder("code_gather")
    b.add(Input(name="x", type=TensorType(dtype="f32", shape=(2, 6))))
    b.add(BSEEncode(name="xc", inputs=("x",), type=CodeType.per_tensor_type(4, 1.0, 0, (2, 6))))
    b.add(Soma(name="pos", inputs=("xc",), type=CodeType.per_tensor_type(5, 1.0, 0, (2, 6)),
               weights=(b.const("w", np.ones(1, np.int64)),), forms=("mul",),
               bias=b.const("b", np.full(1, 2, np.int64)), scale_in=1.0, scale_w=(1.0,)))
    b.add(Gather(name="emb", inputs=("pos",), table=b.const("t", table),
                 type=CodeType.per_tensor_type(8, 0.05, 128, (2, 6, 3))))
    return b.graph(["emb"]), table


def test_gather_by_codes_identical_on_every_backend() -> None:
    from lasercc.backends import get_executor

    g, table = _code_gather_graph()
    x = np.random.default_rng(1).integers(0, 14, (8, 6)).astype(np.float32)  # 4 batches of 2 rows
    want = table[x.astype(np.int64) + 2]
    runs = {"stacked": run_graph(g, {"x": x}, collect_stats=False).codes["emb"]}
    for backend in ("numpy", "torch"):
        for mode in ("codes", "spikes"):
            ex = get_executor(backend, mode, collect_stats=False)
            runs[f"{backend}-{mode}"] = run_graph(g, {"x": x}, backend, mode, executor=ex,
                                                  collect_stats=False).codes["emb"]
    for k, v in runs.items():
        np.testing.assert_array_equal(np.asarray(v).reshape(want.shape), want, err_msg=k)
    # spike statistics count the gathered rows like an embedding's
    st = run_graph(g, {"x": x[:2]}, backend="numpy", mode="spikes").stats
    assert st["nodes"]["emb"]["spikes"] == int(sum(bin(int(c)).count("1") for c in want[:2].ravel()))


def test_gather_by_codes_out_of_range_and_lava() -> None:
    from lasercc.backends.lava.lower import lower
    from lasercc.backends.stats import latency_steps

    g, _ = _code_gather_graph()
    x = np.full((2, 6), 15.0, np.float32)  # 15 + 2 = 17: beyond the 16 rows
    for backend in ("numpy", "torch"):
        with pytest.raises(Exception, match="index code out of range"):
            run_graph(g, {"x": x}, backend, collect_stats=False)
    # Lava decodes the index train in a process of its own (bit-exact runs: tests/lava/test_gather_by_code.py),
    # firing a step after the last index bit: the latency model's T = T(pos) + 1 + 8
    emb = lower(g).proc("emb")
    assert emb.kind == "gather_by_code" and [s.source for s in emb.slots] == ["pos"]
    assert emb.last == latency_steps(g)["emb"] == latency_steps(g)["pos"] + 1 + 8


def test_gather_index_must_be_ids_or_per_tensor_codes() -> None:
    from lasercc.errors import VerifyError

    b = GraphBuilder("bad")
    b.add(Input(name="x", type=TensorType(dtype="f32", shape=(2,))))
    b.add(Gather(name="emb", inputs=("x",), table=b.const("t", np.zeros((4, 2), np.int64)),
                 type=CodeType.per_tensor_type(8, 1.0, 0, (2, 2))))
    with pytest.raises(VerifyError, match="i64 token ids or an index code"):
        b.graph(["emb"])
