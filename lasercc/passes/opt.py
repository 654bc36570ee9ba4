"""``opt``: run a pass pipeline on IR text and print the result -- ``lasercc opt IN.lir --passes ...``.

Why: the text form is the debugging interface (docs/contract.md section 5), so a pass should be testable the
way MLIR's ``mlir-opt`` tests are: a small ``.lir`` input, a pipeline, and the expected output text
(``tests/passes/lir/``), without building graphs in Python or running a backend. Constants without
data stay shape-only (:class:`~lasercc.ir.graph.ConstSpec`); passes that need weight values skip
such nodes, and passes that only restructure the graph work on the text alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lasercc.ir.graph import Graph
from lasercc.ir.printer import print_graph
from lasercc.ir.text import parse_graph
from lasercc.passes.base import Pass, PassManager, PassRecord


def opt_graph(graph: Graph, passes: str | Sequence[str | Pass], verify: bool = True) -> tuple[Graph, list[PassRecord]]:
    """Run ``passes`` (pipeline text or pass objects) on ``graph``, verifying after each pass."""
    return PassManager(passes, verify=verify).run(graph)


def opt_text(text: str, passes: str | Sequence[str | Pass], constants: Mapping[str, np.ndarray] | None = None,
             verify: bool = True) -> str:
    """Parse ``.lir`` text (``constants`` gives array data for declared constants), run the pipeline, and
    return the printed result. Parse and verification errors name the line or node at fault."""
    graph = parse_graph(text, dict(constants) if constants else None)
    out, _ = opt_graph(graph, passes, verify=verify)
    return print_graph(out)
