"""The torch executor produces the NumPy reference's codes, bit for bit.

Random graphs (hypothesis) use every node kind, both requant modes and both execution modes; the
statistics must match too. CUDA tests run the same cases on the GPU with each exact matmul
engine and skip, with the reason shown, on machines without one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasercc.backends import get_executor
from lasercc.errors import InputError, LasercError
from lasercc.ir import Input, Slice, Take
from lasercc.ir.types import CodeType, TensorType
from lasercc.runtime import run_graph
from lasercc.testing import GraphBuilder, mlp_graph, random_graph, random_inputs

torch = pytest.importorskip("torch")
from lasercc.backends.torch_exec import torch_executor  # noqa: E402
from lasercc.backends.torch_matmul import PrecisionError  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU visible to torch on this machine")


def _graph(seed: int, requant: str, max_bits: int = 16):
    """A random graph, or None where the generator drew an accumulator the verifier rejects."""
    try:
        return random_graph(seed, requant=requant, steps=10, max_bits=max_bits)
    except LasercError:
        return None


def _assert_same(graph, inputs, mode: str, executor, stats: bool = False) -> None:
    ref = run_graph(graph, inputs, backend="numpy", mode="codes", collect_stats=stats)
    got = run_graph(graph, inputs, mode=mode, executor=executor, collect_stats=stats)
    for o in graph.outputs:
        assert got.codes[o].dtype == np.int64
        np.testing.assert_array_equal(got.codes[o], ref.codes[o], err_msg=f"output {o}")
    if stats:
        assert got.stats["nodes"] == ref.stats["nodes"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), requant=st.sampled_from(["ort", "fixed"]),
       mode=st.sampled_from(["codes", "spikes"]), rows=st.integers(1, 3), max_bits=st.sampled_from([8, 16, 24]))
def test_random_graphs_bit_exact_on_cpu(seed: int, requant: str, mode: str, rows: int, max_bits: int) -> None:
    g = _graph(seed, requant, max_bits)
    if g is None:
        return
    _assert_same(g, random_inputs(g, seed, rows=rows), mode, torch_executor(mode=mode, collect_stats=True),
                 stats=True)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["codes", "spikes"]),
       plan=st.sampled_from([("fp16", "fp32"), ("int8", "i64"), ("fp32", None), ("i64", None)]))
def test_sliced_tiled_plans_bit_exact_on_cpu(seed: int, mode: str, plan: tuple[str, str | None]) -> None:
    """The GPU plans (fp16 operands / fp32 accumulation, int8 x int8 -> int32) cut wide codes into
    slices and K into tiles; here their slicing and recombination run with CPU kernels that are
    exact under the same bounds, so a slicing bug cannot hide behind the lack of a GPU."""
    g = _graph(seed, "ort", 24)
    if g is None:
        return
    ex = torch_executor(mode=mode)
    ex.engine, ex.run_as = plan
    _assert_same(g, random_inputs(g, seed), mode, ex)


@pytest.mark.parametrize("requant", ["ort", "fixed"])
@pytest.mark.parametrize("mode", ["codes", "spikes"])
def test_mlp_bit_exact(requant: str, mode: str) -> None:
    g = mlp_graph(layers=3, width=64, batch=8, requant=requant)
    _assert_same(g, random_inputs(g, 5, rows=2), mode, get_executor("torch", mode, "cpu", collect_stats=True),
                 stats=True)


def test_runs_through_run_graph_by_name() -> None:
    g = mlp_graph(layers=2, width=16, batch=4)
    x = random_inputs(g, 0, rows=3)
    a = run_graph(g, x, backend="numpy")
    b = run_graph(g, x, backend="torch", device="cpu")
    np.testing.assert_array_equal(a.codes["fc1"], b.codes["fc1"])
    np.testing.assert_array_equal(a.values["fc1"], b.values["fc1"])
    assert a.stats == b.stats


def _movement_graph():
    """Negative slice steps and negative take indices (numpy semantics torch slicing lacks)."""
    b = GraphBuilder("move")
    t = CodeType.per_tensor_type(8, 0.1, 0, (3, 7))
    x = b.add(Input(name="x", type=t))
    s = b.add(Slice(name="s", inputs=(x,), axes=(1,), starts=(6,), stops=(0,), steps=(-2,), type=t.with_shape((3, 3))))
    s2 = b.add(Slice(name="s2", inputs=(x,), axes=(0, 1), starts=(-2, 1), stops=(100, -1), steps=(1, 3),
                     type=t.with_shape((2, 2))))
    k = b.add(Take(name="k", inputs=(x,), axis=1, indices=(-1, 0, -7, 3), type=t.with_shape((3, 4))))
    return b.graph([s, s2, k])


@pytest.mark.parametrize("mode", ["codes", "spikes"])
def test_data_movement_with_negative_steps_and_indices(mode: str) -> None:
    g = _movement_graph()
    x = {"x": np.arange(21, dtype=np.int64).reshape(3, 7) * 9 % 256}
    ref = x["x"]
    got = run_graph(g, x, mode=mode, executor=torch_executor(mode=mode)).codes
    np.testing.assert_array_equal(got["s"], ref[:, 6:0:-2])
    np.testing.assert_array_equal(got["s2"], ref[-2:100, 1:-1:3])
    np.testing.assert_array_equal(got["k"], ref[:, [-1, 0, -7, 3]])


def test_cuda_without_gpu_is_one_clear_error() -> None:
    if HAS_CUDA:
        pytest.skip("this machine has a GPU; the error path is for machines without one")
    with pytest.raises(LasercError, match="no CUDA GPU"):
        get_executor("torch", "codes", "cuda")
    with pytest.raises(LasercError, match="bad device"):
        torch_executor(device="gpu0")
    with pytest.raises(LasercError, match="needs a CUDA device"):
        torch_executor(matmul="fp16")


def test_bad_inputs_are_one_clear_error() -> None:
    g = mlp_graph(layers=1, width=8, batch=2)
    ex = torch_executor()
    with pytest.raises(InputError, match="expected shape"):
        ex.run(g, {"x": np.zeros((3, 8), np.float32)})
    with pytest.raises(InputError, match="expected real numbers"):
        ex.run(g, {"x": np.zeros((2, 8), np.complex64)})
    b = GraphBuilder("ids")
    b.add(Input(name="c", type=CodeType.per_tensor_type(4, 1.0, 0, (2,))))
    b.add(Input(name="i", type=TensorType(dtype="i64", shape=(2,))))
    gc = b.graph(["c"])
    with pytest.raises(InputError, match="codes must lie in"):
        ex.run(gc, {"c": np.array([1, 16]), "i": np.array([0, 1])})
    with pytest.raises(InputError, match="expected integer token ids"):
        ex.run(gc, {"c": np.array([1, 2]), "i": np.array([0.0, 1.0])})


def test_plan_wider_than_allowed_is_an_error_not_a_silent_slow_path() -> None:
    g = mlp_graph(layers=1, width=16, batch=2, bits=8)
    ex = torch_executor(max_products=1)
    ex.engine, ex.run_as = "int8", "i64"  # 7-bit slices: 8-bit codes need two products
    with pytest.raises(PrecisionError, match="max_products=1"):
        ex.run(g, random_inputs(g, 0))
    ok = torch_executor(max_products=1)  # f64 on CPU holds 8-bit x int8 at K=16 in one product
    np.testing.assert_array_equal(ok.run(g, random_inputs(g, 0)).codes["fc0"],
                                  run_graph(g, random_inputs(g, 0)).codes["fc0"])


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("engine", ["auto", "fp16", "fp32", "int8"])
@pytest.mark.parametrize("mode", ["codes", "spikes"])
def test_random_graphs_bit_exact_on_cuda(engine: str, mode: str) -> None:
    for seed in range(25):
        for requant in ("ort", "fixed"):
            g = _graph(seed, requant, 24)
            if g is None:
                continue
            ex = torch_executor(mode=mode, device="cuda", matmul=engine, collect_stats=(seed % 5 == 0))
            _assert_same(g, random_inputs(g, seed, rows=2), mode, ex, stats=(seed % 5 == 0))


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("requant", ["ort", "fixed"])
def test_mlp_bit_exact_on_cuda(requant: str) -> None:
    g = mlp_graph(layers=4, width=256, batch=64, requant=requant)
    _assert_same(g, random_inputs(g, 1), "codes", torch_executor(device="cuda"))


EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "ir" / "attention_block"


@pytest.mark.parametrize("mode", ["codes", "spikes"])
def test_bundled_attention_block_bit_exact_through_artifact_run(mode: str) -> None:
    from lasercc.ir.artifact import load

    art = load(EXAMPLE)
    x = dict(np.load(EXAMPLE / "input.npz"))
    ref = art.run(x, backend="numpy", output="codes")
    ref_stats = art.stats
    got = art.run(x, backend="torch", mode=mode, device="cpu", output="codes")
    for o in art.graph.outputs:
        np.testing.assert_array_equal(got[o], ref[o])
    assert art.stats["nodes"] == ref_stats["nodes"]


def test_benchmark_gpt_shaped_graph_bit_exact() -> None:
    """The graph bench/torch_throughput.py times (embedding, multi-head attention with mask,
    winner-take-all softmax and lookup tables, GELU MLP, residuals, LM head) computes the
    reference's codes, in both modes and with the fp16 plan's slicing."""
    import importlib.util

    path = EXAMPLE.parents[2] / "bench" / "torch_throughput.py"
    spec = importlib.util.spec_from_file_location("torch_throughput", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    g = mod.spiking_gpt(layers=1, d_model=32, heads=2, vocab=100, batch=2, seq=16)
    x = {"ids": np.random.default_rng(0).integers(0, 100, (2, 16))}
    ref = run_graph(g, x, collect_stats=False).codes["lm_head"]
    assert ref.std() > 10  # the logits are spread, not saturated: a meaningful comparison
    for mode in ("codes", "spikes"):
        np.testing.assert_array_equal(run_graph(g, x, mode=mode, executor=torch_executor(mode)).codes["lm_head"], ref)
    ex = torch_executor()
    ex.engine, ex.run_as = "fp16", "fp32"
    np.testing.assert_array_equal(run_graph(g, x, executor=ex).codes["lm_head"], ref)


MODELS = EXAMPLE.parents[1] / "models"


@pytest.mark.parametrize("name", ["tiny_gpt", "tiny_llama"])
def test_compiled_example_lms_bit_exact(name: str) -> None:
    """The bundled example LMs, compiled by the ONNX frontend, give the reference's codes and
    statistics in both modes."""
    from lasercc.frontends import onnx as onnx_frontend

    qdq = MODELS / f"{name}.qdq.onnx"
    assert qdq.exists(), f"{qdq} is bundled; regenerate it with python examples/build_models.py"
    g = onnx_frontend.import_onnx(qdq, calibration=MODELS / f"{name}.calib.npz").graph
    x = {k: v[:2] for k, v in np.load(MODELS / f"{name}.heldout.npz").items()}
    for mode in ("codes", "spikes"):
        _assert_same(g, x, mode, torch_executor(mode, collect_stats=True), stats=True)
