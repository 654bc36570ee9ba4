"""Ctrl-C that always ends a CLI run: exit 130 at any moment, and never a run that goes on.

Python turns SIGINT into a ``KeyboardInterrupt`` raised between bytecodes of the main thread, once. Native
code that calls back into Python may swallow it: an extension that clears every error (CPython's
``PyErr_Clear`` paths, an interrupted C-extension import that resurfaces as ``ImportError`` -- observed
with NumPy's ``_multiarray_umath``: "PyCapsule_Import could not import module datetime"). The signal
is then gone and the run goes on: a ``simulate`` of 64k rows in spikes mode "did not exit within 60 s"
after its Ctrl-C (issue 17), because it ran for minutes more, not because anything waited on a lock.

So the CLI installs :func:`install`'s handler while a verb runs:

* the first SIGINT records that it came (:func:`received`) and raises ``KeyboardInterrupt`` as usual;
* long loops call :func:`check` at safe points (``run_graph`` per batch): an interrupt that native code
  swallowed is raised again there, so the run stops within one batch;
* the CLI maps any exception that surfaces after a SIGINT (the ``ImportError`` above) to exit 130;
* a second SIGINT restores the default action and re-sends the signal: the process ends at once (status
  "killed by SIGINT", which shells report as 130), whatever native code it is stuck in.

Library callers that do not install it keep Python's default behaviour; :func:`check` is then a no-op.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

_state = {"received": False}


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["received"]:  # the first was lost, or a cleanup is stuck: end the process now
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return
    _state["received"] = True
    raise KeyboardInterrupt


def install() -> Any:
    """Install the handler (main thread only; elsewhere nothing changes) and clear the flag; returns the
    previous handler for :func:`restore` (None when nothing was installed)."""
    _state["received"] = False
    try:
        return signal.signal(signal.SIGINT, _handler)
    except (ValueError, OSError):  # not the main thread of the main interpreter
        return None


def restore(previous: Any) -> None:
    """Put back the handler :func:`install` replaced (in-process callers such as tests keep theirs)."""
    if previous is not None:
        try:
            signal.signal(signal.SIGINT, previous)
        except (ValueError, OSError):  # pragma: no cover
            pass


def exit_interrupted(status: int) -> None:
    """End the process now with ``status`` (130), after flushing stdout/stderr and skipping interpreter shutdown.

    Why: CPython remembers a KeyboardInterrupt that escaped code it ran through its own entry points (a flag in
    ``Py_RunMain``), even when lasercc caught it later; at exit it then kills itself with SIGINT instead of
    returning 130 -- observed about once in ten Ctrl-Cs during ``simulate``. Every ``finally`` of the run has
    already executed (artifact locks released, partial files removed, Ray shut down) when this is called.
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(status)


def received() -> bool:
    """Whether a SIGINT arrived since :func:`install` (whatever became of its KeyboardInterrupt)."""
    return _state["received"]


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived: call it between units of long work."""
    if _state["received"]:
        raise KeyboardInterrupt
