"""Straight-through fine-tuning: the forward pass is the exact integer graph, gradients are the
documented surrogates, training lowers a loss, and the re-exported graph runs bit-identically on
the NumPy backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasercc.ir import ASNCSegment, BSEEncode, Input, Soma
from lasercc.ir.types import CodeType, TensorType
from lasercc.runtime import run_graph
from lasercc.semantics import requantize_scale
from lasercc.testing import GraphBuilder, mlp_graph, random_graph, random_inputs

torch = pytest.importorskip("torch")
from lasercc.backends.torch_ste import SteModel  # noqa: E402


def _codes(out: dict) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(np.int64) for k, v in out.items()}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), requant=st.sampled_from(["ort", "fixed"]))
def test_forward_is_exact_and_export_after_a_step_is_bit_identical(seed: int, requant: str) -> None:
    g = random_graph(seed, requant=requant)
    x = random_inputs(g, seed)
    m = SteModel(g)
    out = m(x)
    ref = run_graph(g, x, collect_stats=False).codes
    for o in g.outputs:
        np.testing.assert_array_equal(_codes(out)[o], ref[o])
    loss = sum(((v - 1.0) ** 2).mean() for v in m.dequantize(out).values())
    if not loss.requires_grad:  # no trainable path reaches an output in this graph
        return
    loss.backward()
    with torch.no_grad():
        for p in m.shadows:
            if p.grad is not None:
                p -= 3.0 * torch.sign(p.grad)  # move every touched integer weight
    g2 = m.export_graph()
    got = _codes(m(x))
    ref2 = run_graph(g2, x, collect_stats=False).codes
    for o in g.outputs:
        np.testing.assert_array_equal(got[o], ref2[o])


def _one_layer(requant: str = "ort"):
    b = GraphBuilder("one")
    x = b.add(Input(name="x", type=TensorType(dtype="f32", shape=(4, 3))))
    e = b.add(BSEEncode(name="e", inputs=(x,), type=CodeType.per_tensor_type(8, 0.125, 128, (4, 3))))
    w = b.const("w", np.array([[1, -2], [3, 4], [-5, 6]], np.int8))
    s = b.add(Soma(name="s", inputs=(e,), weights=(w,), forms=("matmul",), bias=None, scale_in=0.5, scale_w=(0.25,),
                   requant=requant, type=CodeType.per_tensor_type(12, 0.5, 2048, (4, 2))))
    return b.graph([s])


def test_surrogate_gradients_are_the_documented_ones() -> None:
    """d out / d W = x_codes^T * scale and d out / d x = W^T * scale / s_x (identity through
    rounding), where nothing saturates."""
    g = _one_layer()
    m = SteModel(g)
    x = torch.tensor(np.random.default_rng(0).uniform(-3, 3, size=(4, 3)).astype(np.float32), requires_grad=True)
    out = m({"x": x})["s"]
    out.sum().backward()
    scale = float(requantize_scale(0.5, 0.25, 0.5))
    xc = run_graph(g.replace(outputs=("e",)), {"x": x.detach().numpy()}).codes["e"].astype(np.float64)
    np.testing.assert_allclose(m.shadows[0].grad.numpy(), xc.T @ np.ones((4, 2)) * scale)
    w = g.constants["w1"].astype(np.float64)
    np.testing.assert_allclose(x.grad.numpy(), np.ones((4, 2)) @ w.T * scale / 0.125)


def test_surrogate_mode_keeps_the_forward_and_reshapes_the_gradient() -> None:
    """grad="surrogate": the same exact codes; the input gradient of the encoder is the identity's
    times beta*(s'(beta(d-1/2)) + s'(beta(d+1/2))) at the real code u (d = u - round(u)), written out
    here from the logistic function, not from the module."""
    g = _one_layer()
    x0 = np.random.default_rng(1).uniform(-3, 3, size=(4, 3)).astype(np.float32)
    grads, outs = {}, {}
    for mode in ("ste", "surrogate"):
        m = SteModel(g.replace(outputs=("e",)), grad=mode, beta=5.0)
        x = torch.tensor(x0, requires_grad=True)
        out = m({"x": x})["e"]
        out.sum().backward()
        grads[mode], outs[mode] = x.grad.numpy(), out.detach().numpy()
    np.testing.assert_array_equal(outs["ste"], outs["surrogate"])
    u = np.clip(x0.astype(np.float64) / 0.125 + 128, 0, 255)
    d = u - np.round(u)

    def ds(t: np.ndarray) -> np.ndarray:
        s = 1 / (1 + np.exp(-t))
        return s * (1 - s)

    factor = 5.0 * (ds(5.0 * (d - 0.5)) + ds(5.0 * (d + 0.5)))
    np.testing.assert_allclose(grads["ste"], np.full((4, 3), 1 / 0.125))
    np.testing.assert_allclose(grads["surrogate"], grads["ste"] * factor, rtol=1e-6)  # x is float32
    with pytest.raises(Exception, match="grad must be"):
        SteModel(g, grad="heaviside")


def test_asnc_gradient_is_the_segment_slope() -> None:
    b = GraphBuilder("relu")
    xin = b.add(Input(name="x", type=CodeType.per_tensor_type(8, 1.0, 0, (1, 6))))
    thr, a, c = b.const("t", np.array([128], np.int64)), b.const("a", np.array([0, 6], np.int64)), \
        b.const("c", np.array([0, -6 * 128], np.int64))
    y = b.add(ASNCSegment(name="y", inputs=(xin,), function="relu", thresholds=thr, slopes=a, intercepts=c, shift=2,
                          type=CodeType.per_tensor_type(8, 1.0, 0, (1, 6))))
    g = b.graph([y])
    m = SteModel(g)
    x = torch.tensor([[10.0, 127.0, 129.0, 140.0, 200.0, 255.0]], dtype=torch.float64, requires_grad=True)
    out = m.executor.run(g, {"x": x}).codes["y"]
    ref = run_graph(g, {"x": x.detach().numpy().astype(np.int64)}).codes["y"]
    np.testing.assert_array_equal(out.detach().numpy(), ref)
    out.sum().backward()
    # slope a_i / 2^k = 1.5 on the upper segment where the output is inside (0, 255); 0 below / saturated
    live = (out.detach().numpy() > 0) & (out.detach().numpy() < 255)
    np.testing.assert_allclose(x.grad.numpy(), np.where(live, 1.5, 0.0))


def test_fine_tuning_lowers_the_loss_against_a_teacher() -> None:
    """Perturbed weights, teacher = the unperturbed graph: 60 Adam steps cut the loss by half."""
    g0 = mlp_graph(layers=2, width=16, batch=32, requant="fixed")
    rng = np.random.default_rng(1)
    noisy = {k: np.clip(v.astype(np.int64) + rng.integers(-40, 41, size=v.shape), -127, 127).astype(v.dtype)
             for k, v in g0.constants.arrays().items() if k.startswith("w")}
    g = g0.replace(constants=g0.constants.with_items(**noisy)).verify()
    x = random_inputs(g, 3)
    teacher = torch.from_numpy(run_graph(g0, x).values["fc1"].astype(np.float64))
    m = SteModel(g)
    opt = torch.optim.Adam(m.parameters(), lr=1.0)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = ((m.dequantize(m(x))["fc1"] - teacher) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    g2 = m.export_graph()
    np.testing.assert_array_equal(run_graph(g2, x).codes["fc1"], _codes(m(x))["fc1"])
    assert g2.constants["w1"].dtype == np.int8
