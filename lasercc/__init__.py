"""lasercc: a neuromorphic compiler from quantized transformers to bit-exact spiking programs.

Public API: IR (``Graph``, node kinds, ``parse_graph``/``print_graph``), shared semantics
(``bse_encode``, ``bse_decode``, ``requantize``), artifacts (``load``, ``Artifact``) and running
(``run_graph``).

The names are imported on first use (PEP 562): ``import lasercc.cli`` must not pull in NumPy,
onnx and onnxruntime before the CLI can catch a Ctrl-C (exit 130, no traceback) -- and a CLI
``--help`` should not pay for them either.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# onnxruntime's telemetry writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db} the
# moment it is imported (measured with onnxruntime 1.32): a compile must not write outside the paths it was
# given. The variable is read at its import, so it is set here, before any lasercc module imports it; an
# explicit value in the environment wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

_LAZY = {
    "compile": "lasercc.compiler",
    "ExecutionError": "lasercc.errors", "InputError": "lasercc.errors", "LasercError": "lasercc.errors",
    "ParseError": "lasercc.errors", "VerifyError": "lasercc.errors", "ArtifactError": "lasercc.errors",
    "ResourceError": "lasercc.errors",
    "Graph": "lasercc.ir", "parse_graph": "lasercc.ir", "print_graph": "lasercc.ir",
    "Artifact": "lasercc.ir.artifact", "load": "lasercc.ir.artifact",
    "RunResult": "lasercc.runtime", "run_graph": "lasercc.runtime",
    "bse_decode": "lasercc.semantics", "bse_encode": "lasercc.semantics", "requantize": "lasercc.semantics",
}

if TYPE_CHECKING:  # pragma: no cover
    from lasercc.compiler import compile  # noqa: A004
    from lasercc.errors import (
        ArtifactError,
        ExecutionError,
        InputError,
        LasercError,
        ParseError,
        ResourceError,
        VerifyError,
    )
    from lasercc.ir import Graph, parse_graph, print_graph
    from lasercc.ir.artifact import Artifact, load
    from lasercc.runtime import RunResult, run_graph
    from lasercc.semantics import bse_decode, bse_encode, requantize


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'lasercc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Artifact", "ArtifactError", "ExecutionError", "Graph", "InputError", "LasercError", "ParseError",
    "ResourceError", "RunResult", "VerifyError", "__version__", "bse_decode", "bse_encode", "compile", "load",
    "parse_graph", "print_graph", "requantize", "run_graph",
]
