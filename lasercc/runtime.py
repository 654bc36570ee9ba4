"""Running a graph on user data: the public facade of :mod:`lasercc.backends.run`.

The implementation (input validation, batch chunking, dequantized outputs, statistics) lives at the
backends level so that modules below this layer can run a graph without importing upward
(tests/test_layers.py); users and tests keep importing ``lasercc.runtime``. Importing this module also
registers :func:`run_graph` as the runner behind :meth:`lasercc.ir.artifact.Artifact.run`.
"""

from __future__ import annotations

from lasercc.backends.run import (  # noqa: F401 - re-exported
    SATURATION_WARN,
    STACK_CHUNKS,
    RunResult,
    _convert,
    _dequantize,
    _validate,
    run_graph,
    validate_inputs,
    validate_shapes,
)
from lasercc.ir.artifact import register_runner

register_runner(run_graph)
