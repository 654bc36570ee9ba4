"""The ``lasercc`` command line. Each verb lives in ``lasercc/commands/<verb>.py`` and defines
``register(subparsers)``; its handler receives the parsed arguments and returns an exit status.

User errors (``LasercError``: bad files, names, shapes, IR text) print one line on stderr and exit
with status 2 -- never a traceback. ``LASERCC_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lasercc import __version__
from lasercc.errors import LasercError

# verbs in the order --help lists them; a module that does not exist yet is skipped
VERBS = ("compile", "simulate", "profile", "inspect", "passes", "opt")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lasercc",
        description="lasercc: compile quantized transformers (ONNX) to bit-exact spiking programs and run them "
                    "on NumPy, torch or Lava (Loihi 2).",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LasercError as e:
        if os.environ.get("LASERCC_DEBUG"):
            raise
        msg = str(e).strip()
        print(f"lasercc {args.verb}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lasercc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
