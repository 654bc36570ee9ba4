"""What handlers and their shared helpers need of the lowering driver, as a :class:`typing.Protocol`.

``common.py`` and ``registry.py`` take the driver (:class:`lasercc.frontends.onnx.lower.Lowerer`) as an
argument but must not import ``lower`` -- ``lower`` imports them, and even an import under
``TYPE_CHECKING`` would close an import cycle (tests/test_layers.py). They annotate with
:class:`LowererAPI` instead; ``Lowerer`` satisfies it structurally. List here only what those two
modules use; handlers in ``ops_*`` (which ``lower`` does not import) still name ``Lowerer`` itself.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import onnx

from lasercc.frontends.onnx.calibrate import Stats
from lasercc.frontends.onnx.emit import Builder
from lasercc.frontends.onnx.values import Val
from lasercc.ir.types import CodeType


class LowererAPI(Protocol):
    """The lowering driver as the shared helpers see it (attributes and methods of ``Lowerer``)."""

    model: onnx.ModelProto
    stats: Stats
    opts: Any  # lower.Options (defined beside Lowerer)
    env: dict[str, Val]
    b: Builder
    consumers: dict[str, list[onnx.NodeProto]]

    def const_value(self, v: Val | None, what: str = "constant") -> np.ndarray: ...

    def q_type(self, scale: Val, zp: Val | None, shape: tuple[int, ...],
               dtype: np.dtype | None = None) -> tuple[CodeType, bool]: ...

    def q_params_of(self, node: onnx.NodeProto) -> tuple | None: ...

    def out_type(self, tensor: str, shape: tuple[int, ...], bits: int | None = None) -> CodeType: ...
