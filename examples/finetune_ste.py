"""Straight-through fine-tuning of a spiking graph against a float teacher (LASER section 3.3).

The forward pass is the exact integer graph (the codes every backend computes); gradients flow
through rounding, requantization and ASNC as float surrogates (lasercc.backends.torch_ste). After
training, the integer weights are re-exported into a new graph, and the NumPy backend is shown
to run it bit-identically to the torch forward.

    python examples/finetune_ste.py                                  # MLP vs its float teacher
    python examples/finetune_ste.py --artifact examples/ir/attention_block --accumulate 8
    python examples/finetune_ste.py --steps 300 --out /tmp/tuned     # also saves the tuned artifact
    python examples/finetune_ste.py --onnx examples/models/tiny_gpt.qdq.onnx \
        --float-model examples/models/tiny_gpt.onnx --calibration examples/models/tiny_gpt.calib.npz \
        --heldout examples/models/tiny_gpt.heldout.npz --noise 1 --accumulate 2 --steps 100 --lr 0.02

Three teachers:

* no ``--artifact``: a float MLP (16 -> 64 -> ReLU -> 10) is the teacher; the spiking graph is its
  coarse quantization (weights on a 3-bit grid inside int8, an ASNC ReLU) started +-``noise`` LSBs
  away from round-to-nearest (a poor quantizer). Fine-tuning moves the integer weights so the
  spiking logits approach the float ones. (From round-to-nearest itself there is little to gain
  on a 3-bit grid: the start is already close to the best grid point.)
* ``--artifact DIR``: the artifact as compiled is the teacher (its dequantized outputs); the
  student starts from its weights perturbed by +-``noise`` LSBs (a stand-in for a coarser
  quantization) and learns them back. If the artifact ships ``input.npz`` the inputs are drawn
  around it, otherwise from a normal distribution.
* ``--onnx Q --float-model F``: the frontend compiles the quantized LM Q (e.g. the bundled tiny GPT
  trained on a synthetic grammar); onnxruntime runs the float model F as the teacher, on rows of
  the calibration file (training) and the held-out file (evaluation). ``--noise`` perturbs the
  starting weights as above (0 starts from the quantizer's own weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lasercc.backends.torch_ste import SteModel
from lasercc.ir import ASNCSegment, BSEEncode, CodeType, Input, Soma, TensorType
from lasercc.ir.artifact import Artifact, load
from lasercc.ir.graph import Graph
from lasercc.runtime import run_graph
from lasercc.testing import GraphBuilder


def layer_weights(graph: Graph) -> set[str]:
    """The learned matmul weights of a graph, and their biases: matrices with more than two distinct
    values. Structural constants the compiler wrote (all-ones reduction rows for LayerNorm means and
    softmax sums, unit residual weights) stay fixed -- changing them would break the decomposition."""
    out: set[str] = set()
    for n in graph.nodes:
        if isinstance(n, Soma) and n.forms == ("matmul",):
            w = np.asarray(graph.constants[n.weights[0]])
            if np.unique(w).size > 2:
                out.add(n.weights[0])
                if n.bias is not None:
                    out.add(n.bias)
    return out


def perturb(graph: Graph, noise: int, seed: int) -> Graph:
    """The graph with every learned matmul weight (:func:`layer_weights`) moved by up to +-``noise``
    LSBs (clipped to its dtype): a stand-in for a poor quantizer, which fine-tuning should repair."""
    rng = np.random.default_rng(seed)
    layer = layer_weights(graph)
    names = sorted({c for n in graph.nodes if isinstance(n, Soma) for c in n.weights if c in layer})
    noisy = {}
    for c in names:
        w = np.asarray(graph.constants[c])
        info = np.iinfo(w.dtype)
        noisy[c] = np.clip(w.astype(np.int64) + rng.integers(-noise, noise + 1, w.shape),
                           info.min, info.max).astype(w.dtype)
    return graph.replace(constants=graph.constants.with_items(**noisy)).verify()


def float_teacher_mlp(seed: int, d_in: int = 16, hidden: int = 64, d_out: int = 10):
    """A float MLP and its coarse spiking quantization. Returns (graph, teacher_fn, input_fn)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 1 / np.sqrt(d_in), (d_in, hidden))
    b1 = rng.normal(0, 0.1, hidden)
    w2 = rng.normal(0, 1 / np.sqrt(hidden), (hidden, d_out))
    b2 = rng.normal(0, 0.1, d_out)

    def teacher(x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ w1 + b1, 0) @ w2 + b2

    batch, sx, zx = 256, 4.0 / 127, 128
    sh, zh = float(np.float32(6.0 / 255)), 128  # hidden pre-activation: signed around zp 128
    sy, zy = float(np.float32(8.0 / 2047)), 2048  # 12-bit logits
    sw1 = float(np.float32(np.abs(w1).max() / 7))  # a 3-bit weight grid: real quantization error
    sw2 = float(np.float32(np.abs(w2).max() / 7))
    q1 = np.clip(np.rint(w1 / sw1), -127, 127).astype(np.int8)
    q2 = np.clip(np.rint(w2 / sw2), -127, 127).astype(np.int8)
    # bias folding: acc = sum (x_code - zp) W + b / (s_in s_w)
    bias1 = (np.rint(b1 / (sx * sw1)) - zx * q1.astype(np.int64).sum(0)).astype(np.int64)
    bias2 = np.rint(b2 / (sh * sw2)).astype(np.int64)

    b = GraphBuilder("mlp_teacher")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(batch, d_in))))
    xq = b.add(BSEEncode(name="x_q", inputs=(x,), type=CodeType.per_tensor_type(8, sx, zx, (batch, d_in))))
    h = b.add(Soma(name="fc1", inputs=(xq,), weights=(b.const("w", q1),), forms=("matmul",), bias=b.const("b", bias1),
                   scale_in=float(np.float32(sx)), scale_w=(sw1,), requant="fixed",
                   type=CodeType.per_tensor_type(8, sh, zh, (batch, hidden))))
    # ReLU as a two-segment ASNC on the code: max(x - zp, 0), same scale, zero point 0
    r = b.add(ASNCSegment(name="relu", inputs=(h,), function="relu", thresholds=b.const("t", np.array([zh], np.int64)),
                          slopes=b.const("a", np.array([0, 1], np.int64)),
                          intercepts=b.const("c", np.array([0, -zh], np.int64)), shift=0,
                          type=CodeType.per_tensor_type(8, sh, 0, (batch, hidden))))
    y = b.add(Soma(name="logits", inputs=(r,), weights=(b.const("w", q2),), forms=("matmul",),
                   bias=b.const("b", bias2), scale_in=sh, scale_w=(sw2,), requant="fixed",
                   type=CodeType.per_tensor_type(12, sy, zy, (batch, d_out))))
    graph = b.graph([y])

    def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"x": rng.normal(0, 1, (batch, d_in)).astype(np.float32)}

    return graph, (lambda feeds: {"logits": teacher(feeds["x"].astype(np.float64))}), inputs


