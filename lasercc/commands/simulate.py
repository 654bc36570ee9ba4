"""``lasercc simulate``: run an artifact (or a .lir file) on inputs from an .npz file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lasercc.commands.common import NpzStreamWriter, check_output_file, read_npz, table, write_atomic


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
    p.add_argument("--saturation-warn", type=float, default=None, metavar="FRACTION",
                   help="warn on stderr when a node saturates more than this fraction of its codes (default 0.05)")
    p.add_argument("--compare-onnx", metavar="MODEL.onnx",
                   help="also run this ONNX model in onnxruntime on the same inputs and print, per output, max abs "
                        "error, cosine similarity, top-1 agreement (last axis) and the fraction of identical codes; "
                        "onnxruntime runs with graph optimisations off (the file's own arithmetic). For a file that "
                        "quantizes at run time, also how close onnxruntime stays to itself when every quantizer input "
                        "moves by 2^-20 (about 8 ulps): a file below 0.995 there is decided by float32 rounding")
    p.add_argument("--onnx-optimized", action="store_true",
                   help="--compare-onnx against onnxruntime's default session (graph optimisations on, as deployed; "
                        "Q/DQ pairs fused into integer kernels) instead of the file's own arithmetic")
    add_distributed_options(p)
    p.set_defaults(func=run)


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    """--workers / --address / --resume / --shard-rows (``simulate`` and ``eval``)."""
    d = p.add_argument_group("distributed (Ray; pip install 'lasercc[distributed]')")
    d.add_argument("--workers", type=int, metavar="N", help="shard the rows across N Ray workers (a local Ray is "
                   "started unless --address is given); outputs in input order, statistics merged exactly")
    d.add_argument("--address", metavar="ADDR", help="join an existing Ray cluster (HOST:PORT, auto or ray://...)")
    d.add_argument("--resume", action="store_true", help="reuse the shards a killed run left beside -o "
                   "(.OUTPUT.shards/); refused when the inputs or the artifact differ")
    d.add_argument("--shard-rows", type=int, metavar="ROWS", help="rows per shard (a multiple of the batch size; "
                   "default: about four shards per worker)")


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
    if args.workers is None:
        given = [f for f, v in (("--address", args.address), ("--resume", args.resume),
                                ("--shard-rows", args.shard_rows)) if v]
        if given:
            raise InputError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to --workers only")
    elif args.backend == "lava":
        raise InputError("--workers runs the numpy or torch backend; the lava backend runs in one process")
    elif args.resume and args.output is None:
        raise InputError("--resume needs -o: the finished shards of a run are kept beside its output file")
    if args.onnx_optimized and args.compare_onnx is None:
        raise InputError("--onnx-optimized applies to --compare-onnx only")
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
    if _streamable(args, art.graph):
        from lasercc.ir.data import NpzRows

        return _run_streaming(args, art, NpzRows(args.input))
    inputs = read_npz(args.input)
    if args.backend == "lava":
        from lasercc.backends.lava_runner import run_lava  # noqa: PLC0415 - optional, Python 3.10 env

        res = run_lava(art, inputs, python=args.lava_python)
    else:
        res = _execute(args, art.graph, inputs)
    extra = _post(args, art, inputs, res)
    _warn_saturation(res.stats.get("saturation") or {}, args.saturation_warn)
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
    _print_stats(args, res)
    for line in extra.get("lines", []):
        print(line)
    return 0


def _warn_saturation(sat: dict, threshold: float | None) -> None:
    """One stderr line when nodes saturate beyond the threshold: the run's codes are then far from the
    float model's (inputs outside the calibration range), although every backend agrees on them."""
    from lasercc.errors import InputError
    from lasercc.runtime import SATURATION_WARN

    limit = SATURATION_WARN if threshold is None else threshold
    if not 0 <= limit <= 1:
        raise InputError(f"--saturation-warn must be a fraction in [0, 1], got {threshold}")
    bad = [(k, d) for k, d in sat.items() if d["fraction"] > limit]
    if bad:
        shown = ", ".join(f"%{k} {d['fraction']:.1%} {d['kind']}" for k, d in bad[:3])
        print(f"lasercc simulate: warning: {len(bad)} node(s) saturate more than {limit:.0%} of their codes "
              f"({shown}{', ...' if len(bad) > 3 else ''}); inputs outside the calibration range?", file=sys.stderr)


