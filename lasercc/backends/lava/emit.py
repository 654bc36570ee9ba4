"""The ``lava/`` package of a ``--target loihi2`` artifact: a runnable entry plus the lowered network.

``emit_lava_package(graph)`` returns path *inside the artifact's* ``lava/`` *directory* -> file content
(the compiler prefixes ``lava/``). Run the artifact with

    .venv-lava/bin/python OUT/lava --input x.npz --output y.npz

(``python OUT/lava`` executes ``lava/__main__.py``). There is deliberately no ``lava/__init__.py``: a
package named ``lava`` importable from the artifact directory would shadow lava-nc itself.
``network.json`` describes every process, its schedule and which synapse (``Dense`` or ``IntDense``)
carries each slot, so the plan can be reviewed without Lava installed.
"""

from __future__ import annotations

import json

from lasercc.backends.lava.lower import lower
from lasercc.ir.graph import Graph

MAIN = '''"""Run this artifact in Lava's fixed-point simulator: python <artifact>/lava --input x.npz"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]  # never shadow lava-nc


def _main():
    from lasercc.backends.lava.run import main

    return main([os.path.dirname(HERE), *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(_main())
'''

README = """Lava (lava-nc 0.10.0) program for this artifact.

    .venv-lava/bin/python <artifact>/lava --input x.npz --output y.npz --stats stats.json

network.json: the lowered network (processes, emit/fire steps, slots and their synapses, period per sample).
Processes and bit-accurate models: lasercc.backends.lava.procs; lowering: lasercc.backends.lava.lower.
"""


def emit_lava_package(graph: Graph) -> dict[str, str]:
    """Files of the artifact's ``lava/`` directory, named relative to it (raises LasercError if the graph
    cannot be lowered)."""
    plan = lower(graph)
    return {"__main__.py": MAIN, "README.txt": README, "network.json": json.dumps(plan.summary(), indent=1) + "\n"}
