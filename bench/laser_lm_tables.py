"""LASER Tables 3-6 and the timestep sweep on a trained, non-saturated LLaMA-style LM (bench/laser_lm.py).

Why: the tiny_gpt ablation (bench/fidelity_ablation.py) is saturated -- every spiking variant's ΔNLL sits
inside its noise. This model (RMSNorm, SwiGLU, RoPE; 2.56M parameters, test PPL in the tens on Python's
own documentation text) is small enough to run hybrid on one core and far enough from its floor that a bad
conversion shows.

Method (hybrid execution, as fidelity_ablation.py; helpers in bench/_ablation.py): every component is
exported to its own float ONNX model, compiled by ``lasercc.compile`` at ``bits`` with calibration = its
real inputs captured from the float model on validation windows, run by the NumPy backend (codes mode)
and substituted into the torch forward; residual adds, the embedding and the head-splitting reshapes stay
float. Components per layer: RMSNorm (attention), the Q, K and V projections, the scores (RoPE, Q·K^T,
1/sqrt(d_head)), the softmax (causal mask inside: lasercc lowers it structurally), ·V, the output
projection, RMSNorm (FFN), the SwiGLU FFN; then the final RMSNorm and the LM head.

Rows: Table 3 = one kind of component spiking at a time, then all; Table 4 = kinds added cumulatively in
Table 3's order; Table 5 = attention sub-parts; Table 6 = the float model's controls: ideal SNN (exact
lookup-table nonlinearities), BSE + ASNC (fitted ``asnc-fit{max_segments=K}`` tables, the method of
Tables 3-5), BSE + ReLU (SiLU replaced by ReLU in every FFN, everything spiking) and rate coding + ASNC at
the same number of timesteps. Timestep sweep: all components spiking with BSE at N = 4..16 steps vs rate
coding at N steps.

Rate coding has no compiler path (BSE is lasercc's only coding; rate codes exist only in
bench/fidelity_bse_coding.py). A rate-coded value over T steps is a spike count 0..T: at best a uniform
(T+1)-level quantizer. We emulate it by compiling at floor(log2(T+1)) bits (2^b <= T+1 levels, rounded
to nearest, no sampling noise): an *optimistic* bound on rate coding (Bernoulli rate codes add noise, IF
codes truncate), so a rate row worse than BSE is a conservative finding.

Statistics: NLL = mean next-token NLL (nats) over every position of the held-out test windows
(ctx tokens each); ΔNLL = row - float with a paired bootstrap 95% interval resampling windows (same
resample for both arms, fixed seed); KL = mean KL(float || row) per token.

    .venv/bin/python bench/laser_lm_tables.py [--windows 128] [--calib 16] [--segments 16] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

import lasercc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import laser_lm  # noqa: E402
from _ablation import (  # noqa: E402
    Fn,
    activation_tensors,
    compiled,
    export_component,
    kl_per_token,
    log_softmax64,
    machine,
    paired_bootstrap,
)
from laser_lm import LlamaLM, heldout, load, rotate_half  # noqa: E402

RESULTS = ROOT / "bench" / "results"
STEPS = (4, 6, 8, 10, 12, 16)
MAIN_BITS = (16, 8)


# ----------------------------------------------------------------------------------------------
# The model as components
# ----------------------------------------------------------------------------------------------


class Scores(nn.Module):
    """RoPE on q and k, then Q·K^T / sqrt(d_head) -- no mask (the softmax component applies it)."""

    def __init__(self, attn: laser_lm.Attention):
        super().__init__()
        self.attn = attn

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        t = q.shape[-2]
        cos, sin = self.attn.cos[:t], self.attn.sin[:t]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return q @ k.transpose(-1, -2) * (1.0 / math.sqrt(q.shape[-1]))


class MaskedSoftmax(nn.Module):
    """softmax(scores + causal mask): the -1e4 additive mask is lowered by lasercc as a structural mask."""

    def __init__(self, attn: laser_lm.Attention):
        super().__init__()
        self.attn = attn

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        t = s.shape[-1]
        return (s + self.attn.mask[:t, :t]).softmax(-1)


class AV(nn.Module):
    """Attention weights · V (per head)."""

    def forward(self, p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return p @ v


class ReluGLU(nn.Module):
    """The Table 6 control: the trained SwiGLU's weights with ReLU in place of SiLU."""

    def __init__(self, ffn: laser_lm.SwiGLU):
        super().__init__()
        self.ffn = ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn.down(F.relu(self.ffn.gate(x)) * self.ffn.up(x))


