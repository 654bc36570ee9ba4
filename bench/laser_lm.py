"""A small LLaMA-style language model trained here on real English text, for LASER's Tables 3-6.

Why: the example LM (tiny_gpt, PPL 1.93 on a synthetic grammar) is saturated -- every spiking
variant's change in NLL sits inside its noise, so it cannot rank components. LASER's subject is
LLaMA-2 on WikiText-2; nothing like that can be downloaded here, so we train a model of the same
*architecture* (RMSNorm, SwiGLU FFN, rotary position embedding, causal multi-head attention, untied
head) on real English that every Python installation ships offline: the documentation topics of
``pydoc_data`` and the docstrings of the standard library.

Data: documents = one pydoc topic or one stdlib module's docstrings (module, classes, functions;
docstrings of 40+ characters); documents are split into train / validation / test by a hash of their
name (90 / 5 / 5), so held-out text never shares a module with the training text. Tokenizer: byte-level
BPE (``tokenizers``, vocabulary 2048) trained on the training split only. Model: d=192, 4 layers,
6 heads of 32, SwiGLU hidden 512, context 128, ~2.4M parameters. Training: AdamW, cosine schedule,
dropout 0.1, the checkpoint with the best validation NLL is kept.

Everything is cached under ``$LASERCC_CACHE/laser_lm`` (default ``~/.cache/lasercc/laser_lm``):
``tokenizer.json``, ``tokens_{train,val,test}.npy`` (uint16), ``model.pt`` (state dict + config +
training log) and ``model.onnx`` (float, opset 17, fixed [1, ctx] int64 input, logits output). A
rerun with the cache present only loads it. Other benches import :func:`load` and :func:`build_model`.

    .venv/bin/python bench/laser_lm.py [--minutes 35] [--steps 4000] [--retrain]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import os
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

CACHE = Path(os.environ.get("LASERCC_CACHE", Path.home() / ".cache" / "lasercc")) / "laser_lm"
MIN_DOC = 40


@dataclass(frozen=True)
class LMConfig:
    """Shape of the LLaMA-style model (defaults: the trained bench model)."""

    vocab: int = 2048
    d: int = 192
    layers: int = 4
    heads: int = 6
    ffn: int = 512
    ctx: int = 128
    dropout: float = 0.1
    rope_base: float = 10000.0
    eps: float = 1e-5


# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------


def documents() -> dict[str, str]:
    """Name -> text of every document: pydoc topics and per-module stdlib docstrings, sorted by name."""
    import pydoc_data.topics

    docs = {f"pydoc:{k}": v.strip() for k, v in pydoc_data.topics.topics.items() if len(v.strip()) >= MIN_DOC}
    lib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if rel.parts[0] == "site-packages":
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        parts = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= MIN_DOC:
                    parts.append(doc.strip())
        if parts:
            docs[f"stdlib:{rel.as_posix()}"] = "\n\n".join(parts)
    return dict(sorted(docs.items()))


def split_of(name: str) -> str:
    """Deterministic 90/5/5 split by document name (stable across machines and Python versions)."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little") % 100
    return "test" if h < 5 else "val" if h < 10 else "train"


