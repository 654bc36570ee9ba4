"""Language-model evaluation of a compiled artifact over a token file: NLL, perplexity, top-1 agreement.

Why a verb of its own: the question a researcher asks of a spiking LM is "what perplexity does it get
on my data, and how sure is that number", over more tokens than fit in memory. So:

* **streaming**: the token file is opened memory-mapped (``np.load(mmap_mode="r")`` of a ``.npy``) and
  read ``batch_rows`` rows at a time; only per-row sums are kept (a few numbers per row), never the
  logits of the whole file;
* rows: a 2-D file ``[n, seq]`` is n sequences of the model's length; a 1-D file is one token stream cut
  into non-overlapping windows of ``seq`` tokens (the remainder dropped, and reported);
* **NLL** of a row = sum over positions t < seq-1 of -log softmax(logits[t])[token[t+1]], computed in
  float64 from the artifact's dequantized logits; ``ppl`` = exp(total NLL / predicted tokens);
* **top1** = the fraction of positions where the artifact's argmax equals onnxruntime's argmax on the
  ``reference`` model (typically the float ONNX file the quantized one came from), run with graph optimisations
  off -- the model's own arithmetic, as ``simulate --compare-onnx`` runs it;
* **confidence interval**: a percentile bootstrap over rows (sequences are the independent units; tokens
  within one are not), resampling the per-row sums, seeded, so the interval is reproducible;
* ``workers``: each block of rows runs through :func:`lasercc.distributed.run_distributed` on one Ray
  session for the whole file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lasercc.errors import InputError
from lasercc.ir.graph import Graph
from lasercc.ir.nodes import Gather

METRICS = ("ppl", "nll", "top1")


@dataclass
class EvalResult:
    """One metric over a token file, with its bootstrap interval and what it was computed on."""

    metric: str
    value: float
    ci_low: float
    ci_high: float
    confidence: float
    rows: int
    tokens: int  # positions scored: seq - 1 per row (nll, ppl), seq (top1)
    dropped_tokens: int  # tail of a 1-D stream shorter than one window, or rows short of a full batch
    reference: dict[str, float] = field(default_factory=dict)  # the same metric for the reference model
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_tokens(path: str | os.PathLike, seq: int) -> tuple[np.ndarray, int]:
    """The token file as ``[rows, seq]`` (a memory-mapped view for a ``.npy``) and the tokens dropped."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such token file: {p}" if not p.exists() else f"{p} is not a file")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise InputError(f"{p}: a token .npz must hold one array, it holds {', '.join(z.files)}")
                arr = z[z.files[0]]
        else:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{p}: cannot read as .npy ({type(e).__name__}: {e})") from None
    if arr.dtype.kind not in "iu":
        raise InputError(f"{p}: token ids must be integers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        n = arr.shape[0] // seq
        if n == 0:
            raise InputError(f"{p}: {arr.shape[0]} tokens, fewer than one window of {seq}")
        return arr[: n * seq].reshape(n, seq), int(arr.shape[0] - n * seq)
    if arr.ndim != 2 or arr.shape[1] != seq:
        raise InputError(f"{p}: expected [rows, {seq}] token ids or a 1-D token stream, got shape {list(arr.shape)}")
    return arr, 0


def lm_signature(graph: Graph, output: str | None = None) -> tuple[str, str, int, int, int]:
    """(token input, logits output, batch, seq, vocab) of a language-model graph, or a clear refusal."""
    ids = [n for n in graph.inputs if getattr(n.type, "dtype", None) == "i64" and len(n.type.shape) == 2]
    if len(ids) != 1 or len(graph.inputs) != 1:
        raise InputError("lasercc eval needs a language model with one input of token ids [batch, seq]; this "
                         f"graph takes {', '.join(f'{n.name} {list(n.type.shape)}' for n in graph.inputs)}")
    inp = ids[0]
    b, s = inp.type.shape
    outs = [o for o in graph.outputs if len(graph.type_of(o).shape) == 3 and graph.type_of(o).shape[:2] == (b, s)]
    if output is not None:
        if output not in graph.outputs:
            raise InputError(f"no output {output!r}; the graph's outputs: {', '.join(graph.outputs)}")
        outs = [output]
    if not outs:
        raise InputError(f"no output of shape [batch {b}, seq {s}, vocab] (logits); outputs: "
                         + ", ".join(f"{o} {list(graph.type_of(o).shape)}" for o in graph.outputs))
    vocab = graph.type_of(outs[0]).shape[2]
    tables = [graph.constants[c.table].shape[0] for c in graph.users()[inp.name] if isinstance(c, Gather)]
    return inp.name, outs[0], b, s, min(tables) if tables else vocab


def row_nll(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Per-row NLL sums: -log softmax(logits[:, t])[tokens[:, t + 1]] over t < seq - 1, in float64."""
    x = np.asarray(logits, dtype=np.float64)[:, :-1]
    m = x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]
    tgt = np.take_along_axis(x, np.asarray(tokens)[:, 1:, None].astype(np.int64), axis=-1)[..., 0]
    return (lse - tgt).sum(axis=1)


def bootstrap(num: np.ndarray, den: np.ndarray, draws: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap of sum(num)/sum(den) over rows (resampled with replacement, seeded)."""
    n = num.shape[0]
    if n < 2:
        v = float(num.sum() / max(den.sum(), 1))
        return v, v
    rng = np.random.default_rng(seed)
    stats = np.empty(draws)
    for i in range(0, draws, 256):  # 256 resamples at a time: memory n x 256, not n x draws
        k = min(256, draws - i)
        idx = rng.integers(0, n, size=(k, n))
        stats[i:i + k] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    a = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return float(lo), float(hi)


@contextlib.contextmanager
def _runner(graph: Graph, workers: int | None, address: str | None, backend: str,
            device: str) -> Iterator[Callable[[dict[str, np.ndarray]], np.ndarray]]:
    """A function rows -> dequantized logits: one process, or Ray workers (one session for the whole file)."""
    from lasercc.runtime import run_graph

    if workers is None:
        yield lambda feed: run_graph(graph, feed, backend=backend, device=device, collect_stats=False).values
        return
    from lasercc.distributed import ray_session, run_distributed

    with ray_session(workers, address):
        yield lambda feed: run_distributed(graph, feed, workers=workers, backend=backend, device=device).values


def evaluate(artifact: Any, tokens: str | os.PathLike, metric: str = "ppl", *,
             reference: str | os.PathLike | None = None, workers: int | None = None, address: str | None = None,
             batch_rows: int = 64, max_rows: int | None = None, output: str | None = None, backend: str = "numpy",
             device: str = "cpu", bootstrap_draws: int = 1000, confidence: float = 0.95, seed: int = 0,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Evaluate ``artifact`` (an :class:`~lasercc.ir.artifact.Artifact` or a path) on a token file.

    ``metric``: ``nll`` (mean per predicted token, nats), ``ppl`` (exp of it) or ``top1`` (agreement of the
    argmax with onnxruntime on ``reference``, which ``top1`` requires). With ``reference``, ``nll``/``ppl``
    also report the reference model's value on the same rows (``result.reference``).
    """
    import time

    from lasercc.ir.artifact import load

    if metric not in METRICS:
        raise InputError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if metric == "top1" and reference is None:
        raise InputError("--metric top1 needs --reference MODEL.onnx (the model whose argmax to agree with)")
    if reference is not None and not Path(reference).is_file():
        raise InputError(f"no such reference model: {reference}")
    if batch_rows < 1 or not 0 < confidence < 1 or bootstrap_draws < 1:
        raise InputError("batch_rows and bootstrap draws must be positive and confidence in (0, 1)")
    art = load(artifact) if isinstance(artifact, (str, os.PathLike)) else artifact
    g = art.graph
    name, out, b, seq, vocab = lm_signature(g, output)
    rows, dropped = open_tokens(tokens, seq)
    if max_rows is not None:
        rows = rows[:max_rows]
    usable = rows.shape[0] // b * b
    dropped += (rows.shape[0] - usable) * seq
    if usable == 0:
        raise InputError(f"{rows.shape[0]} row(s) of tokens, fewer than the model's batch size {b}")
    step = max(b, batch_rows // b * b)
    onnx_name = ((art.manifest.get("onnx_outputs") or {}).get(out) or {}).get("onnx", out)
    nll = np.zeros(usable)
    ref_nll = np.zeros(usable)
    agree = np.zeros(usable)
    t0 = time.perf_counter()
    with _runner(g, workers, address, backend, device) as run:
        for r0 in range(0, usable, step):
            block = np.asarray(rows[r0:min(r0 + step, usable)], dtype=np.int64)
            bad = (block < 0) | (block >= vocab)
            if bad.any():
                i = np.argwhere(bad)[0]
                raise InputError(f"{tokens}: token id {block[tuple(i)]} at row {r0 + i[0]}, position {i[1]} is "
                                 f"outside the model's vocabulary [0, {vocab})")
            logits = run({name: block})[out]
            sl = slice(r0, r0 + block.shape[0])
            if metric != "top1":
                nll[sl] = row_nll(logits, block)
            if reference is not None:
                from lasercc.frontends.onnx.compare import run_onnxruntime

                ref = run_onnxruntime(reference, g, {name: block}, [onnx_name])[onnx_name]
                if ref.shape != logits.shape:
                    raise InputError(f"{reference}: output {onnx_name} has shape {list(ref.shape)}, the artifact's "
                                     f"{out} {list(logits.shape)}")
                if metric == "top1":
                    agree[sl] = (np.argmax(ref, -1) == np.argmax(logits, -1)).sum(axis=1)
                else:
                    ref_nll[sl] = row_nll(ref, block)
            if progress is not None:
                progress(sl.stop, usable)
    den = np.full(usable, seq if metric == "top1" else seq - 1, dtype=np.float64)
    num = agree if metric == "top1" else nll
    value = float(num.sum() / den.sum())
    lo, hi = bootstrap(num, den, bootstrap_draws, confidence, seed)
    refd: dict[str, float] = {}
    if reference is not None and metric != "top1":
        rv = float(ref_nll.sum() / den.sum())
        rlo, rhi = bootstrap(ref_nll, den, bootstrap_draws, confidence, seed)
        refd = {"value": rv, "ci_low": rlo, "ci_high": rhi}
        # the paired difference: resampling the same rows for both is what makes "spiking costs X nats" sharp
        dlo, dhi = bootstrap(nll - ref_nll, den, bootstrap_draws, confidence, seed)
        refd.update(nll_diff=value - rv, nll_diff_ci_low=dlo, nll_diff_ci_high=dhi)
    if metric == "ppl":
        value, lo, hi = float(np.exp(value)), float(np.exp(lo)), float(np.exp(hi))
        if refd:
            refd.update(value=float(np.exp(refd["value"])), ci_low=float(np.exp(refd["ci_low"])),
                        ci_high=float(np.exp(refd["ci_high"])))
    return EvalResult(metric=metric, value=value, ci_low=lo, ci_high=hi, confidence=confidence, rows=usable,
                      tokens=int(den.sum()), dropped_tokens=int(dropped), reference=refd,
                      seconds=time.perf_counter() - t0)
