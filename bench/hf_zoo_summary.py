"""Per-family summary of every zoo run, written at the top of ``bench/results/hf_zoo.md``.

Why: the zoo's runs are split over several result files (opset-17 run with every format, opsets 13/14/18,
transformers' default attention, the encoder-decoder and sentence-transformers heads, vision/audio) because the
shared 2-core machine runs them in chunks. The issue's report asks, per family, how many exports compile, the
cosine range against onnxruntime and the compile time; this script reads the row tables those runs wrote (it
reruns nothing), keeps the newest row of each (family, export, attention, run) -- later files in
:data:`TEXT_SOURCES` win --, and flags rows under the targets (float --bits 16 >= 0.99, --bits 8 >= 0.9 vs ORT
float; an onnxruntime-quantized file compiled as it is >= 0.995 vs ORT running that same file).

Run: ``.venv/bin/python bench/hf_zoo_summary.py`` (rewrites the block between the summary markers of hf_zoo.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
# Text-family result files, oldest first (a later file's row replaces an earlier one for the same run)
TEXT_SOURCES = ("hf_zoo.md", "hf_zoo_eager.md", "hf_zoo_default.md", "hf_zoo_text_more_all_formats.md",
                "hf_zoo_text_more.md", "hf_zoo_opset13.md", "hf_zoo_opset14.md", "hf_zoo_opset18.md",
                "hf_zoo_opset17_more.md", "hf_zoo_t5_st.md", "hf_zoo_t5_st_all_formats.md", "hf_zoo_t5_st_default.md",
                "hf_zoo_t5_default.md")
VISION_SOURCES = ("hf_zoo_vision.md", "hf_zoo_vision_qoperator.md")
TARGET = {"f16": 0.99, "f8": 0.9, "q": 0.995, "s8all": 0.995}
# What the 2026-12-03 sweep (opsets 13/14/18, t5, *_st) found; kept with the summary it explains
FINDINGS = (
    "Found by the opset / encoder-decoder / sentence-head sweep (2026-12-03):",
    "",
    "* **Opsets 13 and 14** needed no frontend change: TorchScript at 13 writes Split/Squeeze/Unsqueeze/ReduceSum "
    "axes as attributes and LayerNorm as ReduceMean/Sub/Pow/Sqrt/Div, both already lowered (the ONNX node tests "
    "cover the older op versions); every family compiles at both.",
    "* **T5 decoder, default attention** (TorchScript 17 and dynamo 18) was refused: `Where(causal, position_bias, "
    "finfo.min)` has a condition computed from the sequence length, so once shapes are pinned it folds into one "
    "constant holding finite biases and finfo.min fills; the Add took it as an ordinary addend and Softmax "
    "refused its 16-bit codes (step 5e33). Fixed in `ops_elementwise.py` (bias Soma + constant mask, interval-"
    "typed; `tests/frontends/test_sdpa_exports.py`); the rows above are the rerun (`hf_zoo_t5_default.md`).",
    "* **Pooled sentence embeddings** track ORT a little less than the token outputs they average (mpnet_st "
    "0.99914, deberta_v2_st 0.99867 at 16 bits, the token outputs 0.9999+): on one held-out row a single token "
    "leaves the 16-row calibration range (MPNet layer-0 residual sum -4.363 vs calibrated minimum -4.263), "
    "saturates (error 0.10 on that token, 0.003 on the others), and mean pooling carries it into the sentence "
    "vector (that row 0.9934). A calibration-coverage effect, not a lowering error; more calibration rows or a "
    "range margin would remove it.",
    "* Text rows compare a quantized file with onnxruntime at its default graph optimizations (QDQ fused into "
    "integer kernels, as deployed); the vision rows use optimizations disabled (the file's own Q/DQ arithmetic), "
    "as the issue asks. Not rerun for the text rows.",
)
START, END = "<!-- family-summary:start -->", "<!-- family-summary:end -->"


@dataclass
class Family:
    """Every lasercc run of one family, and what refused."""

    exports: set[str] = field(default_factory=set)
    cos: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    secs: list[float] = field(default_factory=list)
    ok: int = 0
    total: int = 0
    below: list[str] = field(default_factory=list)
    refuses: list[str] = field(default_factory=list)
    ort_refuses: set[str] = field(default_factory=set)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _kind(run: str) -> str:
    if run == "float --bits 16":
        return "f16"
    if run == "float --bits 8":
        return "f8"
    return "s8all" if "s8 all ops" in run else "q"


def text_runs(path: Path) -> dict[tuple[str, str, str], tuple[str, list[str]]]:
    """(family, export, run) -> (kind, cells) for every row of a hf_zoo.py row table."""
    text = path.read_text()
    attn = "sdpa" if "--attention default" in text.split("\n", 3)[2] else "eager"
    out: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
    for line in text.splitlines():
        c = _cells(line) if line.startswith("| ") else []
        if len(c) != 8 or c[2] not in ("ok", "**fail**") or c[0] == "model":
            continue
        tag, run = c[0], c[1]
        fam, _, suffix = tag.partition(".")
        export = {"": "ts17", "dynamo": "dyn18"}.get(suffix, suffix.replace("op", "ts"))
        out[(fam, f"{export}/{attn}", run)] = ("ref" if "(ORT reference)" in run else _kind(run.replace(
            "lasercc on ", "")), c)
    return out


def vision_runs(path: Path) -> dict[tuple[str, str, str], tuple[str, list[str]]]:
    """The same keys for a hf_zoo_vision.py 'Every run' table (cosines listed per output: the minimum counts)."""
    out: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
    for line in path.read_text().splitlines():
        c = _cells(line) if line.startswith("| ") else []
        if len(c) != 9 or c[3] not in ("ok", "**fail**") or c[0] == "family":
            continue
        cos = [float(x) for x in re.findall(r" (\d\.\d+)", " " + c[4])]
        sec = c[7]
        # normalise to the text table's columns: model, run, compile, cos float, cos quantized, -, -, notes
        kind = _kind(c[2])
        m = f"{min(cos):.5f}" if cos else ""
        cells = [c[0], c[2], c[3], m if kind not in ("q", "s8all") else "", m if kind in ("q", "s8all") else "", "", "",
                 (f"{c[6]} IR nodes, {sec} s" if sec else "") + ("" if c[3] == "ok" else " " + c[8])]
        out[(c[0], f"{c[1].replace('dynamo', 'dyn')}/default", c[2])] = (kind, cells)
    return out


def collect() -> dict[str, Family]:
    rows: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
    for name in TEXT_SOURCES:
        if (RESULTS / name).exists():
            rows.update(text_runs(RESULTS / name))
    for name in VISION_SOURCES:
        if (RESULTS / name).exists():
            rows.update(vision_runs(RESULTS / name))
    fams: dict[str, Family] = defaultdict(Family)
    for (fam, export, run), (kind, c) in sorted(rows.items()):
        f = fams[fam]
        if kind == "ref":  # onnxruntime quantizing / running its own model: not a lasercc run
            if c[2] != "ok":
                f.ort_refuses.add(run.replace(" (ORT reference)", ""))
            continue
        f.exports.add(export)
        f.total += 1
        if c[2] != "ok":
            err = c[7].split(":")[0] + ": " + c[7].split(":", 1)[-1].strip()[:90]
            f.refuses.append(f"{export} {run}: {err}")
            continue
        f.ok += 1
        cos = float(c[4] if kind in ("q", "s8all") else c[3])
        f.cos[kind].append(cos)
        if cos < TARGET[kind]:
            f.below.append(f"{export} {run} {cos:.4f}" + (f" (vs ORT float {c[3]})" if kind != "f16" and c[3] else ""))
        sec = re.search(r"([\d.]+) s", c[7])
        if sec:
            f.secs.append(float(sec.group(1)))
    return fams


def _rng(v: list[float], nd: int = 5) -> str:
    return f"{min(v):.{nd}f} - {max(v):.{nd}f}" if v else "-"


def summary(fams: dict[str, Family]) -> str:
    head = ("| family | exports tried (opset/attention) | compiled / total | below target | float 16-bit cos | "
            "float 8-bit cos | quantized file cos vs ORT same file | all-ops s8 QDQ file vs ORT same file | "
            "compile s | what refuses / why |\n"
            "|---|---|---:|---:|---|---|---|---|---|---|")
    out = [head]
    for name, f in fams.items():
        why = "; ".join(f.refuses)
        if f.ort_refuses:
            why += ("; " if why else "") + "ORT cannot run its own " + ", ".join(sorted(f.ort_refuses)) + \
                " model (not counted)"
        if f.below:
            why += ("; " if why else "") + "below target: " + ", ".join(f.below)
        secs = f"{min(f.secs):.1f} - {max(f.secs):.1f}" if f.secs else "-"
        out.append(f"| {name} | {', '.join(sorted(f.exports))} | {f.ok} / {f.total} | {len(f.below)} | "
                   f"{_rng(f.cos['f16'])} | {_rng(f.cos['f8'])} | {_rng(f.cos['q'])} | {_rng(f.cos['s8all'])} | "
                   f"{secs} | {why or '-'} |")
    ok, tot = sum(f.ok for f in fams.values()), sum(f.total for f in fams.values())
    below = sum(len(f.below) for f in fams.values())
    out.append("")
    out.append(f"Total: {ok} / {tot} lasercc runs compiled over {len(fams)} families; {below} below target.")
    return "\n".join(out)


def main() -> int:
    fams = collect()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    block = "\n".join([
        START,
        "## Per-family summary (every zoo run)",
        "",
        f"Written by `.venv/bin/python bench/hf_zoo_summary.py` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"commit {commit}) from the row tables of {', '.join(TEXT_SOURCES + VISION_SOURCES)} -- nothing rerun; "
        "the newest row of each (family, export, run) counts. Exports: ts13/ts14/ts17 = TorchScript at that "
        "opset, dyn18 = dynamo at opset 18; eager = transformers' eager attention, sdpa/default = transformers' "
        "default (SDPA where supported). Runs: float --bits 16 and --bits 8 (cosine vs onnxruntime float on the "
        "same file), and each onnxruntime-quantized file (QDQ at every opset; QOperator, QDQ u16, dynamic, "
        "all-ops s8 QDQ at ts17/dyn18, the latter in its own column) compiled as it is (cosine vs onnxruntime "
        "running that same file; text rows with ORT's default graph optimizations, vision rows with them "
        "disabled). Multi-output models "
        "(t5, vision) count their worst output; *_st = the family with sentence-transformers' mean pooling + "
        "L2 normalize inside the graph, compared on the sentence embedding. Targets: float 16-bit >= 0.99, "
        "8-bit >= 0.9, quantized file >= 0.995; 'below target' counts the rows under them.",
        "",
        summary(fams),
        "",
        "Rows below target are all `lasercc on ORT QDQ s8 all ops`: onnxruntime's all-ops quantizer also "
        "quantizes the finfo.min attention bias, so its own model collapses (0.81 vs float on LLaMA-family "
        "rows); lasercc keeps the mask boolean and tracks ORT float instead (see Findings below) -- by design, "
        "not a compile failure." if all("s8 all ops" in b for f in fams.values() for b in f.below) else
        "See the rows flagged 'below target' above.",
        "",
        *FINDINGS,
        END,
    ])
    dst = RESULTS / "hf_zoo.md"
    text = dst.read_text()
    if START in text:
        text = text.split(START)[0] + block + text.split(END, 1)[1]
    else:
        title, rest = text.split("\n", 1)
        text = f"{title}\n\n{block}\n\n## Opset-17 / dynamo run with every format\n{rest}"
    dst.write_text(text)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
