"""A tiny Vision Transformer end to end: build it in torch, export it to ONNX, compile it with lasercc, simulate it
bit-exactly and compare with onnxruntime -- the non-text model of the README (nothing is downloaded).

The model is ViT's graph at toy size, written as transformers' ViT writes it (so the export has the same ops):
a Conv2d patch embedding (kernel = stride = 4 on a 3x16x16 image: 16 patches), a learned CLS token concatenated
in front, learned position embeddings added, one pre-LayerNorm encoder layer (4-head softmax attention, GELU
MLP), a final LayerNorm, and two heads: the pooled CLS (dense + tanh, ViT's pooler) and the mean over tokens
(ReduceMean). Weights are random (``torch.manual_seed(0)``); what is shown is fidelity to onnxruntime, not
accuracy.

    .venv/bin/python examples/tiny_vit.py [--out out/tiny_vit] [--bits 8]

It writes ``tiny_vit.onnx``, ``calib.npz`` and ``input.npz`` under ``--out`` and runs::

    lasercc compile tiny_vit.onnx --calibration calib.npz --bits 8 --input-shape pixel_values=1,3,16,16 \
        -o <out>/artifact
    lasercc simulate <out>/artifact --input input.npz --compare-onnx tiny_vit.onnx
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

IMAGE, PATCH, CHANNELS, D, HEADS = 16, 4, 3, 32, 4


class Layer(nn.Module):
    """One pre-LayerNorm encoder layer (ViT's): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-12), nn.LayerNorm(D, eps=1e-12)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(D, 2 * D), nn.Linear(2 * D, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        h = self.ln1(x)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, s, HEADS, D // HEADS).transpose(1, 2)

        q, k, v = heads(self.q(h)), heads(self.k(h)), heads(self.v(h))
        p = torch.softmax(q @ k.transpose(-1, -2) / (D // HEADS) ** 0.5, dim=-1)
        x = x + self.o((p @ v).transpose(1, 2).reshape(b, s, D))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class TinyViT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        n = (IMAGE // PATCH) ** 2
        self.patch = nn.Conv2d(CHANNELS, D, kernel_size=PATCH, stride=PATCH)
        self.cls = nn.Parameter(0.5 * torch.randn(1, 1, D))
        self.pos = nn.Parameter(0.5 * torch.randn(1, n + 1, D))
        self.layer, self.ln = Layer(), nn.LayerNorm(D, eps=1e-12)
        self.pool = nn.Linear(D, D)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), dim=1) + self.pos
        x = self.ln(self.layer(x))
        return x, torch.tanh(self.pool(x[:, 0])), x.mean(dim=1)


OUTPUTS = ("last_hidden_state", "pooler_output", "mean_pooled")


def export(dst: Path, opset: int = 17) -> Path:
    """TorchScript export with a dynamic batch axis (what transformers' exports have)."""
    torch.manual_seed(0)
    model = TinyViT().eval()
    x = torch.zeros(1, CHANNELS, IMAGE, IMAGE)
    dyn = {k: {0: "batch"} for k in ("pixel_values", *OUTPUTS)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(dst), dynamo=False, opset_version=opset, input_names=["pixel_values"],
                          output_names=list(OUTPUTS), dynamic_axes=dyn)
    import onnx

    m = onnx.load(str(dst))
    m.ir_version = 8
    onnx.save(m, str(dst))
    return dst


def images(rows: int, seed: int) -> np.ndarray:
    """Normalized-pixel-like inputs: smooth random fields plus noise, ~N(0, 1) per channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE, 0:IMAGE] / IMAGE
    f = rng.uniform(0.5, 3.0, (rows, CHANNELS, 2, 1, 1))
    base = np.sin(2 * np.pi * (f[:, :, 0] * xx + f[:, :, 1] * yy))
    return (base + 0.3 * rng.normal(0, 1, (rows, CHANNELS, IMAGE, IMAGE))).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/tiny_vit"))
    ap.add_argument("--bits", type=int, default=8)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    model = export(a.out / "tiny_vit.onnx")
    np.savez(a.out / "calib.npz", pixel_values=images(32, 1))
    np.savez(a.out / "input.npz", pixel_values=images(4, 2))
    for args in (["compile", str(model), "--calibration", str(a.out / "calib.npz"), "--bits", str(a.bits),
                  "--input-shape", f"pixel_values=1,{CHANNELS},{IMAGE},{IMAGE}", "-o", str(a.out / "artifact")],
                 ["simulate", str(a.out / "artifact"), "--input", str(a.out / "input.npz"), "--compare-onnx",
                  str(model)]):
        print(f"\n$ lasercc {' '.join(args)}", flush=True)
        r = subprocess.run([sys.executable, "-m", "lasercc", *args], check=False)
        if r.returncode:
            return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
