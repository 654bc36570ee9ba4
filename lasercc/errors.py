"""Errors a user can act on. The CLI prints these as one line and exits with status 2."""

from __future__ import annotations


class LasercError(Exception):
    """Base class for every error that is the user's input, not a bug in lasercc."""


class VerifyError(LasercError):
    """A malformed graph: names the node and shows it in IR text."""

    def __init__(self, message: str, node_text: str | None = None, node_name: str | None = None):
        self.node_name = node_name
        self.node_text = node_text
        full = message if node_text is None else f"{message}\n    {node_text}"
        super().__init__(full)


class ParseError(LasercError):
    """Bad `.lir` text: carries line, column and the offending token."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None, token: str | None = None):
        self.line, self.column, self.token = line, column, token
        where = "" if line is None else f"line {line}, column {column}: "
        super().__init__(f"{where}{message}")


class InputError(LasercError):
    """Inputs that do not match the graph (names, shapes, dtypes) or unreadable files."""


class ExecutionError(LasercError):
    """A backend failed on a node; the message carries the node's IR text."""


class ArtifactError(LasercError):
    """An artifact directory that is torn, edited, of a newer format, or being written by another process."""


class ResourceError(LasercError):
    """A request over a size limit (declared shapes, rows, segments) or more memory than the machine has."""


def translate(exc: BaseException) -> LasercError | None:
    """The library error for an exception caused by the environment or the input, else None.

    Why one function: every entry point (the CLI verbs, ``lasercc.compile``/``load``/``run_graph``)
    must turn what the operating system, onnxruntime, pydantic or the allocator raise into one line a
    user can act on -- naming the file -- while a genuine bug (IndexError, AssertionError, ...) stays
    what it is: a bug, reported as such, not disguised as bad input.
    """
    if isinstance(exc, LasercError):
        return exc
    if isinstance(exc, MemoryError):
        what = f" ({exc})" if str(exc) else ""
        return ResourceError(f"out of memory{what}; use smaller inputs (fewer rows, shorter sequences) or a "
                             "machine with more memory")
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        why = exc.strerror or str(exc) or type(exc).__name__
        if exc.filename2 is not None:
            where = f"{where} -> {exc.filename2}"
        return InputError(f"{where}: {why}" if where else why)
    mod = type(exc).__module__ or ""
    if mod.startswith("onnxruntime"):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return InputError(f"onnxruntime failed: {first}")
    if mod.startswith(("pydantic", "pydantic_core")):
        errs = getattr(exc, "errors", None)
        detail = str(exc).strip().splitlines()
        if callable(errs):
            try:
                e0 = errs()[0]
                detail = [f"{'.'.join(map(str, e0.get('loc', ())))}: {e0.get('msg')}"]
            except (IndexError, KeyError, TypeError, AttributeError):  # best effort for the message only
                pass
        return InputError(f"invalid value: {detail[0] if detail else type(exc).__name__}")
    return None


def boundary(fn):  # noqa: ANN001, ANN201 - a decorator keeping fn's signature
    """Re-raise what :func:`translate` recognises as a :class:`LasercError` (the original as its cause)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except LasercError:
            raise
        except Exception as e:  # noqa: BLE001 - translated or re-raised unchanged
            err = translate(e)
            if err is None:
                raise
            raise err from e

    return wrapper
