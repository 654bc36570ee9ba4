"""ONNX frontend: a (quantized or float) ONNX model -> spiking IR ``Graph``.

Steps: load (external data) -> float16/bfloat16 widened to float32 (``widen.py``)
-> pin dynamic input dims and run onnx shape inference (``load.py``)
-> calibration run in onnxruntime for the float tensors the model does not quantize
(``calibrate.py``) -> one lowering pass over the nodes (``lower.py`` driver; handlers registered in
``registry.py`` by the ``ops_*.py`` modules, which share ``common.py`` / ``cores.py`` and never import each
other; unary elementwise chains evaluated into one table each by ``chains.py``, a prepare hook) -> a
verified ``Graph``.

Formats: static QDQ (8/16-bit, signed or unsigned activations, per-tensor or per-channel weights),
QOperator (QLinearMatMul, QGemm, QLinearAdd/Mul/Sigmoid/Softmax/Concat...), dynamic quantization
(DynamicQuantizeLinear + MatMulInteger, made static from calibration ranges), weight-only int8
(dequantization folded, weights re-derived), float models (quantized here).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from lasercc.frontends.onnx import (  # noqa: F401 - register handlers
    ops_attention,
    ops_contrib,
    ops_conv,
    ops_elementwise,
    ops_int,
    ops_linear,
    ops_move,
    ops_nbits,
    ops_norm,
    ops_quant,
    ops_reduce,
    ops_resize,
    precision,
)
from lasercc.frontends.onnx.calibrate import (
    Stats,
    calibration_shapes,
    check_inputs,
    default_calibration,
    read_calibration,
    run_calibration,
)
from lasercc.frontends.onnx.heap import release_freed_heap
from lasercc.frontends.onnx.load import (
    IN_MEMORY,
    SPLIT_ELEMENTS,
    FrontendError,
    check_weights_finite,
    initializers,
    input_specs,
    parse_shape_option,
    pin_shapes,
    tensor_dtypes,
)
from lasercc.frontends.onnx.lower import Lowerer, Options
from lasercc.frontends.onnx.registry import HANDLERS
from lasercc.frontends.onnx.smooth import DEFAULT_ALPHA
from lasercc.frontends.onnx.smooth import apply as smooth_apply
from lasercc.frontends.onnx.smooth import sites as smooth_sites
from lasercc.frontends.onnx.weights import load_split
from lasercc.frontends.onnx.widen import widen_half
from lasercc.ir.graph import Graph

Progress = Callable[[str, int, int], None]
QOPERATOR = {"QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearSoftmax", "QLinearConcat",
             "QLinearLeakyRelu"}


@dataclass
class FrontendResult:
    """The graph plus what tools need to relate it to the ONNX model."""

    graph: Graph
    tensor_map: dict[str, str]            # ONNX tensor -> IR value that carries its codes
    outputs: dict[str, dict]              # IR output -> {"onnx": name, "quantized": bool, "signed": bool}
    info: dict = field(default_factory=dict)


def detect_format(model: onnx.ModelProto) -> str:
    ops = {n.op_type for n in model.graph.node}
    if "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops:
        return "dynamic"
    if ops & QOPERATOR:
        return "qoperator"
    inits = {i.name for i in model.graph.initializer}
    act_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    if act_q:
        return "qdq"
    if "DequantizeLinear" in ops or any(i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
                                        for i in model.graph.initializer):
        return "weight-only"
    return "float"


def _vocab(model: onnx.ModelProto, weights: dict | None = None) -> dict[str, int]:
    """For integer inputs that index a constant table: the table's row count (for random calibration)."""
    inits = initializers(model, weights)
    source = {i.name: i.name for i in model.graph.input}  # tensor -> the graph input it is a Cast of
    for n in model.graph.node:
        if n.op_type == "Cast" and n.input[0] in source:
            source[n.output[0]] = source[n.input[0]]
    out: dict[str, int] = {}

    def bound(ids: str, table: str) -> None:
        if ids in source and table in inits:
            k = source[ids]
            out[k] = min(out.get(k, 1 << 62), int(inits[table].shape[0]))

    for n in model.graph.node:
        if n.op_type == "Gather" and len(n.input) == 2:
            bound(n.input[1], n.input[0])
        elif n.op_type == "EmbedLayerNormalization":  # com.microsoft: ids -> word table, segments -> segment table
            bound(n.input[0], n.input[2])
            if len(n.input) > 4 and n.input[1]:
                bound(n.input[1], n.input[4])
    return out


