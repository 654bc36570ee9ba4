"""STE as LASER means it: fine-tune a low-timestep spiking LM from the quantizer's own weights.

Question (LASER section 3.3, issue 15): with an exact spiking forward pass, does a straight-through
estimator (identity gradient through every requantization) recover the perplexity lost at few
timesteps, and does it beat the usual spiking-network surrogate gradient?

Model: the LLaMA-style LM of ``bench/laser_lm.py`` (trained here; RMSNorm, SwiGLU, RoPE), exported at a
shorter context (``--ctx``, default 64) so that a CPU step stays around a second or two.

Low-timestep network: ``lasercc.compile`` of the float ONNX at ``bits=8`` (its default recipe), then every
activation the default compile codes with 8 bits is recompiled at N bits (``tensor_bits``; N timesteps
of Bit Spike Encoding); tensors the precision rules widen (16-bit norms, softmax sums, the smoothed
residual) keep their width, weights stay 8-bit per channel. That network, unchanged, is the
"quantized" row: it is the starting point of every fine-tuning run (the quantizer's own weights).

Fine-tuning: :class:`lasercc.backends.torch_ste.SteModel` -- the forward pass is the exact integer
graph (the very codes the NumPy backend computes); every Soma weight and bias has a float shadow that
re-quantizes each step. Backward through each requantization (BSEEncode, Soma, DecodeMAC outputs):
``ste`` = identity (the paper), ``surrogate`` = beta * sum of sigmoid' at the two spike thresholds
around the value (``beta`` 5), the spiking-network habit the paper argues against. Loss: ``kd`` (default)
= KL(float teacher || spiking student) of the next-token distribution on training windows, or ``ce`` =
next-token cross-entropy. Adam, ``--steps`` steps of ``--batch`` windows each; each tensor's learning rate
is ``--lr`` times its standard deviation in integer units (``--rel-lr``): a uniform step in integer units
either moved no weight across a rounding boundary (lr 0.002-0.01: PPL unchanged after 150 steps) or moved
all of them at once (0.05: PPL 69 -> 83 at 4 bits), and it never moved the biases, which live in
accumulator units.
Seeds change the order of the training windows (and nothing else: the start is deterministic).

Evaluation: exact spiking perplexity of the re-exported integer graph on held-out test windows (NumPy
backend, codes mode), paired bootstrap 95% CI of the NLL change against the quantized start.

    .venv/bin/python bench/laser_lm_ste.py [--bits 4,6] [--seeds 3] [--steps 200] [--quick]

Writes ``bench/results/laser_lm_ste.md`` and ``laser_lm_ste.json``
(``{"commit","date","rows":[{"bits","method","seeds","ppl_mean","ppl_sd","float_ppl",...}]}``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ablation  # noqa: E402
import _provenance  # noqa: E402
import laser_lm  # noqa: E402

import lasercc  # noqa: E402
from lasercc.backends.torch_ste import SteModel  # noqa: E402
from lasercc.ir.graph import Graph  # noqa: E402
from lasercc.ir.types import CodeType  # noqa: E402
from lasercc.runtime import run_graph  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def low_bit_artifact(onx: onnx.ModelProto, cal: dict[str, np.ndarray], bits: int) -> lasercc.Artifact:
    """The default 8-bit compile with every 8-bit activation at ``bits`` instead (see module doc)."""
    base = lasercc.compile(onx, bits=8, calibration=cal, progress=False)
    if bits == 8:
        return base
    names = {n.name for n in base.graph.nodes}
    narrow = {}
    for onnx_name, ir in base.tensor_map.items():  # type: ignore[attr-defined]
        if ir in names and isinstance(t := base.graph.type_of(ir), CodeType) and t.bits == 8:
            narrow[onnx_name] = bits
    return lasercc.compile(onx, bits=8, calibration=cal, tensor_bits=narrow, progress=False)


def logits_of(graph: Graph, win: np.ndarray) -> np.ndarray:
    """Exact spiking logits (NumPy backend, codes mode) of one window's inputs, dequantized."""
    out = run_graph(graph, {graph.inputs[0].name: win[None, :-1].astype(np.int64)}, collect_stats=False)
    return np.asarray(out.values[graph.outputs[0]], np.float64)[0]


def window_nll(graph: Graph, wins: np.ndarray) -> np.ndarray:
    """Mean next-token NLL of each window (nats)."""
    out = np.empty(len(wins))
    for i, w in enumerate(wins):
        lp = _ablation.log_softmax64(logits_of(graph, w))
        out[i] = -lp[np.arange(len(w) - 1), w[1:]].mean()
    return out


def float_window_nll(model: torch.nn.Module, wins: np.ndarray) -> np.ndarray:
    nll = laser_lm.token_nll(model, wins)
    return np.asarray(nll, np.float64).reshape(len(wins), -1).mean(1)


