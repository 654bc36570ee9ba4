"""Size limits checked before allocating: a declared shape, a file header or an option can ask for any
amount of memory or time, and the allocator's MemoryError (or a 35-minute fit) is no answer to a user.

Each limit has a default that no model we know of comes near, an environment variable and, where a user
could legitimately need more, an option (``lasercc compile --max-elements``, ``compile(max_elements=)``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

from lasercc.errors import InputError


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or not v.strip():
        return default
    try:
        n = int(float(v))
    except ValueError:
        raise InputError(f"{name}={v!r} is not a number") from None
    if n < 1:
        raise InputError(f"{name}={v!r} must be positive")
    return n


@dataclass(frozen=True)
class Limits:
    """``max_elements``: elements of one declared tensor (a graph input's pinned shape, an initializer's
    dims); 2^31 by default (8 GiB of float32). ``max_array_bytes``: bytes of one array an ``.npz``
    header declares (16 GiB). ``max_segments``: segments of one fitted ASNC table (4096; the exact
    lookup table, without ``asnc-fit``, is the route to more)."""

    max_elements: int = 1 << 31
    max_array_bytes: int = 16 << 30
    max_segments: int = 4096


_current: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("lasercc_limits", default=None)


def current() -> Limits:
    """The limits in force: an :func:`override` if one is active, else defaults and environment
    (``LASERCC_MAX_ELEMENTS``, ``LASERCC_MAX_ARRAY_BYTES``, ``LASERCC_MAX_SEGMENTS``)."""
    lim = _current.get()
    if lim is not None:
        return lim
    d = Limits()
    return Limits(max_elements=_env_int("LASERCC_MAX_ELEMENTS", d.max_elements),
                  max_array_bytes=_env_int("LASERCC_MAX_ARRAY_BYTES", d.max_array_bytes),
                  max_segments=_env_int("LASERCC_MAX_SEGMENTS", d.max_segments))


@contextlib.contextmanager
def override(**changes: int | None) -> Iterator[Limits]:
    """Raise (or lower) limits for the calls inside the block; ``None`` values keep the current one."""
    lim = replace(current(), **{k: int(v) for k, v in changes.items() if v is not None})
    token = _current.set(lim)
    try:
        yield lim
    finally:
        _current.reset(token)


def check_elements(n: int, what: str, hint: str = "--max-elements N (Python: max_elements=N)") -> None:
    """Refuse a tensor of ``n`` elements over :attr:`Limits.max_elements` (named by ``what``)."""
    from lasercc.errors import ResourceError

    limit = current().max_elements
    if n > limit:
        raise ResourceError(f"{what} has {n:,} elements, over the limit of {limit:,}; if that is really "
                            f"intended, raise it with {hint}")
