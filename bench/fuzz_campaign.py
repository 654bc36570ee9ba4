"""Fuzz campaigns against lasercc's readers: cases per second and crashes found.

A crash is any exception other than ``LasercError`` (the contract of issue 17: every bad input is a clear
error). Targets (mutators and targets in ``lasercc/fuzz.py``; seeds: the bundled example models and files):

* ``onnx``     -- the ONNX loader (wire-level split, weight checks, shape pinning/inference, dtypes)
* ``compile``  -- the whole ``lasercc.compile`` (calibration, lowering, default passes): slow, ~1-3 cases/s
* ``lir``      -- ``.lir`` parse + verify
* ``npz``      -- the ``.npz`` reader (inputs, calibration, weights)
* ``artifact`` -- ``lasercc.load`` of a mutated artifact directory, or of its ``graph.lir`` directly

Each case is a pure function of (target, seed): a crash line prints the seed that reproduces it
(``python -c "from lasercc import fuzz; ..."``, see ``fuzz.run_case``).

    .venv/bin/python bench/fuzz_campaign.py --cases 100000 --targets onnx,lir -j 2
    .venv/bin/python bench/fuzz_campaign.py --cases 300 --targets compile

Writes ``bench/results/fuzz_campaign.md`` (appends one section per run).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lasercc import fuzz  # noqa: E402

_CORPUS: dict[str, object] | None = None


def _init() -> None:
    global _CORPUS
    _CORPUS = fuzz.build_corpus(ROOT)


def _chunk(args: tuple[str, int, int]) -> fuzz.CampaignResult:
    target, seed0, n = args
    assert _CORPUS is not None
    return fuzz.campaign(target, n, _CORPUS, seed0=seed0)


def run_target(target: str, cases: int, jobs: int, seed0: int, chunk: int = 500) -> fuzz.CampaignResult:
    t0 = time.perf_counter()
    parts = [(target, seed0 + i, min(chunk, cases - i)) for i in range(0, cases, chunk)]
    done = 0
    results = []
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs, initializer=_init) as pool:
            for r in pool.imap_unordered(_chunk, parts):
                results.append(r)
                done += r.cases
                print(f"  {target}: {done:,}/{cases:,} ({done / (time.perf_counter() - t0):.0f}/s), "
                      f"crashes {sum(len(x.crashes) for x in results)}", file=sys.stderr, flush=True)
    else:
        _init()
        for p in parts:
            r = _chunk(p)
            results.append(r)
            done += r.cases
            print(f"  {target}: {done:,}/{cases:,} ({done / (time.perf_counter() - t0):.0f}/s), "
                  f"crashes {sum(len(x.crashes) for x in results)}", file=sys.stderr, flush=True)
    return fuzz.CampaignResult(target, sum(r.cases for r in results), time.perf_counter() - t0,
                               sum(r.ok for r in results), sum(r.refused for r in results),
                               [c for r in results for c in r.crashes])


def report(results: list[fuzz.CampaignResult], jobs: int) -> str:
    lines = [f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {jobs} worker(s)", "",
             "| target | cases | cases/s | accepted | refused (LasercError) | crashes | distinct crash sites |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        sites = collections.Counter((c.error.split(":")[0], c.where) for c in r.crashes)
        lines.append(f"| {r.target} | {r.cases:,} | {r.rate:,.1f} | {r.ok:,} | {r.refused:,} | {len(r.crashes):,} | "
                     f"{len(sites)} |")
    for r in results:
        sites = collections.defaultdict(list)
        for c in r.crashes:
            sites[(c.error.split(":")[0], c.where)].append(c)
        for (kind, where), cs in sorted(sites.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"- {r.target}: {len(cs)} x {kind} at {where}, e.g. seed {cs[0].seed}: {cs[0].error[:160]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="onnx,lir,npz,artifact", help="comma-separated: onnx, compile, lir, npz, "
                                                                        "artifact")
    ap.add_argument("--cases", type=int, default=2000, help="mutants per target")
    ap.add_argument("--seed0", type=int, default=0, help="first seed")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--no-write", action="store_true", help="do not append to bench/results/fuzz_campaign.md")
    args = ap.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")
    results = [run_target(t.strip(), args.cases, args.jobs, args.seed0) for t in args.targets.split(",") if t.strip()]
    text = report(results, args.jobs)
    print(text)
    if not args.no_write:
        out = ROOT / "bench" / "results" / "fuzz_campaign.md"
        head = "" if out.exists() else ("# Fuzz campaigns (bench/fuzz_campaign.py)\n\nA crash is any exception other "
                                        "than LasercError. Machine: the project's shared 2-core VM.\n\n")
        with open(out, "a") as f:
            f.write(head + text + "\n")
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