@dataclass
class Part:
    """A replaceable component: its module and its ONNX input names."""

    mod: nn.Module
    inputs: tuple[str, ...] = ("x",)


def parts(model: LlamaLM) -> dict[str, Part]:
    """Every component by name, in execution order."""
    out: dict[str, Part] = {}
    for i, b in enumerate(model.blocks):
        a = b.attn
        out.update({f"L{i}.attn_norm": Part(b.attn_norm), f"L{i}.q": Part(a.q), f"L{i}.k": Part(a.k),
                    f"L{i}.v": Part(a.v), f"L{i}.scores": Part(Scores(a), ("q", "k")),
                    f"L{i}.softmax": Part(MaskedSoftmax(a), ("s",)), f"L{i}.av": Part(AV(), ("p", "v")),
                    f"L{i}.o": Part(a.o), f"L{i}.ffn_norm": Part(b.ffn_norm), f"L{i}.ffn": Part(b.ffn)})
    out.update({"norm": Part(model.norm), "head": Part(model.head)})
    return out


def forward(model: LlamaLM, ids: torch.Tensor, comps: Mapping[str, Part], sub: Mapping[str, Fn],
            capture: dict[str, tuple[torch.Tensor, ...]] | None = None) -> torch.Tensor:
    """``LlamaLM.forward`` written per component: ``sub[name]`` replaces one; ``capture`` records inputs."""

    def call(name: str, *xs: torch.Tensor) -> torch.Tensor:
        if capture is not None:
            capture[name] = xs
        return sub[name](*xs) if name in sub else comps[name].mod(*xs)

    x = model.embed(ids)
    for i, blk in enumerate(model.blocks):
        a = blk.attn
        h = call(f"L{i}.attn_norm", x)
        q, k, v = (a.split(call(f"L{i}.{n}", h)) for n in "qkv")
        p = call(f"L{i}.softmax", call(f"L{i}.scores", q, k))
        y = call(f"L{i}.av", p, v).transpose(1, 2).reshape(x.shape)
        x = x + call(f"L{i}.o", y)
        x = x + call(f"L{i}.ffn", call(f"L{i}.ffn_norm", x))
    return call("head", call("norm", x))


# Table 3's kinds, in execution order (Table 4 adds them cumulatively in this order).
KINDS: dict[str, str] = {
    "QKV projections": r"L\d\.[qkv]$",
    "attention core (Q·K^T, softmax, ·V)": r"L\d\.(scores|softmax|av)$",
    "output projection": r"L\d\.o$",
    "RMSNorm (all)": r"(L\d\.\w+_norm|norm)$",
    "SwiGLU FFN": r"L\d\.ffn$",
    "LM head": r"head$",
}
SUBPARTS: dict[str, str] = {
    "QKV projections": r"L\d\.[qkv]$",
    "Q·K^T scores (with RoPE)": r"L\d\.scores$",
    "softmax": r"L\d\.softmax$",
    "·V (attention weights x V)": r"L\d\.av$",
}


def pick(names: Sequence[str], *patterns: str) -> frozenset[str]:
    return frozenset(n for n in names if any(re.fullmatch(p, n) for p in patterns))


# ----------------------------------------------------------------------------------------------
# Experiment
# ----------------------------------------------------------------------------------------------


