"""Executor-side caches of per-graph plans and per-constant-table copies, keyed by object identity.

Why here and not on the IR: the IR is immutable data; what a backend derives from it to run fast
(int64 or float copies of weights, column sums, a node's float32 accumulator plan, a walk
schedule) belongs to the backend. The caches outlive one executor object --
:func:`lasercc.runtime.run_graph` makes a fresh executor per call -- and die with the graph or
constant table they were made for. Keys are identities, not equality: a ``ConstantTable`` is a
Mapping (unhashable) and two equal graphs may hold different constant data.
"""

from __future__ import annotations

import weakref
from typing import Any


class IdentityCache:
    """One dict per live object, found by identity and dropped when the object is collected."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, dict[Any, Any]]] = {}

    def of(self, obj: object) -> dict[Any, Any]:
        """The cache dict of ``obj`` (made empty on first use)."""
        key = id(obj)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is obj:
            return entry[1]
        entries = self._entries

        def drop(_ref: weakref.ref, key: int = key) -> None:
            cur = entries.get(key)
            if cur is not None and cur[0] is _ref:
                del entries[key]

        d: dict[Any, Any] = {}
        entries[key] = (weakref.ref(obj, drop), d)
        return d

    def clear(self, obj: object) -> None:
        """Forget what is cached for ``obj`` (a one-pass run over weights too big to keep twice)."""
        self._entries.pop(id(obj), None)


#: per constant table: converted copies of constants (int64, float32/float64, column sums, tables)
CONSTANTS = IdentityCache()
#: per graph: per-node plans and walk schedules
GRAPHS = IdentityCache()


def cached(cache: dict[Any, Any], key: Any, make: Any) -> Any:
    """``cache[key]``, computed by ``make()`` on first use."""
    try:
        return cache[key]
    except KeyError:
        v = cache[key] = make()
        return v
