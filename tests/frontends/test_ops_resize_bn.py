"""Resize / Upsample and BatchNormalization (ops_resize.py, ops_norm.py) against onnxruntime's float kernels.

Found by the unseen vision families of bench/hf_zoo_vision.py: Segformer's decoder upsamples every stage
bilinearly (Resize linear, half_pixel) and LeViT / MobileViT keep BatchNorm unfused after Linear layers. Each
case is a one-node graph on a float activation, compiled at 16 bits and compared with onnxruntime within the
node-test harness's code-step tolerance (``onnx_conformance.tolerance``): every interpolation mode, coordinate
transformation, nearest rounding rule, cubic coefficient / exclude_outside, tf_crop_and_resize with roi and
extrapolation, axes and keep_aspect_ratio_policy (opset 18+), scales or sizes, opset 10's Resize and Upsample-9;
BatchNormalization on ranks 2-4; the refusals (antialias downscaling, training mode, run-time statistics) are
FrontendErrors naming the node.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import lasercc
from lasercc.frontends.onnx.load import FrontendError
from lasercc.onnx_conformance import tolerance

X_SHAPE = (1, 2, 4, 5)


def _model(node: onnx.NodeProto, x_shape, inits: list, opset: int) -> onnx.ModelProto:  # noqa: ANN001
    g = h.make_graph([node], "m", [h.make_tensor_value_info("x", T.FLOAT, list(x_shape))],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _check(m: onnx.ModelProto, x_shape, bits: int = 16) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, (16, *x_shape[1:])).astype(np.float32)
    feeds = rng.normal(0, 1, (3, *x_shape[1:])).astype(np.float32)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"x": feeds[i:i + 1]})[0] for i in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(m, target="numpy", bits=bits, calibration={"x": np.concatenate([calib, feeds])},
                              input_shapes={"x": (1, *x_shape[1:])}, passes="", progress=False)
    got = np.asarray(next(iter(art.run({"x": feeds}).values())))
    assert got.shape == ref.shape
    tol, step = tolerance(ref, bits)
    err = float(np.max(np.abs(got.astype(np.float64) - ref)))
    assert err <= tol, f"max error {err:.3g} = {err / step:.1f} steps"


def _f(name: str, v: list[float]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(v, np.float32), name)


def _i(name: str, v: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(v, np.int64), name)


RESIZE_CASES = [  # (id, opset, attributes, roi, scales, sizes)
    ("nearest-asym-floor-x2", 13, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                   "nearest_mode": "floor"}, None, [1, 1, 2, 2], None),
    ("nearest-ceil-down-up", 13, {"mode": "nearest", "nearest_mode": "round_prefer_ceil"}, None, None, [1, 2, 7, 3]),
    ("nearest-tf-half-pixel", 13, {"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn",
                                   "nearest_mode": "ceil"}, None, None, [1, 2, 6, 8]),
    ("linear-half-pixel-x2", 13, {"mode": "linear"}, None, [1, 1, 2, 2], None),  # Segformer's decoder
    ("linear-align-corners", 13, {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None, None,
     [1, 2, 8, 9]),
    ("linear-pytorch-half-pixel-to-1", 13, {"mode": "linear", "coordinate_transformation_mode":
                                            "pytorch_half_pixel"}, None, None, [1, 2, 1, 3]),
    ("cubic-half-pixel-frac", 13, {"mode": "cubic"}, None, [1, 1, 1.5, 0.6], None),
    ("cubic-exclude-a05-asym", 13, {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1,
                                    "coordinate_transformation_mode": "asymmetric"}, None, [1, 1, 2, 2], None),
    ("tf-crop-and-resize", 13, {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                                "extrapolation_value": 0.5}, [0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2], None, [1, 2, 5, 6]),
    ("half-pixel-symmetric-axes", 19, {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric",
                                       "axes": [2, 3]}, None, [2.0, 0.75], None),
    ("keep-aspect-not-larger", 18, {"mode": "cubic", "keep_aspect_ratio_policy": "not_larger", "axes": [3, 2]},
     None, None, [8, 9]),
    ("opset10-nearest", 10, {"mode": "nearest"}, None, [1, 1, 2, 0.6], None),
    ("opset10-linear", 10, {"mode": "linear"}, None, [1, 1, 2, 1.5], None),
]


@pytest.mark.parametrize("case", RESIZE_CASES, ids=[c[0] for c in RESIZE_CASES])
def test_resize_matches_onnxruntime(case) -> None:  # noqa: ANN001
    _, opset, attrs, roi, scales, sizes = case
    inits = []
    if opset < 11:
        names = ["x", "scales"]
        inits.append(_f("scales", scales))
    else:
        names = ["x", "roi" if roi is not None else "", "scales" if scales is not None else ""]
        if roi is not None:
            inits.append(_f("roi", roi))
        if scales is not None:
            inits.append(_f("scales", scales))
        if sizes is not None:
            names.append("sizes")
            inits.append(_i("sizes", sizes))
    _check(_model(h.make_node("Resize", names, ["y"], name="rs", **attrs), X_SHAPE, inits, opset), X_SHAPE)


def test_upsample_opset9_matches_onnxruntime() -> None:
    m = _model(h.make_node("Upsample", ["x", "scales"], ["y"], mode="linear"), X_SHAPE,
               [_f("scales", [1, 1, 2, 3])], 9)
    _check(m, X_SHAPE)


def test_resize_antialias_downscale_is_refused_by_name() -> None:
    m = _model(h.make_node("Resize", ["x", "", "scales"], ["y"], name="aa", mode="linear", antialias=1), X_SHAPE,
               [_f("scales", [1, 1, 0.5, 0.5])], 18)
    with pytest.raises(FrontendError, match="antialias"):
        _check(m, X_SHAPE)


@pytest.mark.parametrize("shape", [(1, 6), (1, 4, 7), (1, 3, 4, 5)])
def test_batchnorm_matches_onnxruntime(shape) -> None:  # noqa: ANN001
    c = shape[1]
    rng = np.random.default_rng(c)
    inits = [_f("s", rng.uniform(0.5, 2, c)), _f("b", rng.normal(0, 1, c)), _f("m", rng.normal(0, 0.5, c)),
             _f("v", rng.uniform(0.2, 3, c))]
    node = h.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", epsilon=1e-3)
    _check(_model(node, shape, inits, 15), shape)


def test_batchnorm_refusals_name_the_node() -> None:
    inits = [_f(k, [1.0, 1.0]) for k in ("s", "b", "m", "v")]
    train = h.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], name="bn_train",
                        training_mode=1)
    with pytest.raises(FrontendError, match="bn_train.*training"):
        _check(_model(train, (1, 2, 3), inits, 15), (1, 2, 3))