def import_onnx(model: str | os.PathLike | onnx.ModelProto, *, bits: int | None = None,
                calibration: str | os.PathLike | dict | None = None, input_shapes: dict | None = None,
                requant: str = "ort", progress: Progress | None = None,
                weight_bits: int | None = None, smooth: float | None = None,
                residual_bits: int | None = None, tensor_bits: dict[str, int] | None = None) -> FrontendResult:
    """Lower an ONNX model to a verified spiking IR graph (see the module docstring).

    ``smooth``: SmoothQuant's alpha for normalisation outputs read by linear layers (:mod:`smooth`), 0 off;
    ``residual_bits``: bits of residual-stream summands with outlier channels (``Options.residual_bits``),
    ``act_bits`` or less is off. Both default (None) to on (0.5 and 16) for float models at 8-bit
    activations and off otherwise: the outlier recipe for 8-bit spiking (notes/quantization.md).
    ``tensor_bits``: code widths of named float tensors (ONNX names), applied after every other rule.
    """
    if bits is not None and bits not in (8, 16):
        raise FrontendError(f"bits must be 8 or 16, got {bits}")
    if weight_bits is not None and not 2 <= weight_bits <= 16:
        raise FrontendError(f"weight_bits must be between 2 and 16, got {weight_bits}")
    if requant not in ("ort", "fixed"):
        raise FrontendError(f"requant must be 'ort' or 'fixed', got {requant!r}")
    if smooth is not None and not (0.0 <= float(smooth) < 1.0):
        raise FrontendError(f"smooth (SmoothQuant alpha) must be in [0, 1), 0 for off; got {smooth}")
    if residual_bits is not None and residual_bits not in (8, 16):
        raise FrontendError(f"residual_bits must be 8 or 16, got {residual_bits}")
    for t, b in (tensor_bits or {}).items():
        if not isinstance(b, int) or isinstance(b, bool) or not 2 <= b <= 16:
            raise FrontendError(f"tensor_bits[{t!r}] must be an integer from 2 to 16, got {b!r}")
    say = progress or (lambda stage, i, n: None)
    say("load", 0, 1)
    # Shape inference, calibration and lowering work on a light model whose large weights are arrays
    # (memory-mapped from the file when possible): peak memory stays near one copy of them (weights.py).
    split = load_split(model)
    m, weights = split.model, split.weights
    widen_notes = widen_half(m, weights, split.in_memory, IN_MEMORY)  # float16/bfloat16 -> float32 (widen.py)
    check_weights_finite(m, weights)  # NaN/inf weights: refused by name, never quantized to INT64_MIN
    split.release_pages()  # the scan read every mapped weight: its pages need not stay resident
    shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()}
    cal_shapes = calibration_shapes(m, shapes)
    m_cal = pin_shapes(m, cal_shapes) if cal_shapes else None  # a copy of the light model: kilobytes
    m = pin_shapes(m, shapes, copy=False)
    fmt = detect_format(m)
    specs = input_specs(m)
    for name, (dt, _) in specs.items():  # before calibration: onnxruntime takes no NumPy array of these
        if np.dtype(dt).kind not in "fiub":
            raise FrontendError(f"graph input {name!r} has dtype {np.dtype(dt)}; lasercc reads float16/32/64, "
                                "integer and bool inputs -- cast it to float32 in the model")
    cal_specs = input_specs(m_cal) if m_cal is not None else specs
    quantized = fmt in ("qdq", "qoperator", "dynamic")
    opts = Options(act_bits=bits or (16 if quantized else 8), internal_bits=16, requant=requant,
                   # float weights lasercc quantizes: as wide as the activations in a float model (8-bit weights
                   # alone cost a 16-bit result hundreds of steps); 8 where they are a weight-only model's int8
                   # weights (recovered exactly) or islands of a quantized model
                   weight_bits=weight_bits or (16 if fmt == "float" and bits == 16 else 8))
    outlier_recipe = fmt == "float" and opts.act_bits == 8  # where the defaults turn the recipe on
    alpha = float(smooth) if smooth is not None else (DEFAULT_ALPHA if outlier_recipe else 0.0)
    rbits = residual_bits if residual_bits is not None else (16 if outlier_recipe else None)
    opts.residual_bits = rbits if rbits and rbits > opts.act_bits else None
    opts.tensor_bits = dict(tensor_bits or {})
    data = read_calibration(calibration)
    generated = data is None
    if data is not None:  # before onnxruntime sees it: names, shapes, dtypes, NaN, ids within their tables
        check_inputs(data, cal_specs, vocab=_vocab(m, weights))
    if data is None:
        data = default_calibration(cal_specs, _vocab(m, weights))
    types = tensor_dtypes(m)
    static = _static_tensors(m)
    tensors = [t for t, dt in types.items() if dt.kind == "f" and t not in static]
    unknown = sorted(t for t in tensor_bits or {} if not ((t in types and t not in static)
                                                          or (t.endswith(".smooth") and t[:-7] in types)))
    if unknown:  # a typo would silently change nothing (NAME.smooth: the SmoothQuant copy of NAME)
        raise FrontendError(f"tensor_bits names tensor(s) that are not activations of the model: "
                            f"{', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}")
    low = Lowerer(m, Stats(), opts, weights=weights)
    low.prepare()  # unsupported ops fail here, before calibration runs
    keep = low.sample_requests()
    consts = initializers(m, weights) if alpha else {}
    sites = smooth_sites(m, set(consts), {k: tuple(v.shape) for k, v in consts.items()}) if alpha else []
    channels = {s.tensor for s in sites} | (low.residual_summands() if opts.residual_bits else set())
    stats = run_calibration(m_cal or m, data, cal_specs, tensors, keep, progress=lambda i, n: say("calibrate", i, n),
                            weights={k: weights[k] for k in split.in_memory}, external_dir=split.external_dir,
                            release=split.release_pages, tables=weights, channels=channels)
    stats.generated = generated
    smoothed = []
    if sites:  # the model changes (normalisation copies, scaled weights): lower it afresh, ranges derived
        smoothed, new_consts = smooth_apply(m, consts, sites, {s.tensor: r for s in sites
                                                               if (r := stats.channel_range(s.tensor)) is not None},
                                            alpha, stub=True)
        consts = {}
        if smoothed:
            weights.update({k: v for k, v in new_consts.items() if v.size >= SPLIT_ELEMENTS})  # their stubs' data
            for d in smoothed:
                stats.lo[d.copy], stats.hi[d.copy] = d.range
                if d.tensor in stats.kept:  # the copy's samples are the original's / s (a reader such as
                    # onnxruntime's fused Attention plans its internals from the samples of what it reads)
                    inv = (1.0 / d.scale).astype(np.float32)
                    stats.kept[d.copy] = [np.asarray(v) * inv for v in stats.kept[d.tensor]]
            low = Lowerer(m, Stats(), opts, weights=weights)
            low.prepare()
            low.sample_requests()
    release_freed_heap()  # the session's memory, before the lowering allocates the graph's constants (heap.py)
    low.stats = stats

    def lowered(i: int, n: int) -> None:
        split.release_pages()  # every 25 nodes: mapped weights already quantized leave the resident set
        release_freed_heap()  # and temporaries of the quantization (kept samples freed after their reader)
        say("lower", i, n)

    graph = low.run(progress=lowered)
    split.release_pages()
    info = {"format": fmt, "calibration_rows": stats.rows, "calibration": "generated" if generated else "given",
            "calibration_batch": 1 if cal_shapes else None,
            "act_bits": opts.act_bits, "internal_bits": opts.internal_bits, "weight_bits": opts.weight_bits,
            "norm_input_bits": opts.norm_input_bits, "smooth": alpha or None, "residual_bits": opts.residual_bits,
            "onnx_nodes": len(m.graph.node), "opset": {o.domain or "ai.onnx": o.version for o in m.opset_import}}
    if smoothed:
        info["smoothed"] = [d.describe() for d in smoothed]
    if low.widened:
        info["residual_widened"] = dict(low.widened)
    if tensor_bits:
        info["tensor_bits"] = dict(tensor_bits)
    notes = [*widen_notes, *stats.notes, *low.notes]
    if notes:
        info["notes"] = notes  # widening, calibration fallbacks, static DynamicQuantizeLinear scales
    for note in (*widen_notes, *stats.notes):  # and on the log: they change what the compiled model computes
        warnings.warn(note, stacklevel=2)
    return FrontendResult(graph, dict(low.tensor_map), dict(low.output_info), info)


def _static_tensors(m: onnx.ModelProto) -> set[str]:
    s = {i.name for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type in ("Constant", "Shape", "Size") or all(not i or i in s for i in n.input):
            s.update(o for o in n.output if o)
    return s


__all__ = ["HANDLERS", "FrontendError", "FrontendResult", "detect_format", "import_onnx", "parse_shape_option"]