def rate_bits(steps: int) -> int:
    """Code width that a T-step rate code can at best carry: 2^b <= T + 1 levels."""
    return int(math.floor(math.log2(steps + 1)))


@dataclass(frozen=True)
class Config:
    """How the spiking components are built. ``bits``: lasercc.compile's ``bits`` (8 or 16; its defaults
    follow, e.g. 8- or 16-bit weights); ``act``: when set, every activation tensor of the component is
    pinned to ``act`` bits with ``tensor_bits`` (the timestep sweep and the rate-coding emulation: lasercc
    compiles 8 or 16 bits, ``tensor_bits`` 2..16); ``weight_bits``: overrides the weights' default;
    ``nonlin``: ``lut`` or ``asncK``; ``relu``: SiLU -> ReLU in the FFNs."""

    bits: int
    nonlin: str
    act: int | None = None
    weight_bits: int | None = None
    relu: bool = False


class Bench:
    """The model, its held-out windows and the float reference; compiles components lazily and caches rows."""

    def __init__(self, cache: Path, n_windows: int, n_calib: int, batch: int = 16):
        torch.set_num_threads(1)
        self.cache_path = cache
        self.model, self.ck = load(cache)
        self.comps = parts(self.model)
        self.names = list(self.comps)
        test = heldout("test", cache)
        self.test_tokens = int(test.shape[0] * (test.shape[1] - 1))
        sel = np.unique(np.linspace(0, len(test) - 1, min(n_windows, len(test))).round().astype(int))
        self.win = test[sel]
        val = heldout("val", cache)
        calib = torch.from_numpy(val[np.unique(np.linspace(0, len(val) - 1, n_calib).round().astype(int)), :-1])
        self.batch = batch
        cap: dict[str, tuple[torch.Tensor, ...]] = {}
        with torch.no_grad():
            forward(self.model, calib, self.comps, {}, capture=cap)
            ids = torch.from_numpy(self.win[:2, :-1])
            self.check_forward = float((forward(self.model, ids, self.comps, {}) - self.model(ids)).abs().max())
        self.cap = {n: tuple(t.numpy() for t in xs) for n, xs in cap.items()}
        self.protos = {n: export_component(p.mod, cap[n], p.inputs) for n, p in self.comps.items()}
        self.relu_protos = {n: export_component(ReluGLU(p.mod), cap[n], p.inputs)  # type: ignore[arg-type]
                            for n, p in self.comps.items() if n.endswith(".ffn")}
        self.arts: dict[tuple[str, Config], Fn] = {}
        self.compile_s = 0.0
        self.ref_lp: list[np.ndarray] = []
        self.ref_nll = self._nll_kl({}, float_relu=False, keep_ref=True)[0]
        self.rows_cache: dict[tuple[frozenset[str], Config | None, bool], tuple[np.ndarray, float]] = {}

    def art(self, name: str, cfg: Config) -> Fn:
        key = (name, cfg)
        if key not in self.arts:
            t0 = time.perf_counter()
            proto = self.relu_protos[name] if cfg.relu and name in self.relu_protos else self.protos[name]
            calib = dict(zip(self.comps[name].inputs, self.cap[name], strict=True))
            opts: dict = {}
            if cfg.act is not None:
                opts["tensor_bits"] = dict.fromkeys(self.pinned(name, proto), cfg.act)
            if cfg.weight_bits is not None:
                opts["weight_bits"] = cfg.weight_bits
            self.arts[key] = compiled(proto, calib, cfg.bits, cfg.nonlin, **opts)
            self.compile_s += time.perf_counter() - t0
        return self.arts[key]

    def pinned(self, name: str, proto: onnx.ModelProto) -> list[str]:
        """The tensors a low-timestep config pins: every activation but the softmax's input (the scores), which
        stays at the base width: lasercc refuses Softmax inputs whose codes are too coarse to carry the rows'
        offsets (3 bits here), so the scores keep 8 bits (16 above 8 steps) in every arm."""
        skip = {"y"} if name.endswith(".scores") else {"s"} if name.endswith(".softmax") else set()
        return [t for t in activation_tensors(proto) if t not in skip]

    def _nll_kl(self, sub: Mapping[str, Fn], float_relu: bool, keep_ref: bool = False) -> tuple[np.ndarray, float]:
        """Per-window mean NLL and the mean per-token KL(float || row)."""
        nll, kl = [], []
        comps = dict(self.comps)
        if float_relu:
            comps.update({n: Part(ReluGLU(p.mod), p.inputs) for n, p in self.comps.items()  # type: ignore[arg-type]
                          if n.endswith(".ffn")})
        for j, i in enumerate(range(0, len(self.win), self.batch)):
            w = self.win[i:i + self.batch]
            with torch.no_grad():
                lp = log_softmax64(forward(self.model, torch.from_numpy(w[:, :-1]), comps, sub).numpy())
            nll.append(-np.take_along_axis(lp, w[:, 1:, None], -1)[..., 0].mean(-1))
            if keep_ref:
                self.ref_lp.append(lp.astype(np.float32))
                kl.append(np.zeros(len(w)))
            else:
                kl.append(kl_per_token(self.ref_lp[j].astype(np.float64), lp).mean(-1))
        return np.concatenate(nll), float(np.concatenate(kl).mean())

    def measure(self, spiking: frozenset[str], cfg: Config | None,
                float_relu: bool = False) -> tuple[np.ndarray, float]:
        key = (spiking, cfg, float_relu)
        if key not in self.rows_cache:
            sub = {n: self.art(n, cfg) for n in spiking} if cfg is not None else {}
            self.rows_cache[key] = self._nll_kl(sub, float_relu)
        return self.rows_cache[key]


