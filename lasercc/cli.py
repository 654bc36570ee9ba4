"""The ``lasercc`` command line. Each verb lives in ``lasercc/commands/<verb>.py`` and defines
``register(subparsers)``; its handler receives the parsed arguments and returns an exit status.

This is the one error boundary of the command line. Exit statuses:

* 0 -- success;
* 2 -- the input, the environment or a limit: a :class:`~lasercc.errors.LasercError`, and what
  :func:`~lasercc.errors.translate` maps to one (OSError naming its file, onnxruntime and pydantic
  errors, MemoryError). One line on stderr: ``lasercc VERB: error: ...``;
* 3 -- a bug in lasercc (any other exception): one line naming the exception, asking for a report;
* 130 -- Ctrl-C, at any moment (imports included: the heavy modules load inside :func:`main`; a Ctrl-C that
  native code swallowed or turned into another error still ends the run, see :mod:`lasercc.interrupts`);
* 141 -- stdout closed early (``lasercc inspect ART | head -1``): quiet, like other Unix tools.

``LASERCC_DEBUG=1`` re-raises instead, with the full traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lasercc import __version__

# verbs in the order --help lists them; a module that does not exist yet is skipped
VERBS = ("compile", "simulate", "eval", "profile", "inspect", "passes", "opt")
EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED, EXIT_PIPE = 2, 3, 130, 141


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lasercc",
        description="lasercc: compile quantized transformers (ONNX) to bit-exact spiking programs and run them "
                    "on NumPy, torch or Lava (Loihi 2).",
        epilog="Exit status: 0 ok, 2 bad input or environment (one line on stderr), 3 internal error (a bug), "
               "130 interrupted. LASERCC_DEBUG=1 shows tracebacks.",
    )
    p.add_argument("--version", action="version", version=f"lasercc {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in VERBS:
        try:
            mod = importlib.import_module(f"lasercc.commands.{verb}")
        except ModuleNotFoundError as e:
            if e.name == f"lasercc.commands.{verb}":
                continue
            raise
        mod.register(sub)
    return p


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout replaced (tests) or closed
        pass


def _say(verb: str, text: str) -> None:
    try:
        print(f"lasercc {verb}: {text}", file=sys.stderr)
    except (OSError, ValueError):  # pragma: no cover - stderr closed too
        pass


def main(argv: list[str] | None = None) -> int:
    from lasercc import interrupts

    previous = interrupts.install()  # Ctrl-C that native code swallows still ends the run (lasercc.interrupts)
    try:
        code = _main(argv)
        if interrupts.received() and code == 0:  # a swallowed Ctrl-C the verb ran past: still an interruption
            code = _interrupted()
    finally:
        interrupts.restore(previous)
    if argv is None and code == EXIT_INTERRUPTED:
        interrupts.exit_interrupted(code)  # the process's own command line: end now, with exactly this status
    return code


def _interrupted() -> int:
    try:
        print("lasercc: interrupted", file=sys.stderr)
    except (OSError, ValueError):  # pragma: no cover
        pass
    return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    from lasercc import interrupts

    verb = "?"
    try:
        from lasercc.errors import LasercError, VerifyError, translate

        parser = build_parser()
        args = parser.parse_args(argv)
        verb = args.verb
        try:
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, inside the boundary, not at interpreter exit
            return code
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as e:  # noqa: BLE001 - the CLI's one boundary (see the module docstring)
            if interrupts.received():  # what a Ctrl-C became inside native code (e.g. an ImportError)
                raise KeyboardInterrupt from None
            if os.environ.get("LASERCC_DEBUG"):
                raise
            err = e if isinstance(e, LasercError) else translate(e)
            if err is None:
                first = (str(e).strip().splitlines() or [""])[0]
                _say(verb, f"internal error: {type(e).__name__}: {first} -- a bug in lasercc; please report it "
                           "(LASERCC_DEBUG=1 shows the traceback)")
                return EXIT_BUG
            # one line; a verifier error keeps its second line, the node's IR text
            lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
            msg = str(err).strip() if isinstance(err, VerifyError) else "; ".join(lines)
            _say(verb, f"error: {msg}")
            return EXIT_ERROR
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except Exception:
        if interrupts.received():  # an import that a Ctrl-C broke (building the parser imports every verb)
            return _interrupted()
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
