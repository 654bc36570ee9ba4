"""KV-cache decoding through lasercc: a prefix, then N decode steps, logits compared step by step with onnxruntime.

The model: a LLaMA-style decoder from ``transformers`` (random weights; GQA: 2 query heads, 1 KV head; RoPE;
RMSNorm; SiLU-gated MLP; eager attention) -- ``--arch gpt2`` gives a GPT-2 -- exported by TorchScript with
optimum's naming: inputs ``input_ids``, ``attention_mask``, ``position_ids``, ``past_key_values.{i}.key|value``;
outputs ``logits``, ``present.{i}.key|value`` (dynamic batch / sequence / past axes).

lasercc compiles static shapes, so the loop uses two artifacts of the same ONNX file (README, "KV-cache
decoding"):
  * prefill: ``input_ids`` [1, P] with a one-slot dummy past (masked out by ``attention_mask``);
  * decode: ``input_ids`` [1, 1] with a past window of W slots. The caches are ordinary activations (graph
    inputs and outputs with their own code types, calibrated on caches the float model produced); each step's
    ``present.*`` (W + 1 slots) minus its oldest slot is the next ``past_key_values.*``, and unused slots are
    masked out by ``attention_mask`` = 0. Position ids count the real tokens.

Both runtimes follow the same token sequence (the prompt, then onnxruntime's own greedy choices: teacher
forcing, so one mismatch does not derail the rest) and each feeds its *own* ``present.*`` back: the cosine
includes any drift of the compiled cache. Reported per step: cosine of the logits and argmax agreement.

    .venv/bin/python bench/kv_decode.py [--arch llama|gpt2] [--prefix 6] [--steps 10] [--window 20] [--calib 32]
                                        [--no-write]

Writes bench/results/kv_decode.md. Bench-only dependency: transformers.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import lasercc  # noqa: E402

OUT = Path(__file__).parent / "results" / "kv_decode.md"
LAYERS, HIDDEN, HEADS, VOCAB = 2, 64, 4, 128


def build(arch: str, dst: Path) -> tuple[int, int]:
    """Export a random-weight decoder with optimum-style cache inputs/outputs; (kv heads, head dim)."""
    import transformers as tf
    from transformers import DynamicCache

    torch.manual_seed(0)
    if arch == "llama":
        cfg = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                             num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS // 2,
                             max_position_embeddings=256, initializer_range=0.1, attn_implementation="eager")
        model, kvh = tf.LlamaForCausalLM(cfg).eval(), HEADS // 2
    else:
        cfg = tf.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=256,
                            initializer_range=0.1, attn_implementation="eager", bos_token_id=0, eos_token_id=0)
        model, kvh = tf.GPT2LMHeadModel(cfg).eval(), HEADS
    hd = HIDDEN // HEADS

    class Step(torch.nn.Module):
        """Tensors in, tensors out: the cache object is built from and taken apart into past/present."""

        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                    *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            cache = DynamicCache()
            for i in range(LAYERS):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
            res = [out.logits]
            for layer in out.past_key_values.layers:
                res += [layer.keys, layer.values]
            return tuple(res)

    names, outs = io_names()
    t = 3
    args = (torch.zeros(1, 1, dtype=torch.long), torch.ones(1, t + 1, dtype=torch.long),
            torch.full((1, 1), t, dtype=torch.long)) + tuple(torch.randn(1, kvh, t, hd) for _ in range(2 * LAYERS))
    dyn = {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "t"}, "position_ids": {0: "b", 1: "s"},
           "logits": {0: "b", 1: "s"}} | {n: {0: "b", 2: "p"} for n in names[3:]} | {n: {0: "b", 2: "t"}
                                                                                       for n in outs[1:]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Step(), args, str(dst), dynamo=False, opset_version=17, input_names=names,
                          output_names=outs, dynamic_axes=dyn)
    return kvh, hd


def io_names() -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{t}" for i in range(LAYERS) for t in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past], ["logits", *(p.replace("past_key_values", "present")
                                                                                 for p in past)]


# ---- the decode loop (the same code drives onnxruntime and lasercc) ------------------------------------------


class Runner:
    """``run(feeds) -> {name: array}`` for one runtime: onnxruntime (any shape) or a prefill/decode artifact pair."""

    def __init__(self, ort_path: Path | None = None, prefill=None, decode=None):  # noqa: ANN001
        self.sess = None
        if ort_path is not None:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            self.sess = ort.InferenceSession(str(ort_path), so, providers=["CPUExecutionProvider"])
        self.prefill, self.decode = prefill, decode

    def run(self, feeds: dict[str, np.ndarray], step: bool) -> dict[str, np.ndarray]:
        if self.sess is not None:
            names = [o.name for o in self.sess.get_outputs()]
            return dict(zip(names, self.sess.run(None, feeds)))
        art = self.decode if step else self.prefill
        return {k: np.asarray(v) for k, v in art.run(feeds).items()}


def prefill_feeds(prompt: np.ndarray, kvh: int, hd: int) -> dict[str, np.ndarray]:
    """Prompt [1, P] with a one-slot dummy past (masked out)."""
    p = prompt.shape[1]
    names, _ = io_names()
    f = {"input_ids": prompt.astype(np.int64), "attention_mask": np.array([[0] + [1] * p], np.int64),
         "position_ids": np.arange(p, dtype=np.int64)[None]}
    return f | {k: np.zeros((1, kvh, 1, hd), np.float32) for k in names[3:]}


def decode(runner: Runner, prompt: np.ndarray, tokens: list[int], window: int, kvh: int, hd: int,
           feeds_out: list | None = None) -> list[np.ndarray]:
    """Prefix, then one step per token of ``tokens`` (teacher forcing); the logits of the prefix's last
    position and of every step. The runner's own present.* are fed back as past_key_values.*."""
    names, outs = io_names()
    r = runner.run(prefill_feeds(prompt, kvh, hd), step=False)
    logits = [r["logits"][:, -1]]
    p = prompt.shape[1]
    # window of W slots, right-aligned: [empty..., dummy, prompt tokens]; valid marks the real ones
    past = {}
    for k, o in zip(names[3:], outs[1:]):
        w = np.zeros((1, kvh, window, hd), np.float32)
        w[:, :, window - (p + 1):] = r[o]
        past[k] = w
    valid = np.zeros(window, bool)
    valid[window - p:] = True
    for i, tok in enumerate(tokens):
        f = {"input_ids": np.array([[tok]], np.int64),
             "attention_mask": np.concatenate([valid, [True]]).astype(np.int64)[None],
             "position_ids": np.array([[p + i]], np.int64)} | past
        if feeds_out is not None:
            feeds_out.append(f)
        r = runner.run(f, step=True)
        logits.append(r["logits"][:, -1])
        past = {k: r[o][:, :, 1:] for k, o in zip(names[3:], outs[1:])}  # drop the oldest slot
        valid = np.concatenate([valid, [True]])[1:]
    return logits


def cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="llama", choices=["llama", "gpt2"])
    ap.add_argument("--prefix", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 8])
    ap.add_argument("--calib", type=int, default=32, help="calibration prompts (each with its decode steps)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.window < args.prefix + args.steps + 1:
        print("note: the window is smaller than prefix + steps + 1: the oldest tokens slide out (both runtimes)")
    rng = np.random.default_rng(0)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.arch}_kv.onnx"
        kvh, hd = build(args.arch, path)
        ref = Runner(path)
        # calibration: prompts and decode steps of the float model in onnxruntime (realistic caches)
        cal_pre: dict[str, list] = {}
        cal_dec: list[dict] = []
        for _ in range(args.calib):
            prompt = rng.integers(0, VOCAB, (1, args.prefix))
            for k, v in prefill_feeds(prompt, kvh, hd).items():
                cal_pre.setdefault(k, []).append(v)
            decode(ref, prompt, list(rng.integers(0, VOCAB, args.steps)), args.window, kvh, hd, cal_dec)
        pre = {k: np.concatenate(v) for k, v in cal_pre.items()}
        dec = {k: np.concatenate([f[k] for f in cal_dec]) for k in cal_dec[0]}
        prompt = rng.integers(0, VOCAB, (1, args.prefix))
        tokens: list[int] = []  # onnxruntime's greedy continuation: the sequence both runtimes are fed
        for _ in range(args.steps):
            ref_logits = decode(ref, prompt, tokens, args.window, kvh, hd)
            tokens.append(int(np.argmax(ref_logits[-1])))
        ref_logits = decode(ref, prompt, tokens, args.window, kvh, hd)
        n_nodes = len(onnx.load(str(path)).graph.node)
        for bits in args.bits:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a_pre = lasercc.compile(path, bits=bits, calibration=pre, progress=False,
                                        input_shapes={k: (1, *v.shape[1:]) for k, v in pre.items()})
                a_dec = lasercc.compile(path, bits=bits, calibration=dec, progress=False,
                                        input_shapes={k: (1, *v.shape[1:]) for k, v in dec.items()})
            t_c = time.perf_counter() - t0
            got = decode(Runner(prefill=a_pre, decode=a_dec), prompt, tokens, args.window, kvh, hd)
            cs = [cos(a, b) for a, b in zip(ref_logits, got)]
            agree = [int(np.argmax(a) == np.argmax(b)) for a, b in zip(ref_logits, got)]
            lines.append((bits, cs, agree, t_c, len(a_dec.graph.nodes)))
            print(bits, [f"{c:.4f}" for c in cs], agree, f"{t_c:.1f}s", flush=True)
    head = "| --bits | " + " | ".join(["prefix"] + [f"step {i + 1}" for i in range(args.steps)]) + \
        " | min cos | argmax agree | compile s (both) | decode IR nodes |"
    rows = [head, "|" + "---|" * (args.steps + 6)]
    for bits, cs, agree, t_c, nn in lines:
        rows.append(f"| {bits} | " + " | ".join(f"{c:.4f}{'' if a else ' (x)'}" for c, a in zip(cs, agree)) +
                    f" | {min(cs):.4f} | {sum(agree)}/{len(agree)} | {t_c:.1f} | {nn} |")
    md = "\n".join([
        f"# KV-cache decoding: prefix + {args.steps} decode steps, lasercc vs onnxruntime ({args.arch})", "",
        f"Command: `.venv/bin/python bench/kv_decode.py --arch {args.arch} --prefix {args.prefix} --steps "
        f"{args.steps} --window {args.window} --calib {args.calib}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs; onnxruntime {ort.__version__}, "
        f"torch {torch.__version__}  ",
        f"Model: random-weight {args.arch} ({LAYERS} layers, hidden {HIDDEN}, {HEADS} heads, {kvh} KV heads, "
        f"vocab {VOCAB}), TorchScript export with past_key_values.* / present.* ({n_nodes} ONNX nodes). "
        f"Prefix {args.prefix} tokens, cache window {args.window} slots. Each cell: cosine of the next-token "
        "logits, lasercc (NumPy backend, its own caches fed back) vs onnxruntime (its own caches), same tokens "
        "(onnxruntime's greedy continuation); (x) = argmax differs. Calibration: " f"{args.calib} random prompts "
        f"and their {args.steps}-step decodes in onnxruntime (MinMax ranges: a value beyond them saturates).", "",
        *rows, ""])
    print(md)
    if not args.no_write:
        out = OUT if args.arch == "llama" else OUT.with_name(f"kv_decode_{args.arch}.md")
        out.write_text(md)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
