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