def row(b: Bench, name: str, bits: int, coding: str, nonlin: str, nll: np.ndarray, kl: float,
        resamples: int) -> dict:
    d, lo, hi = paired_bootstrap(b.ref_nll, nll, resamples=resamples, seed=0)
    m = float(nll.mean())
    return {"row": name, "bits": bits, "coding": coding, "nonlinearity": nonlin, "nll": m, "ppl": math.exp(m),
            "dnll": d, "ci95": [lo, hi], "kl": kl}


def run_tables(b: Bench, segments: int, resamples: int, bits_list: Sequence[int] = MAIN_BITS,
               steps: Sequence[int] = STEPS, log: Callable[[str], None] = print) -> dict[str, list[dict]]:
    asnc = f"asnc{segments}"
    every = frozenset(b.names)
    tables: dict[str, list[dict]] = {k: [] for k in ("table3", "table4", "table5", "table6", "timesteps")}
    fl = row(b, "float model (reference)", 32, "float", "exact", b.ref_nll, 0.0, resamples)

    def add(table: str, name: str, bits: int, coding: str, nonlin: str, spiking: frozenset[str],
            cfg: Config | None, float_relu: bool = False) -> None:
        t0 = time.perf_counter()
        nll, kl = b.measure(spiking, cfg, float_relu)
        tables[table].append(row(b, name, bits, coding, nonlin, nll, kl, resamples))
        r = tables[table][-1]
        log(f"  {table} | {name} | {bits} | {nonlin} | PPL {r['ppl']:.3f} | dNLL {r['dnll']:+.4f} "
            f"[{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}] | KL {kl:.2e} | {time.perf_counter() - t0:.0f} s")

    for t in ("table3", "table4", "table5", "table6"):
        tables[t].append(dict(fl))
    for bits in bits_list:
        cfg = Config(bits, asnc)
        for kind, pat in KINDS.items():
            add("table3", f"{kind} only", bits, "bse", asnc, pick(b.names, pat), cfg)
        add("table3", "all components", bits, "bse", asnc, every, cfg)
        cum: list[str] = []
        for kind, pat in KINDS.items():
            cum.append(pat)
            add("table4", ("+ " if len(cum) > 1 else "") + kind, bits, "bse", asnc, pick(b.names, *cum), cfg)
        for part, pat in SUBPARTS.items():
            add("table5", f"{part} only", bits, "bse", asnc, pick(b.names, pat), cfg)
        add("table6", f"ideal SNN (exact LUT nonlinearities), {bits} steps", bits, "bse", "lut", every,
            Config(bits, "lut"))
        add("table6", f"BSE + ASNC ({segments} segments), {bits} steps", bits, "bse", asnc, every, cfg)
        add("table6", f"BSE + ReLU instead of SiLU, {bits} steps", bits, "bse", f"relu, {asnc}", every,
            Config(bits, asnc, relu=True))
        rb = rate_bits(bits)
        add("table6", f"rate coding + ASNC, {bits} steps (emulated as {rb}-bit codes)", bits, "rate", asnc, every,
            Config(bits, asnc, act=rb))
    add("table6", "float model with ReLU instead of SiLU (no spiking)", 32, "float", "relu", frozenset(), None,
        float_relu=True)
    for n in steps:  # 16-bit weights throughout: only the activations' timesteps change
        add("timesteps", f"BSE + ASNC, {n} steps", n, "bse", asnc, every, Config(16, asnc, act=n, weight_bits=16))
        add("timesteps", f"rate coding + ASNC, {n} steps (emulated as {rate_bits(n)}-bit codes)", n, "rate", asnc,
            every, Config(16, asnc, act=rate_bits(n), weight_bits=16))
    return tables


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


