"""KV-cache decode steps: ``past_key_values.*`` inputs and ``present.*`` outputs (optimum's naming) are ordinary
activations, so one decode step compiles and a host loop feeds each step's present back as the next past.

The decoder step is built here with onnx.helper (embedding, one attention head whose K/V are the past
concatenated with the new token's, an additive padding mask from ``attention_mask``, output projection) and
driven exactly as README "KV-cache decoding" describes: a fixed window of W cache slots, the oldest dropped
after each step, unused slots masked out. lasercc and onnxruntime each feed their *own* present back, on the
same tokens; the logits are compared step by step (cosine >= 0.99 at 16 bits and the same argmax: measured
0.997-1.0 per step). bench/kv_decode.py runs a transformers LLaMA / GPT-2 export the same way.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import lasercc

V, D, W = 32, 16, 8  # vocab, hidden, cache window
FMIN = float(np.finfo(np.float32).min)
PAST = ["past_key_values.0.key", "past_key_values.0.value"]
PRESENT = ["present.0.key", "present.0.value"]


def _decoder_step() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = {"E": rng.standard_normal((V, D)).astype(np.float32),
             **{f"W{c}": (2 * rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32) for c in "qkv"},
             "Wo": (3 * rng.standard_normal((D, V)) / np.sqrt(D)).astype(np.float32),
             "shape4": np.array([1, 1, 1, D], np.int64), "shape3": np.array([1, 1, D], np.int64),
             "scale": np.array(1 / np.sqrt(D), np.float32), "one": np.array(1.0, np.float32),
             "fmin": np.array(FMIN, np.float32), "ax": np.array([1, 2], np.int64)}
    n = helper.make_node
    nodes = [n("Gather", ["E", "input_ids"], ["emb"])]
    for c in "qkv":
        nodes += [n("MatMul", ["emb", f"W{c}"], [f"{c}3"]), n("Reshape", [f"{c}3", "shape4"], [c])]
    nodes += [n("Concat", [PAST[0], "k"], [PRESENT[0]], axis=2), n("Concat", [PAST[1], "v"], [PRESENT[1]], axis=2),
              n("Transpose", [PRESENT[0]], ["kt"], perm=[0, 1, 3, 2]), n("MatMul", ["q", "kt"], ["qk"]),
              n("Mul", ["qk", "scale"], ["s"]),
              n("Unsqueeze", ["attention_mask", "ax"], ["m4"]), n("Cast", ["m4"], ["mf"], to=TensorProto.FLOAT),
              n("Sub", ["one", "mf"], ["inv"]), n("Mul", ["inv", "fmin"], ["madd"]), n("Add", ["s", "madd"], ["sm"]),
              n("Softmax", ["sm"], ["p"], axis=-1), n("MatMul", ["p", PRESENT[1]], ["ctx"]),
              n("Reshape", ["ctx", "shape3"], ["ctx3"]), n("MatMul", ["ctx3", "Wo"], ["logits"])]
    vi = helper.make_tensor_value_info
    inputs = [vi("input_ids", TensorProto.INT64, [1, 1]), vi("attention_mask", TensorProto.INT64, [1, "t1"]),
              *(vi(p, TensorProto.FLOAT, [1, 1, "t", D]) for p in PAST)]
    outputs = [vi("logits", TensorProto.FLOAT, [1, 1, V]), *(vi(p, TensorProto.FLOAT, [1, 1, "t1", D])
                                                              for p in PRESENT)]
    g = helper.make_graph(nodes, "step", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _decode(step, tokens: list[int], feeds_out: list | None = None) -> list[np.ndarray]:  # noqa: ANN001
    """Run ``tokens`` one step each through ``step(feeds) -> (logits, present_k, present_v)``; window W."""
    past = {p: np.zeros((1, 1, W, D), np.float32) for p in PAST}
    valid = np.zeros(W, bool)
    logits = []
    for tok in tokens:
        f = {"input_ids": np.array([[tok]], np.int64),
             "attention_mask": np.concatenate([valid, [True]]).astype(np.int64)[None]} | past
        if feeds_out is not None:
            feeds_out.append(f)
        lg, pk, pv = step(f)
        logits.append(np.asarray(lg))
        past = {PAST[0]: np.asarray(pk)[:, :, 1:], PAST[1]: np.asarray(pv)[:, :, 1:]}  # drop the oldest slot
        valid = np.concatenate([valid, [True]])[1:]
    return logits


def test_decode_loop_tracks_onnxruntime_step_by_step() -> None:
    m = _decoder_step()
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = ["logits", *PRESENT]

    def ort_step(f: dict) -> list:
        return sess.run(names, f)

    rng = np.random.default_rng(1)
    cal: list[dict] = []
    for _ in range(4):  # calibration: decode steps of the float model (realistic caches and masks)
        _decode(ort_step, list(rng.integers(0, V, 6)), cal)
    calib = {k: np.concatenate([f[k] for f in cal]) for k in cal[0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, bits=16, calibration=calib, progress=False,
                              input_shapes={k: (1, *v.shape[1:]) for k, v in calib.items()})
    assert {v.name for v in art.graph.inputs} >= set(PAST) and set(art.graph.outputs) >= set(PRESENT)

    def laser_step(f: dict) -> list:
        r = art.run(f)
        return [r[k] for k in names]

    tokens = list(rng.integers(0, V, 7))  # a 3-token prefix, then 4 decode steps
    ref, got = _decode(ort_step, tokens), _decode(laser_step, tokens)
    for i, (a, b) in enumerate(zip(ref, got)):
        a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
        c = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        assert c >= 0.99 and np.argmax(a) == np.argmax(b), (i, c)
