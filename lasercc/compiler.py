"""``lasercc.compile``: ONNX model -> :class:`~lasercc.ir.artifact.Artifact` for a target.

Frontend (:func:`lasercc.frontends.onnx.import_onnx`) -> optional pass pipeline (``lasercc.passes``,
when present) -> target packaging. Targets share one graph: ``numpy`` and ``torch`` run it as is;
``loihi2`` defaults to hardware-realizable ``fixed`` requantization and, when the Lava backend is
installed, adds its generated package under ``lava/``. The manifest records versions, the target,
every option, the detected ONNX format and calibration, and the passes that ran.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from lasercc.errors import LasercError, boundary
from lasercc.ir.artifact import Artifact

if TYPE_CHECKING:
    import onnx

TARGETS = ("numpy", "torch", "loihi2")

# What ``passes=None`` runs per target. numpy/torch keep the exact lookup-table nonlinearities
# (the graph is the quantized network); loihi2 must fit neuro-cores, so ASNC tables are fitted to
# 32 adaptive segments, exactly-fusable Soma->ASNC pairs are fused, and the graph is partitioned.
DEFAULT_PASSES = {
    "numpy": "dce",
    "torch": "dce",
    "loihi2": "dce,asnc-fit,fuse-asnc,dce,partition",
}


class Progress:
    """Progress of slow steps on stderr: a live line on a terminal, one line per finished step otherwise."""

    def __init__(self, enabled: bool = True, stream=None):  # noqa: ANN001
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.stage: str | None = None
        self.t0 = time.perf_counter()

    def __call__(self, stage: str, i: int, n: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.finish()
            self.stage, self.t0 = stage, time.perf_counter()
        if self.tty:
            width = 24
            done = int(width * i / max(n, 1))
            self.stream.write(f"\r  {stage:<10} [{'#' * done}{'.' * (width - done)}] {i}/{n}")
            self.stream.flush()

    def finish(self) -> None:
        if not self.enabled or self.stage is None:
            return
        dt = time.perf_counter() - self.t0
        self.stream.write(("\r" if self.tty else "") + f"  {self.stage:<10} done in {dt:.2f} s" + " " * 20 + "\n")
        self.stream.flush()
        self.stage = None


def _versions() -> dict[str, str]:
    import numpy as np
    import onnx

    from lasercc import __version__

    out = {"lasercc": __version__, "onnx": onnx.__version__, "numpy": np.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def _run_passes(graph, passes, progress: Progress):  # noqa: ANN001, ANN202
    try:
        from lasercc.passes import PassManager
    except ImportError:
        raise LasercError("passes were requested but lasercc.passes is not available") from None
    pm = PassManager(passes, on_record=lambda r: progress("passes", 1, 1))
    graph, records = pm.run(graph)
    extra: dict[str, str] = {}
    for r in records:  # the last partition's placement goes into the artifact as partition.json
        part = r.info.get("partition") if isinstance(r.info, dict) else None
        if part is not None and hasattr(part, "extra_files"):
            extra = dict(part.extra_files())
    return graph, [r.to_json() if hasattr(r, "to_json") else str(r) for r in records], extra


def _report(graph, records: list) -> dict[str, Any]:  # noqa: ANN001
    """The human-facing compile report (``report.json``): structure, latency, what each pass did."""
    from collections import Counter

    from lasercc.backends.stats import critical_path

    return {
        "graph": graph.name,
        "nodes": dict(sorted(Counter(n.op for n in graph.nodes).items())),
        "latency_steps": critical_path(graph),
        "passes": [{k: r.get(k) for k in ("name", "changed", "seconds", "info")} if isinstance(r, dict) else r
                   for r in records],
    }


def _lava_files(graph) -> tuple[dict[str, str], str | None]:  # noqa: ANN001
    """The artifact's ``lava/`` package, or no files and the reason when the Lava simulator cannot hold the
    graph (e.g. a layer whose synapse matrix is too large for Lava's CPU simulator): the partition, report
    and NumPy/torch runs do not depend on it, so the compile still succeeds and says why."""
    try:
        from lasercc.backends.lava.emit import emit_lava_package
    except ImportError:
        return {}, "the Lava backend is not installed"
    try:
        return {f"lava/{k}": v for k, v in emit_lava_package(graph).items()}, None
    except LasercError as e:
        return {}, str(e)


@boundary
def compile(model: str | os.PathLike | onnx.ModelProto, *, target: str = "numpy", bits: int | None = None,  # noqa: A001
            calibration: str | os.PathLike | dict | None = None, input_shapes: dict[str, Any] | None = None,
            requant: str | None = None, passes: str | list | None = None, progress: bool = True,
            weight_bits: int | None = None, max_elements: int | None = None, smooth: float | None = None,
            residual_bits: int | None = None, tensor_bits: dict[str, int] | None = None) -> Artifact:
    """Compile an ONNX model to a spiking artifact.

    ``bits``: activation bits for float models and float islands (8 or 16; default 8 for float models,
    16 for islands of quantized models). ``calibration``: ``.npz`` path or dict of input arrays
    (rows stacked on axis 0); random inputs with a warning when absent. ``input_shapes``: pins
    dynamic dims, e.g. ``{'ids': (1, 16)}``. ``requant``: ``'ort'`` (bit-exact with onnxruntime) or
    ``'fixed'`` (integer multiplier and shift; the default for ``loihi2``). ``passes``: a pipeline
    spec for :mod:`lasercc.passes` (e.g. ``"fold,dce"``); ``None`` runs the target's default
    (:data:`DEFAULT_PASSES`), ``""`` runs none. ``weight_bits``: bits (2-16, symmetric, per output channel)
    of the float weights lasercc quantizes itself (a model's own integer weights are kept as they are);
    default 16 for a float model at ``bits=16``, else 8 -- and 8 for ``loihi2``, whose synaptic weights are
    at most 8 bits.
    ``smooth`` and ``residual_bits``: the outlier recipe for 8-bit activations (notes/quantization.md) --
    SmoothQuant's alpha for normalisation outputs that feed linear layers (their outlier channels move into
    the constant weights; 0 turns it off) and the bits of residual-stream summands that hold outlier
    channels (8 turns it off). Default (None): 0.5 and 16 for a float model at ``bits=8``, off otherwise.
    ``tensor_bits``: code widths (2-16) of named float tensors of the model, applied after every rule (measure
    where the 8-bit error comes from, or pin the tensors a measurement showed need 16 bits).
    ``max_elements``: raises the size limit of one declared tensor (:mod:`lasercc.limits`, default 2^31
    elements). Call ``.save(dir)`` on the result.
    """
    from lasercc.limits import override

    with override(max_elements=max_elements):
        return _compile(model, target=target, bits=bits, calibration=calibration, input_shapes=input_shapes,
                        requant=requant, passes=passes, progress=progress, weight_bits=weight_bits, smooth=smooth,
                        residual_bits=residual_bits, tensor_bits=tensor_bits)


def _compile(model: str | os.PathLike | onnx.ModelProto, *, target: str, bits: int | None,
             calibration: str | os.PathLike | dict | None, input_shapes: dict[str, Any] | None,
             requant: str | None, passes: str | list | None, progress: bool, weight_bits: int | None,
             smooth: float | None = None, residual_bits: int | None = None,
             tensor_bits: dict[str, int] | None = None) -> Artifact:
    from lasercc.frontends.onnx import import_onnx
    from lasercc.frontends.onnx.load import check_model_path

    if target not in TARGETS:
        raise LasercError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if not isinstance(model, str | os.PathLike) and type(model).__name__ != "ModelProto":
        raise LasercError(f"model must be a path or an onnx.ModelProto, got {type(model).__name__}")
    if isinstance(model, str | os.PathLike):
        check_model_path(model)
    if passes is None:
        passes = DEFAULT_PASSES[target]
    if passes:  # a bad pipeline spec fails now, not after minutes of calibration and lowering
        try:
            from lasercc.passes.base import parse_pipeline
        except ImportError:
            parse_pipeline = None
        if parse_pipeline is not None:
            parse_pipeline(passes)
    rq = requant or ("fixed" if target == "loihi2" else "ort")
    if weight_bits is None and target == "loihi2":
        weight_bits = 8  # Loihi 2 synapses hold 8-bit weights (Lava Dense); wider ones need the exact-synapse process
    prog = Progress(progress)
    t0 = time.perf_counter()
    try:
        res = import_onnx(model, bits=bits, calibration=calibration, input_shapes=input_shapes, requant=rq,
                          progress=prog, weight_bits=weight_bits, smooth=smooth, residual_bits=residual_bits,
                          tensor_bits=tensor_bits)
        graph = res.graph
        records: list = []
        extra: dict[str, str | bytes] = {}
        if passes:
            graph, records, part_files = _run_passes(graph, passes, prog)
            extra.update(part_files)
        lava_skipped = None
        if target == "loihi2":
            prog("lava", 0, 1)
            files, lava_skipped = _lava_files(graph)
            extra.update(files)
    finally:
        prog.finish()
    src = model if isinstance(model, str | os.PathLike) else "<ModelProto>"
    manifest = {
        "versions": _versions(), "target": target, "source": str(src),
        "options": {"bits": bits, "requant": rq, "smooth": smooth, "residual_bits": residual_bits,
                    "tensor_bits": dict(tensor_bits or {}),
                    "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
                    "calibration": calibration if isinstance(calibration, str | os.PathLike) or calibration is None
                    else "<dict>", "passes": passes if isinstance(passes, str | None) else [str(p) for p in passes]},
        "frontend": res.info, "onnx_outputs": res.outputs, "passes_run": records,
        "compile_seconds": round(time.perf_counter() - t0, 3),
        "lava": None if target != "loihi2" else {"emitted": lava_skipped is None, "reason": lava_skipped},
        "nodes": len(graph.nodes),
    }
    manifest["options"]["calibration"] = str(manifest["options"]["calibration"]) if calibration is not None else None
    if lava_skipped is not None and progress:
        print(f"lasercc compile: warning: no lava/ package in the artifact: {lava_skipped}", file=sys.stderr)
    extra["report.json"] = json.dumps(_report(graph, records), indent=2, sort_keys=True, default=str) + "\n"
    art = Artifact(graph=graph, manifest=manifest, extra_files=extra)
    art.tensor_map = res.tensor_map  # type: ignore[attr-defined] - ONNX tensor -> IR value (tests, tools)
    return art