def finetune(graph: Graph, teacher: torch.nn.Module, train: np.ndarray, *, method: str, seed: int, steps: int,
             lr: float, loss: str, batch: int = 1, rel_lr: bool = False) -> tuple[Graph, list[float]]:
    """``steps`` Adam steps of ``batch`` training windows each (gradients accumulated: the compiled graph
    has batch 1); returns the re-exported integer graph."""
    m = SteModel(graph, grad=method)
    if rel_lr:  # each tensor's step in proportion to its spread: biases live in accumulator units (~1e3-1e5)
        groups = [{"params": [p], "lr": lr * max(float(p.detach().std()) if p.numel() > 1 else abs(float(p)), 1.0)}
                  for p in m.shadows]
        opt = torch.optim.Adam(groups)
    else:
        opt = torch.optim.Adam(m.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(train)) for _ in range(steps * batch // len(train) + 1)])
    name = graph.inputs[0].name
    losses = []
    for step in range(steps):
        opt.zero_grad()
        total = 0.0
        for i in order[step * batch:(step + 1) * batch]:
            w = train[i]
            x, y = w[None, :-1].astype(np.int64), torch.as_tensor(w[1:].astype(np.int64))
            logits = m.dequantize(m({name: x}))[graph.outputs[0]][0]
            lp = torch.log_softmax(logits, -1)
            if loss == "kd":
                with torch.no_grad():
                    t = torch.log_softmax(teacher(torch.as_tensor(x)).double()[0], -1)
                obj = (t.exp() * (t - lp)).sum(-1).mean() / batch
            else:
                obj = -lp[torch.arange(len(y)), y].mean() / batch
            obj.backward()
            total += float(obj.detach())
        opt.step()
        losses.append(total)
        if len(losses) % 10 == 0:
            print(f"  step {len(losses)}: loss {np.mean(losses[-10:]):.4f}", flush=True)
    return m.export_graph(), losses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", default="4,6", help="activation bits (= BSE timesteps) to fine-tune at")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200, help="fine-tuning steps")
    ap.add_argument("--lr", type=float, default=0.001,
                    help="Adam learning rate: a fraction of each tensor's std (--rel-lr), or integer units")
    ap.add_argument("--loss", choices=("kd", "ce"), default="kd")
    ap.add_argument("--batch", type=int, default=2, help="training windows per step")
    ap.add_argument("--rel-lr", action=argparse.BooleanOptionalAction, default=True,
                    help="--lr relative to each tensor's standard deviation (default; --no-rel-lr: integer units)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--eval-windows", type=int, default=32)
    ap.add_argument("--cache", type=Path, default=laser_lm.CACHE)
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 bits, 1 seed, 3 steps, 4 windows")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/laser_lm_ste.md")
    ap.add_argument("--merge", nargs="+", type=Path, help="merge the JSON of runs made with different --bits "
                    "(same setup) into --out instead of running")
    args = ap.parse_args(argv)
    if args.merge:
        docs = [json.loads(p.read_text()) for p in args.merge]
        doc = {**docs[0], "rows": [r for d in docs for r in d["rows"]]}
        doc["setup"]["seconds"] = sum(d["setup"]["seconds"] for d in docs)
        cmds = " + ".join(d.get("argv", "") for d in docs)
        write_report(doc, [cmds], args.out)
        return 0
    if args.quick:
        args.bits, args.seeds, args.steps, args.eval_windows = "4", 1, 3, 4
    torch.set_num_threads(int(os.environ.get("LASERCC_THREADS", "1")))
    t0 = time.time()
    commit = _provenance.commit()  # the code that runs, not whatever HEAD is when a long run ends
    model, meta = laser_lm.load(args.cache)
    model.eval()
    train = laser_lm.windows(np.load(args.cache / "tokens_train.npy"), args.ctx)
    test_all = laser_lm.windows(np.load(args.cache / "tokens_test.npy"), args.ctx)
    test = test_all[np.random.default_rng(1234).permutation(len(test_all))[:args.eval_windows]]
    cal = {"input_ids": train[np.random.default_rng(7).permutation(len(train))[:16], :-1].astype(np.int64)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"lm_ctx{args.ctx}.onnx"
        laser_lm.export_onnx(model, path, seq=args.ctx)
        onx = onnx.load(path)
    f_nll = float_window_nll(model, test)
    float_ppl = float(np.exp(f_nll.mean()))
    print(f"float PPL {float_ppl:.2f} on {len(test)} x {args.ctx} test tokens", flush=True)
    rows: list[dict] = []
    for bits in [int(b) for b in args.bits.split(",")]:
        art = low_bit_artifact(onx, cal, bits)
        q_nll = window_nll(art.graph, test)
        q_ppl = float(np.exp(q_nll.mean()))
        print(f"{bits} bits: quantized PPL {q_ppl:.2f} ({time.time() - t0:.0f} s)", flush=True)
        rows.append({"bits": bits, "method": "none", "seeds": 1, "ppl_mean": q_ppl, "ppl_sd": 0.0,
                     "float_ppl": float_ppl, "dnll_vs_quantized": 0.0, "ci95": [0.0, 0.0],
                     "dnll_vs_float": float(q_nll.mean() - f_nll.mean())})
        for method in ("ste", "surrogate"):
            ppls, nlls, curves = [], [], []
            for seed in range(args.seeds):
                g2, losses = finetune(art.graph, model, train, method=method, seed=seed, steps=args.steps,
                                      lr=args.lr, loss=args.loss, batch=args.batch, rel_lr=args.rel_lr)
                nll = window_nll(g2, test)
                ppls.append(float(np.exp(nll.mean())))
                nlls.append(nll)
                curves.append(losses)
                print(f"{bits} bits {method:9s} seed {seed}: PPL {ppls[-1]:.2f} (loss {losses[0]:.4f} -> "
                      f"{np.mean(losses[-5:]):.4f}; {time.time() - t0:.0f} s)", flush=True)
            d = np.mean(nlls, 0) - q_nll
            ci = _ablation.paired_bootstrap(q_nll, np.mean(nlls, 0))[1:]
            rows.append({"bits": bits, "method": method, "seeds": args.seeds, "ppl_mean": float(np.mean(ppls)),
                         "ppl_sd": float(np.std(ppls, ddof=1)) if len(ppls) > 1 else 0.0, "float_ppl": float_ppl,
                         "dnll_vs_quantized": float(d.mean()), "ci95": list(ci),
                         "dnll_vs_float": float(np.mean(nlls, 0).mean() - f_nll.mean()),
                         "ppl_per_seed": ppls, "loss_first": float(np.mean([c[0] for c in curves])),
                         "loss_last5": float(np.mean([np.mean(c[-5:]) for c in curves]))})
    seconds = time.time() - t0
    date = time.strftime("%Y-%m-%d")
    doc = {"commit": commit, "date": date, "rows": rows,
           "setup": {"model": {"params": int(sum(p.numel() for p in model.parameters())),
                               "float_ppl_ctx": float_ppl, "ctx": args.ctx},
                     "steps": args.steps, "batch": args.batch, "lr": args.lr, "rel_lr": args.rel_lr,
                     "loss": args.loss, "beta": 5.0,
                     "eval_tokens": int(len(test) * args.ctx), "seconds": round(seconds)},
           "argv": " ".join(argv if argv is not None else sys.argv[1:])}
    write_report(doc, argv if argv is not None else sys.argv[1:], args.out, write=not (args.quick or args.no_write))
    return 0


def write_report(doc: dict, argv: list[str], out: Path, write: bool = True) -> None:
    """The markdown table (and the JSON beside it) of one run or of merged runs."""
    st, rows = doc["setup"], doc["rows"]
    float_ppl, ctx, n_tok = st["model"]["float_ppl_ctx"], st["model"]["ctx"], st["eval_tokens"]
    lines = [
        "# STE fine-tuning at few timesteps (LASER 3.3) vs a surrogate gradient",
        "",
        f"Command: `.venv/bin/python bench/laser_lm_ste.py {' '.join(argv)}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs shared with other jobs; torch "
        f"{torch.__version__}; commit {doc['commit']}; {doc['date']}; {st['seconds']} s  ",
        f"Model: bench/laser_lm.py LLaMA-style LM ({st['model']['params'] / 1e6:.2f}M params), context "
        f"{ctx}; float PPL {float_ppl:.2f} on the {n_tok // ctx} held-out test windows ({n_tok} "
        "tokens) used for every row.  ",
        f"Network: default 8-bit compile with every 8-bit activation at N bits (N BSE timesteps); 16-bit tensors "
        f"kept; 8-bit per-channel weights. Fine-tuning: {st['steps']} Adam steps (lr {st['lr']} "
        f"{'x each tensor std' if st.get('rel_lr') else 'integer weight units'}, "
        f"{st.get('batch', 1)} {ctx}-token training window(s) per step), loss {st['loss']} "
        f"({'KL to the float teacher' if st['loss'] == 'kd' else 'next-token cross-entropy'}), exact integer "
        "forward (SteModel); backward `ste` = identity through every requantization, `surrogate` = "
        "5*(sigmoid'(5(d-1/2)) + sigmoid'(5(d+1/2))), d = distance to the nearest code. PPL = exact spiking "
        "perplexity of the re-exported integer graph (NumPy backend). CI: paired bootstrap (2000) over test "
        "windows of the seed-averaged NLL change against the quantized start.",
        "",
        "| bits | method | seeds | PPL (mean +- sd) | dNLL vs quantized [95% CI] | dNLL vs float "
        "| train loss first -> last 5 |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        loss_col = f"{r['loss_first']:.4f} -> {r['loss_last5']:.4f}" if "loss_first" in r else "-"
        lines.append(f"| {r['bits']} | {r['method'] if r['method'] != 'none' else 'quantized, no fine-tuning'} | "
                     f"{r['seeds']} | {r['ppl_mean']:.2f} +- {r['ppl_sd']:.2f} | {r['dnll_vs_quantized']:+.4f} "
                     f"[{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}] | {r['dnll_vs_float']:+.4f} | {loss_col} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