TITLES = {
    "table3": "Table 3: one kind of component spiking at a time (BSE + ASNC), then all",
    "table4": "Table 4: progressive conversion (kinds added cumulatively, BSE + ASNC)",
    "table5": "Table 5: attention sub-parts spiking alone (BSE + ASNC)",
    "table6": "Table 6: all components spiking, with controls",
    "timesteps": "Timestep sweep: all components spiking, BSE vs rate coding at matched timesteps",
}


def md_table(rows: list[dict]) -> list[str]:
    lines = ["| row | steps (bits) | coding | nonlinearity | NLL | PPL | ΔNLL vs float [95% CI] | KL(float ‖ row) |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        bits = "fp32" if r["coding"] == "float" else str(r["bits"])
        lines.append(f"| {r['row']} | {bits} | {r['coding']} | {r['nonlinearity']} | {r['nll']:.4f} | {r['ppl']:.3f} "
                     f"| {r['dnll']:+.4f} [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}] | {r['kl']:.2e} |")
    return lines


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(b: Bench, tables: dict[str, list[dict]], meta: dict, argv: Sequence[str], seconds: float,
           resamples: int, segments: int) -> str:
    m = meta["model"]
    lines = ["# LASER Tables 3-6 and the timestep sweep on a trained LLaMA-style LM", "",
             f"Commit {meta['commit']}, {meta['date']}, on {machine()} ({platform.system()}), one torch thread, "
             f"Python {platform.python_version()}, torch {torch.__version__}, onnxruntime {ort.__version__}, "
             f"lasercc {lasercc.__version__}; {seconds:.0f} s ({b.compile_s:.0f} s compiling).", "",
             f"Command: `.venv/bin/python {' '.join(['bench/laser_lm_tables.py', *argv])}`", "",
             f"Model: bench/laser_lm.py's LLaMA-style LM (RMSNorm, SwiGLU, RoPE), {m['params']:,} parameters, "
             f"d={b.model.cfg.d}, {b.model.cfg.layers} layers, {b.model.cfg.heads} heads, SwiGLU {b.model.cfg.ffn}, "
             f"context {b.model.cfg.ctx}, BPE-{b.model.cfg.vocab} on pydoc_data + stdlib docstrings; "
             f"float test PPL {m['float_ppl']:.3f} over all {m['test_tokens']:,} test tokens.", "",
             f"Evaluated on {len(b.win)} test windows x {b.win.shape[1] - 1} tokens = {b.win[:, 1:].size:,} "
             f"predictions (evenly spaced over the test split; the float PPL on them is "
             f"{math.exp(b.ref_nll.mean()):.3f}). Calibration: {len(b.cap['head'][0])} validation windows, each "
             f"component on its own inputs captured from the float model. ASNC = `asnc-fit{{max_segments={segments}}}`"
             f"; LUT = exact lookup tables. ΔNLL's interval: paired bootstrap over windows, {resamples} resamples, "
             "seed 0. Rate coding is emulated as floor(log2(T+1))-bit codes, an optimistic bound (see the script's "
             "docstring). Component forward vs LlamaLM.forward: max |Δlogit| "
             f"{b.check_forward:.2g}.", ""]
    for key, title in TITLES.items():
        lines += [f"## {title}", ""] + md_table(tables[key]) + [""]
    lines += ["## Do the controls separate?", ""] + [f"- {s}" for s in separation(tables["table6"])] + [""]
    return "\n".join(lines)


def separation(rows: list[dict]) -> list[str]:
    """Per step count: is each control's ΔNLL interval entirely above the BSE + ASNC row's? (If not, the
    metric cannot tell a broken conversion from a good one on this many windows.)"""
    out = []
    for good in (r for r in rows if r["row"].startswith("BSE + ASNC")):
        for ctl in (r for r in rows if r["bits"] == good["bits"] and r["coding"] != "float"
                    and (r["row"].startswith("BSE + ReLU") or r["coding"] == "rate")):
            ok = ctl["ci95"][0] > good["ci95"][1]
            out.append(f"{good['bits']} steps: {ctl['row']} ΔNLL {ctl['dnll']:+.4f} [{ctl['ci95'][0]:+.4f}, "
                       f"{ctl['ci95'][1]:+.4f}] vs BSE + ASNC {good['dnll']:+.4f} [{good['ci95'][0]:+.4f}, "
                       f"{good['ci95'][1]:+.4f}]: {'separated (worse)' if ok else 'NOT separated'}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=laser_lm.CACHE, help="laser_lm.py's cache (model.pt, tokens)")
    ap.add_argument("--windows", type=int, default=128, help="held-out test windows (of ctx tokens)")
    ap.add_argument("--calib", type=int, default=16, help="validation windows for calibration")
    ap.add_argument("--segments", type=int, default=16, help="ASNC segment budget")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 windows, 4 calibration, 16 bits, 2 step counts")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.quick:
        args.windows, args.calib, args.resamples = 8, 4, 1000
    b = Bench(args.cache, args.windows, args.calib)
    full = token_nll_all(b)
    meta = {"commit": git_commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "model": {"params": sum(p.numel() for p in b.model.parameters()), "float_ppl": math.exp(full),
                      "test_tokens": b.test_tokens}}
    print(f"float test PPL {math.exp(full):.3f}; {len(b.win)} windows; setup {time.perf_counter() - t0:.0f} s",
          flush=True)
    tables = run_tables(b, args.segments, args.resamples, (16,) if args.quick else MAIN_BITS,
                        (8, 16) if args.quick else STEPS, log=lambda s: print(s, flush=True))
    text = report(b, tables, meta, sys.argv[1:] if argv is None else list(argv), time.perf_counter() - t0,
                  args.resamples, args.segments)
    print(text)
    if not args.no_write and not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "laser_lm_tables.md").write_text(text)
        (RESULTS / "laser_lm_tables.json").write_text(json.dumps({**meta, "tables": tables}, indent=1) + "\n")
        print(f"wrote {RESULTS / 'laser_lm_tables.md'} and .json")
    return 0


def token_nll_all(b: Bench) -> float:
    """The float model's mean NLL over the whole test split (the model's headline figure)."""
    return float(laser_lm.token_nll(b.model, heldout("test", b.cache_path)).mean())


if __name__ == "__main__":
    raise SystemExit(main())
