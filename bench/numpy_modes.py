"""Speed of the NumPy reference in ``codes`` and ``spikes`` mode against onnxruntime on the same
quantized MLP (4 layers, 256 wide, batch 64, int8 weights, QLinearMatMul chain in onnxruntime).

Run: ``.venv/bin/python bench/numpy_modes.py`` (writes bench/results/numpy_modes.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from lasercc.runtime import run_graph
from lasercc.testing import mlp_graph, random_inputs

OUT = Path(__file__).parent / "results" / "numpy_modes.md"


def ort_model(g) -> onnx.ModelProto:
    """The same MLP as QuantizeLinear + QLinearMatMul nodes (uint8 codes, int8 weights, zp 128)."""
    x = g.node("x_q")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_x_q", "z_x_q"], ["x_q"])]
    inits = [helper.make_tensor("s_x_q", TensorProto.FLOAT, [], [x.type.scale[0]]),
             helper.make_tensor("z_x_q", TensorProto.UINT8, [], [x.type.zero_point[0]])]
    prev = "x_q"
    for n in g.nodes:
        if n.op != "soma":
            continue
        w = g.constants[n.weights[0]]
        bias = g.constants[n.bias].astype(np.int64) + g.type_of(prev).zero_point[0] * w.astype(np.int64).sum(0)
        s_y = np.float32(np.float32(n.scale_in) * np.float32(n.scale_w[0]) / np.float32(n.type.scale[0]))
        # QLinearMatMul has no bias: fold it by an equivalent output zero point is not exact, so
        # emulate with scales chosen to reproduce the same requant scale (s_a*s_w/s_y)
        inits += [helper.make_tensor(f"s_in_{n.name}", TensorProto.FLOAT, [], [n.scale_in]),
                  helper.make_tensor(f"z_in_{n.name}", TensorProto.UINT8, [], [g.type_of(prev).zero_point[0]]),
                  onnx.numpy_helper.from_array(w, f"w_{n.name}"),
                  helper.make_tensor(f"s_w_{n.name}", TensorProto.FLOAT, [], [n.scale_w[0]]),
                  helper.make_tensor(f"z_w_{n.name}", TensorProto.INT8, [], [0]),
                  helper.make_tensor(f"s_y_{n.name}", TensorProto.FLOAT, [], [n.type.scale[0]]),
                  helper.make_tensor(f"z_y_{n.name}", TensorProto.UINT8, [], [n.type.zero_point[0]])]
        del bias, s_y
        nodes.append(helper.make_node("QLinearMatMul", [prev, f"s_in_{n.name}", f"z_in_{n.name}", f"w_{n.name}",
                                                        f"s_w_{n.name}", f"z_w_{n.name}", f"s_y_{n.name}",
                                                        f"z_y_{n.name}"], [n.name]))
        prev = n.name
    xin = g.node("x")
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(xin.type.shape))
    graph = helper.make_graph(nodes, "mlp", [x_info],
                              [helper.make_tensor_value_info(prev, TensorProto.UINT8, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def timeit(fn, repeat: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    # 7-bit weights: onnxruntime's u8 x s8 kernel saturates int16 pairs on CPUs without VNNI otherwise
    g = mlp_graph(layers=4, width=256, batch=64, bits=8, wmax=63)
    # zero bias so the ORT QLinearMatMul chain is the same network (QLinearMatMul has no bias input)
    g = g.replace(constants=g.constants.with_items(**{
        n.bias: -g.type_of(n.inputs[0]).zero_point[0] * g.constants[n.weights[0]].astype(np.int64).sum(0)
        for n in g.nodes if n.op == "soma"}))
    inputs = random_inputs(g, 0)
    sess = ort.InferenceSession(ort_model(g).SerializeToString(), providers=["CPUExecutionProvider"])
    t_ort = timeit(lambda: sess.run(None, inputs))
    t_codes = timeit(lambda: run_graph(g, inputs, mode="codes", collect_stats=False))
    t_codes_stats = timeit(lambda: run_graph(g, inputs, mode="codes"))
    t_spikes = timeit(lambda: run_graph(g, inputs, mode="spikes", collect_stats=False))
    ours = run_graph(g, inputs).codes[g.outputs[0]]
    (theirs,) = sess.run(None, inputs)
    same = float((ours == theirs.astype(np.int64)).mean())
    rows = [("onnxruntime QLinearMatMul (CPU)", t_ort), ("numpy codes", t_codes),
            ("numpy codes + statistics", t_codes_stats),
            ("numpy spikes (bit-serial)", t_spikes)]
    lines = ["| runner | ms per batch of 64 | vs onnxruntime |", "|---|---:|---:|"]
    lines += [f"| {name} | {t * 1e3:.2f} | {t / t_ort:.2f}x |" for name, t in rows]
    text = "\n".join(lines) + (f"\n\nIdentical output codes vs onnxruntime: {same:.4%} "
                               "(7-bit weights in int8, uint8 codes).")
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("# NumPy reference speed: 4 x 256 MLP, batch 64\n\nCommand: `.venv/bin/python bench/numpy_modes.py` "
                   "(2-core x86 VM without AVX-512 VNNI)\n\n" + text + "\n")


if __name__ == "__main__":
    main()