def _print_stats(args: argparse.Namespace, res) -> None:  # noqa: ANN001
    """The spike statistics and saturation tables of a run."""
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
        if "distributed" in st:
            d = st["distributed"]
            print(f"distributed: {d['workers']} Ray worker(s) ({d['address']}), {d['shards']} shards"
                  + (f", {d['resumed']} resumed from the work directory" if d["resumed"] else ""))
        sat = st.get("saturation") or {}
        if sat:
            rows = [[k, d["op"], d["kind"], d["count"], d["total"], f"{d['fraction']:.2%}"]
                    for k, d in list(sat.items())[:10]]
            print()
            print(table(rows, ["saturated node", "op", "kind", "codes", "of", "fraction"])
                  + (f"\n... and {len(sat) - 10} more node(s) (--json lists all)" if len(sat) > 10 else ""))
        else:
            print("saturation: no code clipped (encoders, Soma, DecodeMAC) or clamped (ASNC tables)")


def _execute(args: argparse.Namespace, graph, inputs, sink=None, commit=None):  # noqa: ANN001, ANN202
    """One process (``lasercc.runtime.run_graph``) or, with --workers, Ray (``lasercc.distributed``)."""
    if args.workers is None:
        from lasercc.runtime import run_graph

        res = run_graph(graph, inputs, backend=args.backend, mode=args.mode, device=args.device, sink=sink)
        if commit is not None:
            commit()
        return res
    from lasercc.distributed import run_distributed, work_dir_for

    return run_distributed(graph, inputs, workers=args.workers, address=args.address, backend=args.backend,
                           mode=args.mode, device=args.device, shard_rows=args.shard_rows, resume=args.resume,
                           work_dir=work_dir_for(_npz_name(args.output)) if args.output else None, sink=sink,
                           commit=commit, progress=_Progress())


def _npz_name(output: str) -> Path:
    out = Path(output)
    return out if out.suffix == ".npz" else out.with_name(out.name + ".npz")