def build_data(cfg: LMConfig, cache: Path) -> None:
    """Train the tokenizer on the training split and write the three token files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    docs = documents()
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, text in docs.items():
        splits[split_of(name)].append(text)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab, special_tokens=["<|doc|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(splits["train"], trainer=trainer)
    cache.mkdir(parents=True, exist_ok=True)
    tok.save(str(cache / "tokenizer.json"))
    sep = tok.token_to_id("<|doc|>")
    meta = {}
    for split, texts in splits.items():
        ids: list[int] = []
        for enc in tok.encode_batch(texts):
            ids.append(sep)
            ids.extend(enc.ids)
        arr = np.asarray(ids, dtype=np.uint16)
        np.save(cache / f"tokens_{split}.npy", arr)
        meta[split] = {"documents": len(texts), "tokens": int(arr.size), "chars": sum(map(len, texts))}
    (cache / "data.json").write_text(json.dumps(meta, indent=1))


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """LLaMA's norm: x / sqrt(mean(x^2) + eps) * weight (no mean subtraction, no bias)."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg: LMConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [ctx, head_dim] in the rotate-half layout (as transformers' LLaMA)."""
    hd = cfg.d // cfg.heads
    inv = 1.0 / cfg.rope_base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(cfg.ctx, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().float(), ang.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Attention(nn.Module):
    """Causal multi-head attention with RoPE on q and k; sub-parts are separate modules so benches
    can swap each (QKV projections, scores, softmax, AV, output projection)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.q = nn.Linear(cfg.d, cfg.d, bias=False)
        self.k = nn.Linear(cfg.d, cfg.d, bias=False)
        self.v = nn.Linear(cfg.d, cfg.d, bias=False)
        self.o = nn.Linear(cfg.d, cfg.d, bias=False)
        cos, sin = rope_tables(cfg)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        mask = torch.full((cfg.ctx, cfg.ctx), -1e4).triu(1)
        self.register_buffer("mask", mask, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.cfg.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        cos, sin = self.cos[:t], self.sin[:t]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(q.shape[-1])) + self.mask[:t, :t]
        att = self.drop(scores.softmax(-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, -1)
        return self.o(y)


class SwiGLU(nn.Module):
    """LLaMA's FFN: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d, cfg.ffn, bias=False)
        self.up = nn.Linear(cfg.d, cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, cfg.d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d, cfg.eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d, cfg.eps)
        self.ffn = SwiGLU(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class LlamaLM(nn.Module):
    """Token embedding -> blocks -> final RMSNorm -> untied head; logits [batch, seq, vocab]."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.d, cfg.eps)
        self.head = nn.Linear(cfg.d, cfg.vocab, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


def build_model(cfg: LMConfig | None = None) -> LlamaLM:
    """A fresh (untrained) model of ``cfg``'s shape."""
    return LlamaLM(cfg or LMConfig())


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------


def windows(tokens: np.ndarray, ctx: int) -> np.ndarray:
    """Non-overlapping [n, ctx + 1] windows (inputs + next-token targets) covering ``tokens``."""
    n = (tokens.size - 1) // ctx
    idx = np.arange(n)[:, None] * ctx + np.arange(ctx + 1)[None, :]
    return tokens[idx].astype(np.int64)


@torch.no_grad()
def token_nll(model: nn.Module, win: np.ndarray, batch: int = 64) -> np.ndarray:
    """Per-token next-token NLL (nats), shape [n_windows, ctx], in eval mode."""
    model.eval()
    out = []
    for i in range(0, len(win), batch):
        w = torch.from_numpy(win[i:i + batch])
        logits = model(w[:, :-1])
        out.append(F.cross_entropy(logits.transpose(1, 2), w[:, 1:], reduction="none").numpy())
    return np.concatenate(out)


def train(cfg: LMConfig, cache: Path, minutes: float, steps: int, batch: int, lr: float, seed: int) -> dict:
    """Train with AdamW + cosine decay; keep the best-validation checkpoint in ``cache/model.pt``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_tok = np.load(cache / "tokens_train.npy")
    val_win = windows(np.load(cache / "tokens_val.npy"), cfg.ctx)
    model = build_model(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))
    warm = 100
    t0 = time.time()

    def progress(s: int) -> float:
        # The cosine runs over ``steps`` or the wall-clock budget, whichever ends first, so a contended
        # machine still ends training at a decayed learning rate (the step count is then in the log).
        return min(1.0, max(s / steps, (time.time() - t0) / 60 / minutes))

    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress(s)))))
    best, log = float("inf"), []
    step = 0
    for step in range(1, steps + 1):
        model.train()
        starts = rng.integers(0, train_tok.size - cfg.ctx - 1, size=batch)
        w = torch.from_numpy(train_tok[starts[:, None] + np.arange(cfg.ctx + 1)].astype(np.int64))
        loss = F.cross_entropy(model(w[:, :-1]).transpose(1, 2), w[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        done = (time.time() - t0) / 60 >= minutes
        if step % 100 == 0 or step == steps or done:
            val = float(token_nll(model, val_win).mean())
            log.append({"step": step, "train_loss": loss.item(), "val_nll": val, "val_ppl": math.exp(val),
                        "minutes": round((time.time() - t0) / 60, 2)})
            print(f"step {step:5d}  train {loss.item():.3f}  val nll {val:.4f}  ppl {math.exp(val):7.2f}  "
                  f"{log[-1]['minutes']:.1f} min", flush=True)
            if val < best:
                best = val
                torch.save({"state": model.state_dict(), "config": asdict(cfg), "log": log}, cache / "model.pt.tmp")
                os.replace(cache / "model.pt.tmp", cache / "model.pt")
        if done:
            break
    ck = torch.load(cache / "model.pt", weights_only=False)
    ck["log"] = log
    ck["train"] = {"steps": step, "batch": batch, "lr": lr, "seed": seed, "minutes": round((time.time() - t0) / 60, 1),
                   "torch": torch.__version__, "threads": torch.get_num_threads()}
    torch.save(ck, cache / "model.pt")
    return ck


def export_onnx(model: LlamaLM, path: Path, seq: int | None = None) -> None:
    """Float ONNX of ``model`` (TorchScript exporter, opset 17), input ``input_ids`` [1, seq] -> ``logits``."""
    seq = seq or model.cfg.ctx
    model.eval()
    ids = torch.zeros(1, seq, dtype=torch.int64)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (ids,), str(tmp), dynamo=False, opset_version=17, input_names=["input_ids"],
                      output_names=["logits"])
    os.replace(tmp, path)


def load(cache: Path = CACHE) -> tuple[LlamaLM, dict]:
    """The trained model (eval mode, dropout off) and its checkpoint dict; raises if not trained yet."""
    if not (cache / "model.pt").exists():
        raise FileNotFoundError(f"{cache / 'model.pt'} not found: run .venv/bin/python bench/laser_lm.py first")
    ck = torch.load(cache / "model.pt", weights_only=False)
    cfg = LMConfig(**{**ck["config"], "dropout": 0.0})
    model = build_model(cfg)
    model.load_state_dict(ck["state"])
    return model.eval(), ck


def heldout(split: str = "test", cache: Path = CACHE, ctx: int | None = None) -> np.ndarray:
    """Held-out windows [n, ctx + 1] of ``split`` (``val`` or ``test``)."""
    cfg = LMConfig(**torch.load(cache / "model.pt", weights_only=False)["config"]) if ctx is None else None
    return windows(np.load(cache / f"tokens_{split}.npy"), ctx or cfg.ctx)  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=35.0, help="wall-clock training budget")
    ap.add_argument("--steps", type=int, default=4000, help="schedule length (training stops at --minutes too)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: OpenMP teams stall badly when other work shares the cores)")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--retrain", action="store_true", help="ignore a cached model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = LMConfig()
    if not (args.cache / "tokens_test.npy").exists():
        t = time.time()
        build_data(cfg, args.cache)
        print(f"data: {json.loads((args.cache / 'data.json').read_text())} ({time.time() - t:.0f} s)")
    if args.retrain or not (args.cache / "model.pt").exists():
        train(cfg, args.cache, args.minutes, args.steps, args.batch, args.lr, args.seed)
    model, ck = load(args.cache)
    export_onnx(model, args.cache / "model.onnx")
    test = token_nll(model, heldout("test", args.cache))
    print(f"test NLL {test.mean():.4f} nats/token, PPL {math.exp(test.mean()):.2f} over {test.size} tokens; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; onnx {args.cache / 'model.onnx'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