def artifact_teacher(path: Path, noise: int, seed: int):
    """The artifact as teacher, a perturbed copy as student. Returns (student, teacher_fn, input_fn)."""
    art = load(path)
    g0 = art.graph
    student = perturb(g0, noise, seed)
    sample = path / "input.npz"
    base = dict(np.load(sample)) if sample.exists() else None

    def teacher(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.astype(np.float64) for k, v in run_graph(g0, feeds, collect_stats=False).values.items()}

    def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for n in g0.inputs:
            shape = tuple(n.type.shape)
            if isinstance(n.type, TensorType) and n.type.dtype == "f32":
                std = float(base[n.name].std()) if base is not None else 1.0
                out[n.name] = rng.normal(0, std, shape).astype(np.float32)
            elif isinstance(n.type, CodeType):
                out[n.name] = rng.integers(0, n.type.hi + 1, shape)
            else:
                out[n.name] = base[n.name][: shape[0]] if base is not None else np.zeros(shape, np.int64)
        return out

    return student, teacher, inputs


def onnx_teacher(qdq: Path, float_model: Path, calibration: Path | None, heldout: Path | None,
                 noise: int, seed: int):
    """A quantized ONNX LM compiled by the frontend as student, onnxruntime on its float model as
    teacher; inputs are rows of the calibration (training) and held-out (evaluation) files."""
    import onnxruntime as ort

    from lasercc.frontends.onnx import import_onnx

    res = import_onnx(qdq, calibration=calibration)
    graph = perturb(res.graph, noise, seed) if noise else res.graph
    sess = ort.InferenceSession(str(float_model), providers=["CPUExecutionProvider"])
    onnx_out = {k: v["onnx"] for k, v in res.outputs.items()}
    names = [o.name for o in sess.get_outputs()]
    rows_per_run = {i.name: i.shape[0] if isinstance(i.shape[0], int) else None for i in sess.get_inputs()}

    def teacher(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = next(iter(feeds.values())).shape[0]
        step = min((r for r in rows_per_run.values() if r), default=n)
        parts = [sess.run(None, {k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
        outs = {nm: np.concatenate([p[j] for p in parts]) for j, nm in enumerate(names)}
        return {k: outs[onnx_out[k]].astype(np.float64) for k in graph.outputs}

    train = dict(np.load(calibration)) if calibration else None
    test = dict(np.load(heldout)) if heldout else train
    b = graph.inputs[0].type.shape[0]
    if train is None or test is None:
        raise SystemExit("--onnx needs --calibration rows (training data)")

    def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        n = next(iter(train.values())).shape[0]
        i = int(rng.integers(0, n - b + 1))
        return {k: v[i:i + b] for k, v in train.items()}

    held = [{k: v[i:i + b] for k, v in test.items()} for i in range(0, min(8, next(iter(test.values())).shape[0]), b)]
    return graph, teacher, inputs, held


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows whose argmax over the last axis agrees (top-1 agreement)."""
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def evaluate(graph: Graph, teacher, feeds_list) -> tuple[float, float]:
    """Loss and agreement of a graph on held-out inputs, run by the NumPy reference backend."""
    losses, agree = [], []
    for feeds in feeds_list:
        got = run_graph(graph, feeds, collect_stats=False).values
        want = teacher(feeds)
        for k in graph.outputs:
            losses.append(float(np.mean((got[k] - want[k]) ** 2)))
            agree.append(agreement(got[k], want[k]))
    return float(np.mean(losses)), float(np.mean(agree))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", type=Path, default=None, help="compiled artifact directory (default: MLP demo)")
    ap.add_argument("--onnx", type=Path, default=None, help="quantized ONNX LM to compile and fine-tune")
    ap.add_argument("--float-model", type=Path, default=None, help="its float ONNX model (the teacher)")
    ap.add_argument("--calibration", type=Path, default=None, help=".npz rows: calibration and training data")
    ap.add_argument("--heldout", type=Path, default=None, help=".npz rows for evaluation")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.05, help="Adam learning rate, in integer-weight LSBs")
    ap.add_argument("--noise", type=int, default=2, help="LSBs of weight perturbation of the starting point")
    ap.add_argument("--accumulate", type=int, default=1,
                    help="input batches per optimizer step (small-batch artifacts need more)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="save the fine-tuned artifact here")
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    held_out = None
    if args.onnx is not None:
        if args.float_model is None:
            raise SystemExit("--onnx needs --float-model (the teacher)")
        graph, teacher, make_inputs, held_out = onnx_teacher(args.onnx, args.float_model, args.calibration,
                                                             args.heldout, args.noise, args.seed)
        what = f"{args.onnx.name} (+-{args.noise} LSB off its quantized weights) vs {args.float_model.name} float"
    elif args.artifact is None:
        graph, teacher, make_inputs = float_teacher_mlp(args.seed)
        graph = perturb(graph, args.noise, args.seed)
        what = f"MLP 16-64-10 (3-bit weight grid, +-{args.noise} LSB off round-to-nearest) vs its float teacher"
    else:
        graph, teacher, make_inputs = artifact_teacher(args.artifact, args.noise, args.seed)
        what = f"{args.artifact} (weights perturbed by +-{args.noise} LSB) vs the artifact as compiled"
    rng = np.random.default_rng(args.seed + 1)
    held_out = held_out or [make_inputs(rng) for _ in range(4)]
    loss0, agree0 = evaluate(graph, teacher, held_out)
    print(f"{what}\nbefore: held-out MSE {loss0:.5f}  top-1 agreement {agree0:.3f}")

    model = SteModel(graph, trainable=layer_weights(graph))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)  # settle on a grid point
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        for _ in range(args.accumulate):
            feeds = make_inputs(rng)
            want = {k: torch.from_numpy(v) for k, v in teacher(feeds).items()}
            got = model.dequantize(model(feeds))
            loss = sum(((got[k] - want[k]) ** 2).mean() for k in graph.outputs) / args.accumulate
            loss.backward()  # type: ignore[union-attr]
        opt.step()
        sched.step()
        if step == 1 or step % max(1, args.steps // 6) == 0:
            agree = np.mean([agreement(got[k].detach().numpy(), want[k].numpy()) for k in graph.outputs])
            print(f"step {step:4d}  train MSE {float(loss.detach()) * args.accumulate:.5f}  agreement {agree:.3f}")  # type: ignore[union-attr]
    secs = time.perf_counter() - t0

    tuned = model.export_graph()
    loss1, agree1 = evaluate(tuned, teacher, held_out)
    print(f"after {args.steps} steps ({secs:.1f} s): held-out MSE {loss1:.5f}  top-1 agreement {agree1:.3f}")

    # the re-exported graph on the NumPy backend == the torch STE forward, bit for bit
    feeds = held_out[0]
    ref = run_graph(tuned, feeds, collect_stats=False).codes
    with torch.no_grad():
        ste = {k: v.numpy().astype(np.int64) for k, v in model(feeds).items()}
    same = all(np.array_equal(ref[k], ste[k]) for k in tuned.outputs)
    print(f"NumPy backend on the exported graph bit-identical to the torch forward: {same}")
    if not same:
        raise SystemExit("export mismatch")
    if args.out is not None:
        Artifact(graph=tuned, manifest={"description": f"fine-tuned (STE, {args.steps} steps): {what}",
                                        "target": "numpy"}).save(args.out)
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
