"""``lasercc simulate``: run an artifact (or a .lir file) on inputs from an .npz file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lasercc.commands.common import check_output_file, read_npz, table, write_atomic


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a compiled artifact on inputs",
                       description="Run a compiled artifact (directory) or a .lir file on inputs from an .npz file "
                                   "(one array per graph input, rows stacked on axis 0) and print its outputs and "
                                   "spike statistics.")
    p.add_argument("artifact", help="artifact directory or .lir file")
    p.add_argument("--input", "-i", required=True, help=".npz with one array per graph input")
    p.add_argument("--backend", default="numpy", help="numpy (reference), torch, or lava (default: numpy)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch backend only)")
    p.add_argument("--lava-python", metavar="PYTHON", help="the Lava environment's interpreter (--backend lava; "
                   "default $LASERCC_LAVA_PYTHON, else .venv-lava/bin/python of the lasercc installation -- "
                   "never searched from the working directory)")
    p.add_argument("--mode", choices=("codes", "spikes"), default="codes",
                   help="codes: compute on integer codes; spikes: step real spike trains (same codes)")
    p.add_argument("--output", "-o", help="write dequantized outputs (and <name>.codes) to this .npz")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of tables")
    p.add_argument("--compare-onnx", metavar="MODEL.onnx",
                   help="also run this ONNX model in onnxruntime on the same inputs and print, per output, max abs "
                        "error, cosine similarity, top-1 agreement (last axis) and the fraction of identical codes")
    p.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    """Refuse flags that would be silently ignored, and unusable paths, before loading anything."""
    from lasercc.errors import InputError

    if args.device != "cpu" and args.backend != "torch":
        raise InputError(f"--device applies to --backend torch only; the {args.backend} backend runs on the CPU "
                         f"(got --device {args.device})")
    if args.lava_python is not None and args.backend != "lava":
        raise InputError("--lava-python applies to --backend lava only")
    if args.output is not None:
        check_output_file(args.output)
    if args.compare_onnx is not None:
        p = Path(args.compare_onnx)
        if not p.exists():
            raise InputError(f"no such ONNX model: {p} (--compare-onnx)")
        if p.is_dir():
            raise InputError(f"{p} is a directory, not an ONNX model (--compare-onnx)")


def run(args: argparse.Namespace) -> int:
    from lasercc.ir.artifact import load

    _check_options(args)
    art = load(args.artifact)
    inputs = read_npz(args.input)
    if args.backend == "lava":
        from lasercc.backends.lava_runner import run_lava  # noqa: PLC0415 - optional, Python 3.10 env

        res = run_lava(art, inputs, python=args.lava_python)
    else:
        from lasercc.runtime import run_graph

        res = run_graph(art.graph, inputs, backend=args.backend, mode=args.mode, device=args.device)
    extra = _post(args, art, inputs, res)
    if args.output is not None:
        payload = dict(res.values)
        payload.update({f"{k}.codes": v for k, v in res.codes.items()})
        out = Path(args.output)
        if out.suffix != ".npz":  # what np.savez does to a bare name, kept for compatibility
            out = out.with_name(out.name + ".npz")
        write_atomic(out, lambda f: np.savez(f, **payload))
    if args.json:
        out = {"outputs": {k: _summ(v, res.codes[k]) for k, v in res.values.items()},
               "stats": {k: v for k, v in res.stats.items() if k != "nodes"}, "seconds": res.seconds, **extra}
        json.dump(out, sys.stdout, indent=2, default=_jsonable)
        print()
        return 0
    rows = [[k, "x".join(map(str, v.shape)), float(v.min()), float(v.max()), float(v.mean())]
            for k, v in res.values.items()]
    print(table(rows, ["output", "shape", "min", "max", "mean"]))
    for k, v in res.values.items():
        flat = v.reshape(-1)
        print(f"{k}[:8] = {np.array2string(flat[:8], precision=4, separator=', ')}")
    st = res.stats
    if st:
        print()
        rows = [[k, d["spikes"], d["synaptic_events"], d["neuron_updates"], d["macs"]]
                for k, d in st["by_kind"].items()]
        t = st["total"]
        rows.append(["total", t["spikes"], t["synaptic_events"], t["neuron_updates"], t["macs"]])
        print(table(rows, ["node kind", "spikes", "synaptic events", "neuron updates", "dense MACs"]))
        print(f"latency: {st['latency_steps']} timesteps per batch on the critical path; "
              f"{st.get('batches', 1)} batch(es) in {res.seconds:.3f} s ({args.backend}, {args.mode} mode)")
    for line in extra.get("lines", []):
        print(line)
    return 0


def _post(args, art, inputs, res) -> dict:
    """Hook for options added by other verbs' modules (e.g. --compare-onnx); none by default."""
    hook = getattr(sys.modules[__name__], "POST_HOOKS", [])
    out: dict = {}
    for h in hook:
        out.update(h(args, art, inputs, res) or {})
    return out


def _summ(v: np.ndarray, c: np.ndarray) -> dict:
    return {"shape": list(v.shape), "min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
            "codes_head": c.reshape(-1)[:8].tolist()}


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _compare_onnx(args, art, inputs, res) -> dict:
    """--compare-onnx: metrics against onnxruntime (see lasercc.frontends.onnx.compare)."""
    if not getattr(args, "compare_onnx", None):
        return {}
    from lasercc.frontends.onnx.compare import compare

    m = compare(args.compare_onnx, art.graph, inputs, res.values, res.codes, art.manifest.get("onnx_outputs"))
    rows = [[k, d["onnx_output"], d["max_abs_error"], d["cosine"], d["top1_agreement"], d["identical_codes"]]
            for k, d in m.items()]
    head = ["output", "onnx output", "max abs err", "cosine", "top-1 agree", "identical codes"]
    return {"compare_onnx": m, "lines": ["", f"compared with onnxruntime ({args.compare_onnx}):", table(rows, head)]}


POST_HOOKS = [_compare_onnx]
