"""A user-written pass: widen the output codes of chosen layers (trade timesteps for precision).

Registered with ``@register_pass`` under the name ``widen``; run it from Python::

    from lasercc.passes import PassManager
    import examples.custom_pass  # registers "widen"
    graph, records = PassManager("widen{layers=[fc1],extra_bits=4}").run(graph)

or from the command line without registering anything, by module path::

    lasercc compile model.onnx --passes "examples.custom_pass:WidenLayers{layers=[fc1],extra_bits=4}"

A Soma's output code of N bits becomes N+e bits with the same real range: scale / 2^e, zero point
x 2^e. The Soma's requantization then keeps e more fractional bits, at the cost of e more
timesteps for every consumer. Consumers whose arithmetic reads the code width (other Somas, ASNC
tables) would need refitting, so this example only widens layers whose consumers are graph
outputs -- a pass must leave a graph that verifies, and the PassManager checks it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Soma
from lasercc.ir.types import CodeType
from lasercc.passes.base import Pass, PassResult, option, register_pass


@register_pass
@dataclass(frozen=True)
class WidenLayers(Pass):
    """Raise the output bit width of chosen Soma layers (more precision, more timesteps)."""

    name: ClassVar[str] = "widen"
    layers: tuple[str, ...] = option((), "names of the Soma nodes to widen (empty: every output Soma)")
    extra_bits: int = option(4, "bits to add to each chosen layer's output code")

    def run(self, graph: Graph) -> PassResult:
        consumers = graph.users()  # value -> reading nodes (lasercc.ir.analysis), cached on the graph
        chosen = set(self.layers) or set(graph.outputs)
        nodes, widened = [], []
        for n in graph.nodes:
            t = n.type
            if (n.name in chosen and isinstance(n, Soma) and isinstance(t, CodeType) and t.per_tensor
                    and not consumers.get(n.name) and t.bits + self.extra_bits <= 32):
                e = self.extra_bits
                n = n.replace(type=CodeType.per_tensor_type(t.bits + e, t.scale[0] / 2**e, t.zero_point[0] << e,
                                                            tuple(t.shape)))
                widened.append(n.name)
            nodes.append(n)
        if not widened:
            return PassResult(graph, False, {"widened": []})
        return PassResult(graph.replace(nodes=tuple(nodes)), True, {"widened": widened, "extra_bits": self.extra_bits})
