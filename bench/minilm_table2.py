"""LASER Table 2 on real weights: all-MiniLM-L6-v2's layers fed its real sentence activations, at 16 bits.

What each row compiles (a float ONNX model built here from MiniLM's weights, ``lasercc.compile(bits=16)``,
NumPy backend) and what it is fed (activations captured with torch hooks from the pretrained model, real
tokens only; calibration = the 16 calibration sentences of bench/minilm_fidelity.py, measured on its 8
held-out sentences):

* nonlinearities, each as the float model computes it, on the inputs it really sees, pooled over the six
  layers: GELU (Erf form) on the FFN-up outputs; exp on the attention scores minus their row maximum (what a
  softmax exponentiates); reciprocal on the softmax denominators (sums of those exps over real keys); rsqrt
  on the LayerNorm variances + eps (attention-output LayerNorm inputs). Each with its exact lookup table
  (the INT16 floor of a tabulated function) and with ``asnc-fit{max_segments=k}``, k = 8/16/32/64;
* Linear 384->1536 (layer 0's FFN-up, int16 per-channel weights): Soma vs the INT16 quantized ANN;
* the full FFN block of layers 0 and 5 (Linear -> GELU -> Linear, int16 weights), LUT and ASNC k;
* the same Linear with its input coded in T time steps, T = 8 and 16 (BSE's bit counts: BSE spends one step
  per bit), float weights so that only the coding differs: BSE (the T-bit code of the shared quantizer,
  encoded and decoded as spikes), rate coding with a deterministic integrate-and-fire neuron and with
  Bernoulli spikes (bench/fidelity_bse_coding.py's coders, LASER Table 1's rate coding), all over the same
  calibrated input range [lo, hi] (held-out values beyond it are clipped for every coder alike).

MSE is in real units against the float64 function / block with the original float weights; ``rel`` divides it
by the reference's variance (real activations differ in scale from LASER's N(0, 1) inputs, so only ``rel``
compares across rows). Error propagation through later layers and the segment count each nonlinearity needs
for a fixed end error: bench/minilm_error_propagation.py. Writes bench/results/minilm_table2.md and .json.

    .venv/bin/python bench/minilm_table2.py [--seq 32] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _provenance  # noqa: E402
import fidelity_bse_coding as coding  # noqa: E402
import fidelity_ffn_block as ffn  # noqa: E402
import minilm_fidelity as mf  # noqa: E402  (sets the offline environment before transformers loads)
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import lasercc  # noqa: E402
from lasercc.asnc.functions import gelu  # noqa: E402

SEGMENTS = (8, 16, 32, 64)
WIDTH = 64          # scalar inputs (scores, sums, variances) are laid out as rows of this many values
MAX_VALUES = 1 << 17  # per nonlinearity and split: a deterministic subsample keeps the compile/run short
PAPER = {"GELU": None, "exp": None, "reciprocal": None, "rsqrt": None}  # LASER Table 2 lists SiLU, not these


def capture(bert: torch.nn.Module, feeds: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Per layer: FFN input, GELU input, attention scores (real keys, minus row max), softmax sums, LN variances."""
    got: dict[str, list] = {k: [] for k in ("ffn_in", "gelu_in", "exp_in", "recip_in", "rsqrt_in")}
    mask = torch.from_numpy(feeds["attention_mask"]).bool()
    hooks, cur = [], {}
    for li, layer in enumerate(bert.encoder.layer):
        def keep(name: str, li: int = li):  # noqa: ANN202
            def hook(mod, inp, out):  # noqa: ANN001, ANN202
                cur[(li, name)] = (inp[0] if name in ("ffn_in", "ln_in") else out).detach()
            return hook
        hooks += [layer.intermediate.dense.register_forward_hook(keep("ffn_in")),
                  layer.intermediate.dense.register_forward_hook(keep("gelu_in")),
                  layer.attention.self.query.register_forward_hook(keep("q")),
                  layer.attention.self.key.register_forward_hook(keep("k")),
                  layer.attention.output.LayerNorm.register_forward_hook(keep("ln_in"))]
    with torch.no_grad():
        bert(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    for h in hooks:
        h.remove()
    heads = bert.config.num_attention_heads
    for li in range(len(bert.encoder.layer)):
        got["ffn_in"].append(cur[(li, "ffn_in")][mask].numpy())
        got["gelu_in"].append(cur[(li, "gelu_in")][mask].numpy())
        q, k = cur[(li, "q")], cur[(li, "k")]
        b, s, d = q.shape
        q = q.view(b, s, heads, d // heads).transpose(1, 2)
        k = k.view(b, s, heads, d // heads).transpose(1, 2)
        sc = (q @ k.transpose(-1, -2)) / np.sqrt(d // heads)           # [b, h, s, s]
        sc = sc.masked_fill(~mask[:, None, None, :], float("-inf"))
        z = sc - sc.amax(-1, keepdim=True)
        rows = mask[:, None, :, None].expand_as(z) & mask[:, None, None, :].expand_as(z)
        got["exp_in"].append(z[rows].numpy())
        got["recip_in"].append(torch.exp(z).sum(-1)[mask[:, None, :].expand(b, heads, s)].numpy())
        x = cur[(li, "ln_in")][mask].double()
        got["rsqrt_in"].append((x.var(-1, unbiased=False) + bert.config.layer_norm_eps).float().numpy())
    return got


def as_rows(v: np.ndarray, width: int = WIDTH) -> np.ndarray:
    """A deterministic subsample of ``v`` (at most MAX_VALUES values) as [n, width] float32 rows."""
    v = np.asarray(v, np.float32).ravel()
    if v.size > MAX_VALUES:
        v = v[np.linspace(0, v.size - 1, MAX_VALUES).astype(np.int64)]
    n = v.size // width
    return v[: n * width].reshape(n, width)


def unary_model(kind: str, width: int) -> onnx.ModelProto:
    """The float model's form of each nonlinearity (GELU as the exporter writes it; rsqrt as 1/Sqrt)."""
    consts = {"sqrt2": np.sqrt(2.0), "one": 1.0, "half": 0.5}
    if kind == "GELU":
        nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                 helper.make_node("Add", ["e", "one"], ["p"]), helper.make_node("Mul", ["x", "p"], ["m"]),
                 helper.make_node("Mul", ["m", "half"], ["y"])]
    elif kind == "exp":
        nodes = [helper.make_node("Exp", ["x"], ["y"])]
    elif kind == "reciprocal":
        nodes = [helper.make_node("Reciprocal", ["x"], ["y"])]
    else:
        nodes = [helper.make_node("Sqrt", ["x"], ["r"]), helper.make_node("Reciprocal", ["r"], ["y"])]
    used = {i for n in nodes for i in n.input}
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items() if k in used]
    g = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


REFERENCE = {"GELU": gelu, "exp": np.exp, "reciprocal": lambda x: 1.0 / x, "rsqrt": lambda x: 1.0 / np.sqrt(x)}


def compile16(model: onnx.ModelProto, cal: np.ndarray, seg: int | None) -> lasercc.Artifact:
    passes = "dce" if seg is None else f"dce,asnc-fit{{max_segments={seg}}}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lasercc.compile(model, bits=16, calibration={"x": cal}, passes=passes, progress=False)


def row(name: str, seg: int | None, got: np.ndarray, ref: np.ndarray, art: lasercc.Artifact | None,
        floor: float | None = None) -> dict:
    """One result: MSE vs the float64 reference, relative MSE, and the output code's rounding floor."""
    if art is not None:
        floor = ffn.mse(ffn.fake_quant(ref, art.graph.type_of(art.graph.outputs[0])), ref)
    e = ffn.mse(got, ref)
    return {"component": name, "segments": "LUT" if seg is None else seg, "mse": e, "rel": e / float(np.var(ref)),
            "floor": floor}


def fmt(r: dict) -> str:
    floor = "" if r["floor"] is None else f"{r['floor']:.1e}"
    seg = "-" if r["segments"] is None else r["segments"]
    return f"| {r['component']} | {seg} | {r['mse']:.3e} | {r['rel']:.2e} | {floor} |"


def coded_linear(t: np.ndarray, c: np.ndarray, w: np.ndarray, b: np.ndarray, ref: np.ndarray,
                 steps: tuple[int, ...] = (8, 16)) -> list[dict]:
    """The Linear fed its input coded in T steps by BSE and by rate coding, float weights (only the coding
    differs). Range = the calibration min/max, per tensor as lasercc calibrates; inputs clipped to it first."""
    lo, hi = float(c.min()), float(c.max())
    x = np.clip(t.astype(np.float64), lo, hi).ravel()
    out = []
    for steps_t in steps:
        rng = np.random.default_rng(0)
        coded = {"BSE": coding.bse(x, lo, hi, steps_t, rng)[0], "rate (IF)": coding.rate_if(x, lo, hi, steps_t, rng),
                 "rate (Bernoulli)": coding.rate_bernoulli(x, lo, hi, steps_t, rng)}
        for name, xd in coded.items():
            got = xd.reshape(t.shape) @ w.astype(np.float64) + b
            out.append(row(f"Linear 384->1536 layer 0 FFN-up, input {name} in {steps_t} steps, float weights",
                           None, got, ref, None) | {"segments": None, "steps": steps_t, "coding": name})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    from transformers import BertModel

    t0 = time.perf_counter()
    _provenance.commit()  # the code as it is when the run starts
    torch.set_num_threads(1)
    path = mf.model_dir()
    bert = BertModel.from_pretrained(str(path), attn_implementation="eager").eval()
    cal = capture(bert, mf.tokenize(path, mf.CALIBRATION_SENTENCES, args.seq))
    test = capture(bert, mf.tokenize(path, mf.EVAL_SENTENCES, args.seq))
    recs: list[dict] = []

    def add(r: dict) -> None:
        recs.append(r)
        print(fmt(r), flush=True)

    sources = {"GELU": "gelu_in", "exp": "exp_in", "reciprocal": "recip_in", "rsqrt": "rsqrt_in"}
    ranges = []
    for kind, key in sources.items():
        c, t = as_rows(np.concatenate([v.ravel() for v in cal[key]])), as_rows(np.concatenate(
            [v.ravel() for v in test[key]]))
        out = float(((t < c.min()) | (t > c.max())).mean())
        ranges.append(f"{kind} inputs {float(c.min()):.3g}..{float(c.max()):.3g} ({c.size:,} calibration values; "
                      f"{out:.2%} of held-out values outside)")
        ref = REFERENCE[kind](t.astype(np.float64))
        for seg in (None, *SEGMENTS):
            art = compile16(unary_model(kind, WIDTH), c, seg)
            add(row(f"{kind}, 6 layers' real inputs", seg, art.run({"x": t})["y"], ref, art) | {"kind": kind})
    for li in (0, 5):
        layer = bert.encoder.layer[li]
        w1 = layer.intermediate.dense.weight.detach().numpy().T.copy()
        b1 = layer.intermediate.dense.bias.detach().numpy().copy()
        w2 = layer.output.dense.weight.detach().numpy().T.copy()
        b2 = layer.output.dense.bias.detach().numpy().copy()
        c, t = cal["ffn_in"][li], test["ffn_in"][li]
        if li == 0:
            art = compile16(ffn.build_model([(w1, b1)], None, True), c, None)
            g = art.graph
            in_t, out_t = g.consumers()["x"][0].type, g.type_of(g.outputs[0])
            q, s = ffn.int16_weights(w1)
            ref = ffn.reference(t, [(w1, b1)], None)
            ann = ffn.fake_quant(ffn.fake_quant(t.astype(np.float64), in_t) @ (q * s.astype(np.float64)) + b1, out_t)
            recs.append(row("INT16 quantized ANN, layer 0 FFN-up 384->1536", None, ann, ref, None)
                        | {"segments": None})
            add(row("Linear 384->1536 Soma (BSE), layer 0 FFN-up, int16 weights", None, art.run({"x": t})["y"],
                    ref, art))
            for r in coded_linear(t, c, w1, b1, ref):
                add(r)
        ref = ffn.reference(t, [(w1, b1), (w2, b2)], "gelu")
        rc = ffn.reference(c, [(w1, b1), (w2, b2)], "gelu")
        ranges.append(f"FFN {li} outputs {rc.min():.3g}..{rc.max():.3g} on calibration, "
                      f"{float(((ref < rc.min()) | (ref > rc.max())).mean()):.4%} of held-out outputs outside")
        for seg in (None, *SEGMENTS):
            art = compile16(ffn.build_model([(w1, b1), (w2, b2)], "gelu", True), c, seg)
            add(row(f"FFN block layer {li} (384->1536 GELU ->384), int16 weights", seg, art.run({"x": t})["y"],
                    ref, art) | {"layer": li})
    seconds = time.perf_counter() - t0
    argv_used = ["bench/minilm_table2.py", "--seq", str(args.seq)]
    text = "\n".join([
        "# LASER Table 2 on real weights: all-MiniLM-L6-v2, real sentence activations, 16 bits", "",
        _provenance.stamp(argv_used, seconds),
        f"torch {torch.__version__} (1 thread)  ",
        "Inputs: " + "; ".join(ranges) + ". Test values come from the 8 held-out sentences (same layers, real "
        "tokens). MSE in real units vs the float64 function (block: float weights); rel = MSE / variance of the "
        "reference; floor = the reference rounded to the compiled 16-bit output code, saturation included: a "
        "held-out value beyond the calibrated range is clipped, which is most of the rsqrt and layer-5 floors. "
        "Coded-input rows: the Linear's input coded in T steps over the calibrated range (BSE = the T-bit code; "
        "rate = spike count / T, integrate-and-fire or Bernoulli), float weights, so the row is the coding's "
        "error alone; BSE in 16 steps is the 16-bit Soma row without weight rounding. "
        "LASER Table 2 (SiLU 8.73e-7, FFN 9.51e-7, on N(0, 1) inputs) is not like for like: other functions, "
        "inputs and scales (bench/results/fidelity_ffn_block.md has the synthetic analogue).", "",
        "| component | segments | MSE vs float | rel | floor |", "|---|---:|---:|---:|---:|",
        *(fmt(r) for r in recs), ""])
    print(text)
    if not args.no_write:
        out = Path(__file__).parent / "results" / "minilm_table2.md"
        out.write_text(text)
        payload = {"provenance": _provenance.record(argv_used), "seconds": seconds, "bits": 16, "rows": recs}
        out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {out} and {out.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
