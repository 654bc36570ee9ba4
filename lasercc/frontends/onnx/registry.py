"""The handler table: which function lowers which ONNX operation.

Handlers are keyed by ``(domain, op_type)``: ``""`` is the standard ``ai.onnx`` domain, so the
standard opset-23 ``Attention`` and onnxruntime's ``com.microsoft`` ``Attention`` are different
operations with different handlers. A handler receives the :class:`~lasercc.frontends.onnx.lower.Lowerer`,
the node and its input values (:mod:`values` records: one of the three value classes -- constant, exact
integer data, activation codes) and returns one value per output.

Handler modules (``ops_*.py``) register here and import only this module and the shared
ones (:mod:`common`, :mod:`cores`, :mod:`values`, :mod:`emit`); they never import each other, so a new op
is one function in one module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import onnx

if TYPE_CHECKING:
    from lasercc.frontends.onnx.lowering_api import LowererAPI as Lowerer

Handler = Callable[["Lowerer", onnx.NodeProto, list], list]
HANDLERS: dict[tuple[str, str], Handler] = {}
# (domain, op type) -> indices of the inputs whose calibration *values* its handler reads (ASNC histograms,
# decomposition ranges). Mul, Div and fused patterns are handled in Lowerer.sample_requests.
SAMPLED_INPUTS: dict[tuple[str, str], tuple[int, ...]] = {}
MS = "com.microsoft"
HINT = ("hint: these ops have no spiking lowering yet; export with a different opset/op set, replace them in the "
        "model, or add a handler with lasercc.frontends.onnx.registry.register")


def domain_of(n: onnx.NodeProto) -> str:
    """The node's domain with ``ai.onnx`` spelled ``""``."""
    return "" if n.domain in ("", "ai.onnx") else n.domain


def register(*op_types: str, domain: str = "", sampled: tuple[int, ...] | None = None,
             replace: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler for ``op_types`` in ``domain`` (``sampled``: see :data:`SAMPLED_INPUTS`).

    One handler per operation: registering a second one for the same (domain, op) is an error unless
    ``replace=True`` (a plugin overriding a built-in says so), so two modules can never silently race on
    import order."""
    def deco(fn: Handler) -> Handler:
        for t in op_types:
            old = HANDLERS.get((domain, t))
            if old is not None and old is not fn and not replace:
                raise ValueError(f"a handler for ({domain or 'ai.onnx'}, {t}) is already registered by "
                                 f"{old.__module__}.{old.__name__}; pass replace=True to override it")
            HANDLERS[(domain, t)] = fn
            if sampled is not None:
                SAMPLED_INPUTS[(domain, t)] = sampled
        return fn

    return deco


# Functions ``Lowerer.prepare`` calls after the initializers are known and before the supported-op check:
# prepare-time rewrites such as chains.find_chains (lower.py does not import them). Run by stage, then in
# registration order: fusions of several ops (stage 0) claim their nodes before the elementwise chains (stage 1)
# group what is left, whatever order the modules were imported in.
PREPARE_HOOKS: list[Callable[[Lowerer], None]] = []
_HOOK_STAGE: dict[int, int] = {}


def prepare_hook(fn: Callable[[Lowerer], None] | None = None, *, stage: int = 0) -> Callable:
    """Register ``fn(lowerer)`` to run in ``Lowerer.prepare`` (see :data:`PREPARE_HOOKS`); as ``@prepare_hook``
    or ``@prepare_hook(stage=1)``."""
    def deco(f: Callable[[Lowerer], None]) -> Callable[[Lowerer], None]:
        _HOOK_STAGE[id(f)] = stage
        PREPARE_HOOKS.append(f)
        PREPARE_HOOKS.sort(key=lambda h: _HOOK_STAGE.get(id(h), 0))  # stable: registration order within a stage
        return f

    return deco if fn is None else deco(fn)


# Functions ``Lowerer.out_type`` asks for the least width of a calibrated float tensor, ``(lowerer, tensor) -> bits``
# (0: no opinion): precision.py's plan of what steep tables need (lower.py does not import it).
WIDTH_HOOKS: list[Callable[[Lowerer, str], int]] = []


def width_hook(fn: Callable[[Lowerer, str], int]) -> Callable[[Lowerer, str], int]:
    """Register ``fn(lowerer, tensor) -> bits`` (see :data:`WIDTH_HOOKS`)."""
    WIDTH_HOOKS.append(fn)
    return fn


def handler(n: onnx.NodeProto) -> Handler | None:
    return HANDLERS.get((domain_of(n), n.op_type))


def sampled_inputs(n: onnx.NodeProto) -> tuple[int, ...]:
    return SAMPLED_INPUTS.get((domain_of(n), n.op_type), ())


def attr(n: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of attribute ``name`` of ``n`` (``default`` when absent)."""
    for a in n.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


for _op in ("Softmax", "LayerNormalization", "Erf", "Sigmoid", "Tanh", "Exp", "Sqrt", "Reciprocal", "Gelu", "Pow",
            "Relu", "Softplus", "Clip", "LeakyRelu", "HardSigmoid", "Abs", "Sin", "Cos"):
    SAMPLED_INPUTS[("", _op)] = (0,)
SAMPLED_INPUTS[(MS, "FastGelu")] = (0,)
SAMPLED_INPUTS[(MS, "Gelu")] = (0,)
