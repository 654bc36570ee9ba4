"""Signed (bidirectional) spike encoding: how many spikes and synaptic events it saves.

For each model: compile (or load) the spiking graph, count spikes and synaptic events in the NumPy
codes mode (the same counts the spikes mode measures on real trains -- the test suite proves it),
then apply ``signed-encode`` two ways and count again on the same inputs:

* ``heuristic``: mark every group of values whose zero point lies >= 25% of the range from both
  edges (no data needed);
* ``measured``: ``measure=true`` on the calibration set, marking the groups whose real popcounts
  fall; evaluated on separate inputs.

Every output code is checked bit-identical to the unmarked graph in the NumPy spikes mode (real
ternary trains stepped through the Somas) -- on the smaller models -- and in the codes mode.

    .venv/bin/python bench/signed_spikes.py [--no-minilm]

Writes ``bench/results/signed_spikes.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lasercc.ir.artifact import load as load_artifact
from lasercc.ir.graph import Graph
from lasercc.passes.signed import SignedEncode
from lasercc.runtime import run_graph

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "signed_spikes.md"
MINILM_WORK = Path("/tmp/lasercc_minilm")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _stats(graph: Graph, inputs: dict[str, np.ndarray], mode: str = "codes") -> tuple[dict, dict]:
    r = run_graph(graph, inputs, mode=mode)
    return r.codes, r.stats


def _pct(before: int, after: int) -> str:
    return "-" if before == 0 else f"{100.0 * (after - before) / before:+.1f}%"


def evaluate(name: str, graph: Graph, calib: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
             spikes_check: bool) -> dict:
    """Counts before / after both variants of the pass, with the bit-identity checks."""
    t0 = time.perf_counter()
    codes0, st0 = _stats(graph, inputs)
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "calib.npz"
        np.savez(path, **calib)
        variants = {
            "heuristic": SignedEncode().run(graph),
            "measured": SignedEncode(measure=True, sample_inputs=str(path)).run(graph),
        }
    out = {"name": name, "before": st0, "variants": {}, "checks": []}
    code_values = sum(1 for n in graph.nodes if hasattr(n.type, "bits"))
    for vname, res in variants.items():
        g = res.graph.verify()
        codes, st = _stats(g, inputs)
        same = all(np.array_equal(codes0[o], codes[o]) for o in graph.outputs)
        checks = [f"codes mode: {'identical' if same else 'MISMATCH'}"]
        if spikes_check:
            sc, sst = _stats(g, inputs, mode="spikes")
            same_s = all(np.array_equal(codes0[o], sc[o]) for o in graph.outputs)
            checks.append(f"spikes mode: {'identical' if same_s else 'MISMATCH'}")
            checks.append("spike counts on real trains = codes-mode rule: "
                          f"{'yes' if sst['nodes'] == st['nodes'] else 'NO'}")
            same = same and same_s and sst["nodes"] == st["nodes"]
        if not same:
            raise SystemExit(f"{name} / {vname}: outputs or counts differ -- a bug")
        out["variants"][vname] = {"stats": st, "marked": res.info["values_marked"], "of": code_values,
                                  "checks": checks}
    out["seconds"] = time.perf_counter() - t0
    return out


def render(r: dict) -> list[str]:
    b = r["before"]
    lines = [f"### {r['name']}", ""]
    for vname, v in r["variants"].items():
        lines.append(f"* `{vname}`: {v['marked']} of {v['of']} code values marked signed; "
                     + "; ".join(v["checks"]))
    lines += ["", "| node kind | spikes BSE | spikes signed (heuristic) | spikes signed (measured) | "
                  "syn. events BSE | syn. events signed (heuristic) | syn. events signed (measured) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    h, m = r["variants"]["heuristic"]["stats"], r["variants"]["measured"]["stats"]
    kinds = [k for k in b["by_kind"] if b["by_kind"][k]["spikes"] or b["by_kind"][k]["synaptic_events"]]
    for k in kinds + ["total"]:
        sb, sh, sm = (s["by_kind"][k] if k != "total" else s["total"] for s in (b, h, m))
        label = f"**{k}**" if k == "total" else k
        lines.append(f"| {label} | {sb['spikes']:,} | {sh['spikes']:,} ({_pct(sb['spikes'], sh['spikes'])}) | "
                     f"{sm['spikes']:,} ({_pct(sb['spikes'], sm['spikes'])}) | {sb['synaptic_events']:,} | "
                     f"{sh['synaptic_events']:,} ({_pct(sb['synaptic_events'], sh['synaptic_events'])}) | "
                     f"{sm['synaptic_events']:,} ({_pct(sb['synaptic_events'], sm['synaptic_events'])}) |")
    lines.append("")
    return lines


def attention_block() -> dict:
    d = ROOT / "examples" / "ir" / "attention_block"
    art = load_artifact(d)
    x = _load_npz(d / "input.npz")
    return evaluate("examples/ir/attention_block (hand-built IR; inputs: its input.npz, 16 rows, also used "
                    "for measure=true)", art.graph, x, x, spikes_check=True)


def tiny_gpt() -> dict | str:
    import lasercc

    if not hasattr(lasercc, "compile"):
        return "lasercc.compile not available"
    m = ROOT / "examples" / "models"
    art = lasercc.compile(str(m / "tiny_gpt.qdq.onnx"), target="numpy", calibration=str(m / "tiny_gpt.calib.npz"),
                          progress=False)
    calib = _load_npz(m / "tiny_gpt.calib.npz")
    x = _load_npz(m / "tiny_gpt.input.npz")
    return evaluate("examples/models/tiny_gpt.qdq.onnx (ONNX QDQ, lasercc.compile; measured on tiny_gpt.calib.npz, "
                    "counted on tiny_gpt.input.npz)", art.graph, calib, x, spikes_check=True)


def minilm(rows_calib: int, rows_eval: int) -> dict | str:
    """all-MiniLM-L6-v2 through bench/minilm_fidelity.py's path (float ONNX + calibration, 8 bits)."""
    import lasercc

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import minilm_fidelity as mf
    except ImportError as e:
        return f"MiniLM bench dependencies missing ({e})"
    MINILM_WORK.mkdir(parents=True, exist_ok=True)
    path = mf.model_dir()
    calib = mf.tokenize(path, mf.CALIBRATION_SENTENCES, 32)
    feeds = mf.tokenize(path, mf.EVAL_SENTENCES, 32)
    float_onnx, calib_npz = MINILM_WORK / "minilm.onnx", MINILM_WORK / "minilm.calib.npz"
    np.savez(calib_npz, **calib)
    if not float_onnx.exists():
        from transformers import BertModel

        bert = BertModel.from_pretrained(str(path), attn_implementation="eager").eval()
        mf.export(bert, calib, float_onnx)
    t0 = time.perf_counter()
    art = lasercc.compile(str(float_onnx), target="numpy", bits=8, calibration=str(calib_npz), progress=False)
    t_compile = time.perf_counter() - t0
    sub = {k: v[:rows_calib] for k, v in calib.items()}
    ev = {k: v[:rows_eval] for k, v in feeds.items()}
    r = evaluate(f"all-MiniLM-L6-v2 (float ONNX + calibration, 8-bit, lasercc.compile in {t_compile:.0f} s; "
                 f"measured on {rows_calib} calibration sentences, counted on {rows_eval} evaluation sentences, "
                 "seq 32)", art.graph, sub, ev, spikes_check=True)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-minilm", action="store_true", help="skip all-MiniLM-L6-v2")
    ap.add_argument("--minilm-rows", type=int, nargs=2, default=[8, 8], metavar=("CALIB", "EVAL"))
    args = ap.parse_args(argv)
    results: list[dict | str] = [attention_block()]
    results.append(tiny_gpt())
    if not args.no_minilm:
        try:
            results.append(minilm(*args.minilm_rows))
        except Exception as e:  # noqa: BLE001 - report why the big model could not be measured
            results.append(f"all-MiniLM-L6-v2 not measured: {type(e).__name__}: {e}")
    lines = [
        "# Signed (bidirectional) spike encoding: spikes and synaptic events",
        "",
        "Generated by `bench/signed_spikes.py`. `signed-encode` carries a value as the ternary MSB-first",
        "train of code - zero_point (sign + magnitude; SDLLM's bidirectional encoding) instead of the BSE",
        "train of the code, so values at the zero point cost no spike. Codes and timing are unchanged;",
        "every output below was checked bit-identical. Spikes = popcount(code) (BSE) or",
        "popcount(|code - zp|) (signed); synaptic events = sum over a Soma's input spikes of their nonzero",
        "fan-out. Percentages are changes against BSE (negative = fewer).",
        "",
    ]
    for r in results:
        if isinstance(r, str):
            lines += [f"* {r}", ""]
            continue
        lines += render(r)
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
