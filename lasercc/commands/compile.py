"""``lasercc compile``: ONNX model -> artifact directory (graph.lir, weights.npz, manifest.json, lava/)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile an ONNX model to a spiking artifact",
                       description="Compile a quantized (QDQ, QOperator, dynamic, weight-only) or float ONNX model "
                                   "to a spiking artifact directory.")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--target", choices=("numpy", "torch", "loihi2"), default="numpy",
                   help="numpy/torch: requant 'ort' by default; loihi2: 'fixed' and a Lava package under lava/")
    p.add_argument("-o", "--output", required=True, help="artifact directory to write")
    p.add_argument("--bits", type=int, choices=(8, 16), default=None,
                   help="activation bits for float models / float islands (default 8 / 16)")
    p.add_argument("--weight-bits", type=int, choices=range(2, 17), default=None, metavar="{2..16}",
                   help="bits of float weights lasercc quantizes (symmetric, per output channel; a model's own "
                        "integer weights are kept): default 16 for a float model at --bits 16, else 8; 8 for loihi2 "
                        "(8-bit synapses)")
    p.add_argument("--smooth", type=float, default=None, metavar="ALPHA",
                   help="SmoothQuant alpha in [0, 1) for normalisation outputs read by linear layers: their outlier "
                        "channels move into the constant weights (0: off; default 0.5 for a float model at --bits 8, "
                        "else off)")
    p.add_argument("--residual-bits", type=int, choices=(8, 16), default=None,
                   help="bits of residual-stream summands with outlier channels (8: off; default 16 for a float "
                        "model at --bits 8, else off)")
    p.add_argument("--tensor-bits", action="append", default=[], metavar="TENSOR=BITS",
                   help="code width (2-16) of one float tensor of the model, applied after every other rule "
                        "(repeatable)")
    p.add_argument("--calibration", help=".npz of calibration inputs (rows on axis 0); random inputs if absent")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2",
                   help="pin an input's dynamic dims, e.g. ids=1,16 (repeatable)")
    p.add_argument("--requant", choices=("ort", "fixed"), default=None, help="requantization mode")
    p.add_argument("--passes", default=None,
                   help="pass pipeline, e.g. 'fold,dce,asnc-fit{max_segments=16}' (default per target: "
                        "numpy/torch 'dce', loihi2 'dce,asnc-fit,fuse-asnc,dce,partition'; '' for none; "
                        "see `lasercc passes`)")
    p.add_argument("--max-elements", type=int, default=None, metavar="N",
                   help="size limit of one declared tensor (graph input shape, initializer dims), checked before "
                        "anything is allocated (default 2^31 elements, or $LASERCC_MAX_ELEMENTS)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from lasercc.compiler import compile as compile_model
    from lasercc.frontends.onnx.load import parse_shape_option
    from lasercc.ir.artifact import artifact_lock, check_replaceable

    shapes = dict(parse_shape_option(s) for s in args.input_shape)
    tensor_bits = dict(_tensor_bits(s) for s in args.tensor_bits)
    # The output directory is locked and checked before compiling: a second compile into it, or an
    # -o naming a file or someone's non-artifact directory, fails in a second rather than at the end.
    with artifact_lock(args.output) as out_dir:
        check_replaceable(out_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda msg, *a, **k: print(f"lasercc compile: warning: {msg}", file=sys.stderr)
            art = compile_model(args.model, target=args.target, bits=args.bits, calibration=args.calibration,
                                input_shapes=shapes or None, requant=args.requant, passes=args.passes,
                                progress=not args.quiet, max_elements=args.max_elements,
                                weight_bits=args.weight_bits, smooth=args.smooth,
                                residual_bits=args.residual_bits, tensor_bits=tensor_bits or None)
        out = art.save(out_dir)
    m = art.manifest
    print(f"compiled {args.model} ({m['frontend']['format']}) -> {out}: {m['nodes']} nodes, "
          f"latency {m.get('latency_steps', '?')} steps, target {m['target']}, requant {m['options']['requant']}, "
          f"{m['compile_seconds']:.2f} s")
    return 0


def _tensor_bits(text: str) -> tuple[str, int]:
    """``NAME=BITS`` (the name may itself hold '='; the last one splits)."""
    from lasercc.errors import InputError

    name, sep, bits = text.rpartition("=")
    if not sep or not name or not bits.strip().isdigit():
        raise InputError(f"--tensor-bits expects TENSOR=BITS, got {text!r}")
    return name, int(bits)
