"""``lasercc opt``: run a pass pipeline on a ``.lir`` file and write the resulting IR text.

The pass-testing tool (like ``mlir-opt``): ``lasercc opt in.lir --passes "encode-elim,dce" -o out.lir``.
Weights come from ``--weights`` or an ``.npz`` beside the input with the same stem; without them the
constants are shape-only, which is all that graph-restructuring passes need. When the result has weight
data and ``-o`` is given, it is written beside the output as ``OUT.npz`` (what ``lasercc.load`` reads).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("opt", help="run passes on a .lir file and print or write the result",
                       description="Parse a .lir file, run a pass pipeline (verifying after each pass) and print "
                                   "the resulting IR text, or write it with -o.")
    p.add_argument("input", help="the .lir file ('-' for stdin)")
    p.add_argument("--passes", required=True, help="pipeline, e.g. 'encode-elim,dce' (see `lasercc passes`)")
    p.add_argument("-o", "--output", help="write the IR text here (default: stdout)")
    p.add_argument("--weights", help=".npz of constant data (default: INPUT's stem + .npz if it exists)")
    p.add_argument("--no-verify", action="store_true", help="do not verify the graph between passes")
    p.add_argument("--stats", action="store_true", help="print what each pass changed on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    import numpy as np

    from lasercc.errors import InputError
    from lasercc.ir.data import read_npz
    from lasercc.ir.printer import print_graph
    from lasercc.ir.text import parse_graph
    from lasercc.passes.opt import opt_graph

    if args.input == "-":
        text, beside = sys.stdin.read(), None
    else:
        src = Path(args.input)
        try:
            text = src.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read {src}: {e}") from None
        beside = src.with_suffix(".npz")
    weights = args.weights or (str(beside) if beside is not None and beside.is_file() else None)
    graph = parse_graph(text, read_npz(weights) if weights else None)
    out, records = opt_graph(graph, args.passes, verify=not args.no_verify)
    if args.stats:
        for r in records:
            print(json.dumps(r.to_json(), sort_keys=True), file=sys.stderr)
    result = print_graph(out)
    if not args.output:
        sys.stdout.write(result)
        return 0
    dst = Path(args.output)
    dst.write_text(result)
    arrays = out.constants.arrays()
    if arrays:
        np.savez(dst.with_suffix(".npz"), **arrays)
    return 0
