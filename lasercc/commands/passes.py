"""``lasercc passes``: list every pass (built-in and plugin) with its options and one-line doc."""

from __future__ import annotations

import argparse
import dataclasses
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("passes", help="list the available passes and their options",
                       description="List every registered pass (built-ins and plugins from the 'lasercc.passes' "
                                   "entry point group) with its options and a one-line description. Use them as "
                                   "--passes \"fold,dce,partition{system=hala-point}\" or module:Class{opt=value}.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--check", metavar="PIPELINE", help="parse a pipeline spec and print it back (or the error)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lasercc.passes.base import all_passes, parse_pipeline

    if args.check:
        print(",".join(p.spec() for p in parse_pipeline(args.check)))
        return 0
    passes = all_passes()
    if args.json:
        print(json.dumps({name: {"doc": cls.doc(), "class": f"{cls.__module__}:{cls.__qualname__}",
                                 "options": {o.name: {"type": o.type_text, "doc": o.doc,
                                                      "default": None if o.required else repr(o.default)}
                                             for o in cls.options()}}
                          for name, cls in passes.items()}, indent=2))
        return 0
    for name, cls in passes.items():
        print(f"{name:<14} {cls.doc()}")
        for o in cls.options():
            default = "required" if o.default is dataclasses.MISSING else f"default {o.default!r}"
            doc = f" -- {o.doc}" if o.doc else ""
            print(f"{'':14}   {o.name}: {o.type_text} ({default}){doc}")
    return 0
