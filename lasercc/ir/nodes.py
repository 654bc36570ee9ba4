"""The node kinds of the spiking IR (re-exported from :mod:`lasercc.ir.kinds`, their home).

Every node is a small frozen, validated record (pydantic). A node defines exactly one SSA value,
named like the node; ``inputs`` name the values it reads; ``type`` is the type of its result.
Weights and tables are never inline: fields listed in ``const_fields`` name entries of the
graph's constant table. ``check`` verifies a node against its input types and the constants and
raises ``ValueError`` with a plain message; :func:`lasercc.ir.verify.verify` adds the node's text.
Each kind also declares its traits and cost rules (latency, statistics, GPU work, core footprint).

Semantics (what each node computes, to the bit) are in ``docs/contract.md`` section 3 and are
implemented once in :mod:`lasercc.semantics`; this module only describes structure. Everything
:mod:`lasercc.ir.kinds` exports is re-exported here, so a new kind needs no line in this file.
"""

from lasercc.ir.kinds import *  # noqa: F403  (every kind and the shared names; see lasercc.ir.kinds.__all__)
from lasercc.ir.kinds import __all__  # noqa: F401