class _Progress:
    """Shards done, on stderr: one updating line on a terminal, a line per tenth otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, p) -> None:  # noqa: ANN001 - lasercc.distributed.ProgressInfo
        tenth = p.shards_done * 10 // max(p.shards, 1)
        if not self.tty and tenth == self.last:
            return
        self.last = tenth
        resumed = f", {p.resumed} resumed" if p.resumed else ""
        line = (f"lasercc simulate: {p.shards_done}/{p.shards} shards, {p.rows_done}/{p.rows} rows{resumed}, "
                f"{p.seconds:.1f} s")
        end = "\n" if not self.tty or p.shards_done == p.shards else ""
        print(("\r" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)


def _streamable(args: argparse.Namespace, graph) -> bool:  # noqa: ANN001
    """numpy/torch without --compare-onnx, every input and output with a batch axis: input rows are read from
    the .npz block by block (:class:`lasercc.ir.data.NpzRows`), outputs go to the ``-o`` file block by block,
    and the printed summaries are accumulated on the way, so memory is flat in the number of rows.
    (--compare-onnx needs every output at once; the Lava runner takes the inputs whole.)"""
    return (not args.compare_onnx and args.backend in ("numpy", "torch")
            and all(graph.type_of(o).shape for o in graph.outputs) and all(n.type.shape for n in graph.inputs))


class _Summary:
    """min / max / mean and the first 8 values of one output, accumulated over blocks."""

    def __init__(self) -> None:
        self.lo, self.hi, self.total, self.n = np.inf, -np.inf, 0.0, 0
        self.head: np.ndarray | None = None
        self.codes_head: np.ndarray | None = None

    def add(self, v: np.ndarray, c: np.ndarray) -> None:
        if v.size:
            self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
            self.total += float(v.sum(dtype=np.float64))
            self.n += v.size
        if self.head is None or self.head.size < 8:
            flat, cflat = v.reshape(-1)[:8], c.reshape(-1)[:8]
            self.head = flat if self.head is None else np.concatenate([self.head, flat])[:8]
            self.codes_head = cflat if self.codes_head is None else np.concatenate([self.codes_head, cflat])[:8]

    def as_dict(self, shape: list[int]) -> dict:
        return {"shape": shape, "min": self.lo, "max": self.hi, "mean": self.total / max(self.n, 1),
                "codes_head": [] if self.codes_head is None else self.codes_head.tolist()}


def _run_streaming(args: argparse.Namespace, art, inputs) -> int:  # noqa: ANN001
    from lasercc.runtime import validate_shapes

    g = art.graph
    n_chunks = validate_shapes(g, inputs.shapes())
    if args.workers is not None:  # Ray ships each shard's rows to a worker: the driver reads the input whole
        inputs = read_npz(args.input)
    shapes = {o: (n_chunks * g.type_of(o).shape[0], *g.type_of(o).shape[1:]) for o in g.outputs}
    members = {}
    for o in g.outputs:
        members[o] = (np.dtype(np.float32), shapes[o])
        members[f"{o}.codes"] = (np.dtype(np.int64), shapes[o])
    out = writer = None
    if args.output is not None:
        out = Path(args.output)
        if out.suffix != ".npz":
            out = out.with_name(out.name + ".npz")
        writer = NpzStreamWriter(out, members)
    summ = {o: _Summary() for o in g.outputs}

    def sink(codes: dict, values: dict) -> None:
        for o in g.outputs:
            if writer is not None:
                writer.write(o, values[o])
                writer.write(f"{o}.codes", codes[o])
            summ[o].add(values[o], codes[o])

    try:
        res = _execute(args, g, inputs, sink=sink, commit=writer.close if writer is not None else None)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    _warn_saturation(res.stats.get("saturation") or {}, args.saturation_warn)
    outs = {o: summ[o].as_dict(list(shapes[o])) for o in g.outputs}
    if args.json:
        extra = {} if out is None else {"output_file": str(out)}
        json.dump({"outputs": outs, "stats": {k: v for k, v in res.stats.items() if k != "nodes"},
                   "seconds": res.seconds, **extra}, sys.stdout, indent=2, default=_jsonable)
        print()
        return 0
    print(table([[o, "x".join(map(str, d["shape"])), d["min"], d["max"], d["mean"]] for o, d in outs.items()],
                ["output", "shape", "min", "max", "mean"]))
    for o in g.outputs:
        print(f"{o}[:8] = {np.array2string(summ[o].head, precision=4, separator=', ')}")
    _print_stats(args, res)
    if out is not None:
        print(f"wrote {out} ({', '.join(members)})")
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
    from lasercc.frontends.onnx.conditioning import EPS, WELL_CONDITIONED

    optimized = bool(getattr(args, "onnx_optimized", False))
    m = compare(args.compare_onnx, art.graph, inputs, res.values, res.codes, art.manifest.get("onnx_outputs"),
                optimize=optimized)
    rows = [[k, d["onnx_output"], d["max_abs_error"], d["cosine"], d["top1_agreement"], d["identical_codes"]]
            for k, d in m.items()]
    head = ["output", "onnx output", "max abs err", "cosine", "top-1 agree", "identical codes"]
    selfcos = {k: d["onnxruntime_self_cosine"] for k, d in m.items() if d["onnxruntime_self_cosine"] is not None}
    if selfcos:
        head.append("onnxruntime vs itself")
        for r, k in zip(rows, m):
            r.append(selfcos.get(k, "-"))
    session = "default graph optimisations" if optimized else "graph optimisations off"
    lines = ["", f"compared with onnxruntime ({args.compare_onnx}, {session}):", table(rows, head)]
    if selfcos:
        worst = min(selfcos.values())
        lines.append(f"onnxruntime vs itself: its quantizer inputs scaled by 1+2^{np.log2(EPS):.0f} (about 8 ulps); "
                     + (f"{worst:.4f} < {WELL_CONDITIONED}: this file's output is decided by float32 rounding, and no "
                        "implementation but onnxruntime's own kernels can be held closer to it than that (README, "
                        "\"Which reference counts\")" if worst < WELL_CONDITIONED else
                        f"{worst:.4f}: the file is well conditioned; its own arithmetic is the reference"))
    return {"compare_onnx": m, "lines": lines}


POST_HOOKS = [_compare_onnx]
