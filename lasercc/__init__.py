"""lasercc: a neuromorphic compiler from quantized transformers to bit-exact spiking programs.

Public API: IR (``Graph``, node kinds, ``parse_graph``/``print_graph``), shared semantics
(``bse_encode``, ``bse_decode``, ``requantize``), artifacts (``load``, ``Artifact``) and running
(``run_graph``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from lasercc.compiler import compile  # noqa: E402, A004
from lasercc.errors import ExecutionError, InputError, LasercError, ParseError, VerifyError  # noqa: E402
from lasercc.ir import Graph, parse_graph, print_graph  # noqa: E402
from lasercc.ir.artifact import Artifact, load  # noqa: E402
from lasercc.runtime import RunResult, run_graph  # noqa: E402
from lasercc.semantics import bse_decode, bse_encode, requantize  # noqa: E402

__all__ = [
    "Artifact", "ExecutionError", "Graph", "InputError", "LasercError", "ParseError", "RunResult", "VerifyError",
    "__version__", "bse_decode", "bse_encode", "compile", "load", "parse_graph", "print_graph", "requantize",
    "run_graph",
]
