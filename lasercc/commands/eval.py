"""``lasercc eval``: perplexity / NLL / top-1 agreement of a compiled language model over a token file."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from lasercc.commands.simulate import add_distributed_options

    p = sub.add_parser("eval", help="perplexity, NLL or top-1 agreement of an artifact over a token file",
                       description="Evaluate a compiled language model on token ids: a .npy of [rows, seq] or a "
                                   "1-D token stream cut into windows of the model's sequence length, read "
                                   "memory-mapped block by block. Reports the metric with a bootstrap confidence "
                                   "interval over rows.")
    p.add_argument("artifact", help="artifact directory or .lir file")
    p.add_argument("--tokens", "-t", required=True, help=".npy of token ids ([rows, seq] or 1-D)")
    p.add_argument("--metric", choices=("ppl", "nll", "top1"), default="ppl",
                   help="ppl: perplexity; nll: mean NLL per predicted token (nats); top1: argmax agreement with "
                        "--reference (default: ppl)")
    p.add_argument("--reference", metavar="MODEL.onnx", help="onnxruntime model to compare with (top1 needs it; "
                   "with ppl/nll its value on the same rows and the paired difference are reported)")
    p.add_argument("--output-name", metavar="NAME", help="the logits output (default: the one [batch, seq, vocab])")
    p.add_argument("--batch-rows", type=int, default=64, help="rows per block read from the file (default 64)")
    p.add_argument("--max-rows", type=int, help="evaluate only the first ROWS rows")
    p.add_argument("--backend", default="numpy", choices=("numpy", "torch"), help="numpy (default) or torch")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch backend only)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the interval (default 0.95)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_distributed_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lasercc.errors import InputError
    from lasercc.evaluate import evaluate

    if args.resume or args.shard_rows is not None:
        raise InputError("--resume and --shard-rows apply to simulate; eval keeps only per-row sums")
    if args.address is not None and args.workers is None:
        raise InputError("--address applies to --workers only")
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\rlasercc eval: {done}/{total} rows", end="\n" if done == total else "", file=sys.stderr,
                  flush=True)

    r = evaluate(args.artifact, args.tokens, args.metric, reference=args.reference, workers=args.workers,
                 address=args.address, batch_rows=args.batch_rows, max_rows=args.max_rows, output=args.output_name,
                 backend=args.backend, device=args.device, bootstrap_draws=args.bootstrap,
                 confidence=args.confidence, seed=args.seed, progress=progress)
    if args.json:
        json.dump(r.as_dict(), sys.stdout, indent=2)
        print()
        return 0
    unit = {"ppl": "perplexity", "nll": "NLL (nats/token)", "top1": "top-1 agreement"}[r.metric]
    pct = f"{r.confidence:.0%}"
    print(f"{unit}: {r.value:.4f}  [{pct} CI {r.ci_low:.4f} .. {r.ci_high:.4f}]  over {r.rows:,} rows, "
          f"{r.tokens:,} tokens ({r.seconds:.1f} s)")
    if r.reference:
        d = r.reference
        print(f"reference ({args.reference}): {d['value']:.4f}  [{pct} CI {d['ci_low']:.4f} .. {d['ci_high']:.4f}]; "
              f"artifact - reference NLL: {d['nll_diff']:+.4f} nats/token "
              f"[{pct} CI {d['nll_diff_ci_low']:+.4f} .. {d['nll_diff_ci_high']:+.4f}]")
    if r.dropped_tokens:
        print(f"note: {r.dropped_tokens:,} trailing token(s) did not fill a window or a batch and were not scored")
    return 0
