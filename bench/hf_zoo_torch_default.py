"""The zoo exported the way a user exports today: ``torch.onnx.export(model, args, "model.onnx")``, nothing else.

Why: bench/hf_zoo.py and bench/hf_zoo_vision.py pin their exporters (TorchScript at opsets 13/14/17, dynamo at
opset 18 with dynamic axes). A user who writes the one-line call gets torch's defaults instead: the dynamo exporter
at its default opset (20 with torch 2.13), static shapes, the constant folding of the onnxscript optimizer. Those
graphs differ -- e.g. BERT called without ``token_type_ids`` gathers its buffered zeros by the position ids with a
constant ``GatherElements``, which ``onnx.reference`` cannot fold (lasercc now folds it with onnxruntime). Each
text family of hf_zoo.py (transformers' default attention; BERT and ALBERT also without ``token_type_ids``) and
each vision/audio family of hf_zoo_vision.py is exported so, compiled at --bits 16 and 8 and, as onnxruntime's
static QDQ model (MatMul/Gemm, as hf_zoo.py's ``ORT QDQ``), compiled as it is; each is compared with onnxruntime
running the same file with graph optimisations off (worst output; text: real tokens). ``ORT vs ORT`` is the QDQ
file's conditioning (lasercc.frontends.onnx.conditioning: onnxruntime against itself with its quantizer inputs
scaled by 1+2^-20).

    .venv/bin/python bench/hf_zoo_torch_default.py [--models bert vit ...] [--no-write]

Writes bench/results/hf_zoo_torch_default.md. Bench-only dependencies: transformers, onnxscript.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import _ort_conditioning as oc  # noqa: E402
import _provenance  # noqa: E402
import hf_zoo as hz  # noqa: E402
import hf_zoo_vision as hv  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

import lasercc  # noqa: E402

OUT = Path(__file__).parent / "results" / "hf_zoo_torch_default.md"
TARGETS = {"16": 0.99, "8": 0.9, "qdq": 0.995}


@dataclass(frozen=True)
class Case:
    """One export: the module, its positional inputs (names), outputs, and the feeds."""

    name: str
    build: Callable[[], torch.nn.Module]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    feeds: Callable[[int, int], dict[str, np.ndarray]]  # (rows, seed) -> arrays
    quantize: Callable[[Path, Path, dict[str, np.ndarray]], None]
    text: bool


def _text_cases() -> list[Case]:
    hz.ATTN = None  # transformers' default attention (SDPA where supported), as a user gets it
    out = []
    for spec in hz.ZOO:
        variants = [spec.inputs]
        if "token_type_ids" in spec.inputs:  # also as most users call an encoder: ids and mask only
            variants.append(tuple(k for k in spec.inputs if k != "token_type_ids"))
        for ins in variants:
            s = hz.Spec(spec.name, spec.build, ins, spec.output, spec.note, spec.pool)
            name = spec.name if ins == spec.inputs else f"{spec.name} (no token_type_ids)"

            def build(s: hz.Spec = s) -> torch.nn.Module:
                return hz.Wrapper(s.build(), s)

            def feeds(rows: int, seed: int, s: hz.Spec = s) -> dict[str, np.ndarray]:
                return hz.make_inputs(s, rows, seed)

            out.append(Case(name, build, ins, s.outputs, feeds,
                            lambda src, dst, calib: hz.quantize("qdq", src, dst, calib), True))
    return out


def _vision_cases() -> list[Case]:
    out = []
    for spec in hv.ZOO:
        def build(s: hv.Spec = spec) -> torch.nn.Module:
            return hv.Wrapper(s.build(None), s)

        def feeds(rows: int, seed: int, s: hv.Spec = spec) -> dict[str, np.ndarray]:
            return hv.make_inputs(s, rows, seed)

        out.append(Case(spec.name, build, tuple(k for k, _ in spec.inputs), spec.outputs, feeds,
                        hv.quantize_qdq, False))
    return out


def export(case: Case, feeds: dict[str, np.ndarray], dst: Path) -> int:
    """The one-line export (torch's defaults); returns the file's default-domain opset."""
    torch.manual_seed(0)
    w = case.build().eval()
    args = tuple(torch.from_numpy(feeds[k][:1]) for k in case.inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(w, args, str(dst), input_names=list(case.inputs), output_names=list(case.outputs))
    return next(o.version for o in onnx.load(str(dst), load_external_data=False).opset_import
                if o.domain in ("", "ai.onnx"))


def worst_cosine(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                 text: bool) -> float:
    """The worst output's cosine (text: hf_zoo's metric, real tokens; vision: whole arrays)."""
    if text:
        return float(hz.metrics(ref, got, feeds.get("attention_mask"))["cos"])
    return min(hv.cosine(ref[o], got[o]) for o in ref)


def run_lasercc(path: Path, calib: dict, held: dict, bits: int | None) -> tuple[dict[str, np.ndarray], float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(str(path), bits=bits, calibration=calib, progress=False,
                              input_shapes={k: (1, *v.shape[1:]) for k, v in held.items()})
    dt = time.perf_counter() - t0
    onnx_of = {k: v["onnx"] for k, v in art.manifest.get("onnx_outputs", {}).items()}
    return {onnx_of.get(k, k): np.asarray(v) for k, v in art.run(held).items()}, dt


def measure(case: Case, work: Path) -> dict:
    row: dict = {"model": case.name}
    calib, held = case.feeds(hz.CALIB_ROWS, 1), case.feeds(hz.EVAL_ROWS, 2)
    fp = work / f"{case.name.split()[0]}{'_2in' if '(' in case.name else ''}.onnx"
    try:
        row["opset"] = export(case, calib, fp)
    except Exception as e:  # noqa: BLE001 -- torch's or transformers' own failure is a row, not a crash
        row["error"] = "export fails (torch): " + hz.one_error(e)
        return row
    ref = oc.run_rows(oc.session(fp), held)
    secs = []
    for bits in (16, 8):
        try:
            got, dt = run_lasercc(fp, calib, held, bits)
            row[str(bits)] = worst_cosine(ref, got, held, case.text)
            secs.append(dt)
        except lasercc.errors.LasercError as e:
            row[str(bits)] = "refused: " + hz.one_error(e)
    qp = work / f"{fp.stem}.qdq.onnx"
    try:
        case.quantize(fp, qp, calib)
        qref = oc.run_rows(oc.session(qp), held)
    except Exception as e:  # noqa: BLE001 -- onnxruntime's quantizer failing is onnxruntime's row
        row["qdq"] = "onnxruntime's quantizer fails: " + hz.one_error(e)
    else:
        moved, _ = oc.perturbed_outputs(qp, held)
        row["cond"] = worst_cosine(qref, moved, held, case.text)
        try:
            got, dt = run_lasercc(qp, calib, held, None)
            row["qdq"] = worst_cosine(qref, got, held, case.text)
            secs.append(dt)
        except lasercc.errors.LasercError as e:
            row["qdq"] = "refused: " + hz.one_error(e)
    row["secs"] = secs
    return row


def _cell(v: object) -> str:
    return f"{v:.5f}" if isinstance(v, float) else str(v) if v is not None else "-"


def table(rows: list[dict]) -> str:
    lines = ["| model | opset | float --bits 16 | float --bits 8 | ORT QDQ file | ORT vs ORT ×(1+2^-20) | compile s |"
             " note |", "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        secs = r.get("secs") or []
        below = [k for k, t in TARGETS.items() if isinstance(r.get(k), float) and r[k] < t]
        note = r.get("error", "") or (f"below target: {', '.join(below)}" if below else "")
        lines.append(f"| {r['model']} | {r.get('opset', '-')} | {_cell(r.get('16'))} | {_cell(r.get('8'))} | "
                     f"{_cell(r.get('qdq'))} | {_cell(r.get('cond'))} | "
                     f"{f'{min(secs):.1f} - {max(secs):.1f}' if secs else '-'} | {note} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    ok = [r for r in rows if "error" not in r]
    runs = [(r, k) for r in ok for k in TARGETS if k in r]
    passed = sum(isinstance(r[k], float) for r, k in runs)
    below = sum(isinstance(r[k], float) and r[k] < TARGETS[k] for r, k in runs)

    def rng(k: str) -> str:
        v = [r[k] for r in ok if isinstance(r.get(k), float)]
        return f"{min(v):.5f} - {max(v):.5f}" if v else "-"

    return (f"{len(ok)} / {len(rows)} exports; {passed} / {len(runs)} lasercc runs compile, {below} below target "
            f"(16-bit >= 0.99, 8-bit >= 0.9, QDQ file >= 0.995). Cosine vs onnxruntime on the same file: float 16 "
            f"bit {rng('16')}, 8 bit {rng('8')}, ORT QDQ file {rng('qdq')} (its conditioning {rng('cond')}).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="names (text families as in hf_zoo.py, vision as in hf_zoo_vision.py)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cases = _text_cases() + _vision_cases()
    if args.models:
        cases = [c for c in cases if c.name.split()[0] in args.models]
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in cases:
            rows.append(measure(c, Path(tmp)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    md = "\n".join(["# The zoo as `torch.onnx.export(model, args, f)` writes it (torch's defaults)", "",
                    _provenance.stamp(sys.argv, time.perf_counter() - t0), "",
                    "Reference: onnxruntime on the same file, graph optimisations off. Text families: transformers' "
                    "default attention, cosine over real tokens (hf_zoo.py's metric); worst output of each model.",
                    "", summary(rows), "", table(rows), ""])
    print(md)
    if not args.no_write:
        OUT.write_text(md)
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
