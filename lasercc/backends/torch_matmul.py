"""Exact integer matmuls for the torch executor, chosen by a provable bound.

A Soma or DecodeMAC needs ``x @ w`` on integers *exactly* (the accumulator is then requantized).
Float hardware is exact on integers as long as every partial sum, in whatever order the kernel
adds, stays below the float's integer limit: 2^53 for float64, 2^24 for float32 accumulation.
Because |partial sum| <= sum_k |x_k| * |w_kn| whatever the order, a bound on that sum proves the
result exact. Where one product does not fit, the operands are cut into **slices** (bit-serial in
bytes: ``x = sum_j x_j 2^(s*j)`` with unsigned low slices and a signed top slice) and K into
**tiles**, each slice/tile product is exact, and the pieces are recombined in int64.

Engines (the float type of the operands and of the accumulator):

``f64``   float64 operands and accumulation (CPU default; exact below 2^53).
``i64``   int64 matmul (CPU only; always exact, slow) -- the CPU fallback above 2^53.
``fp16``  fp16 operands holding integers of at most 11 bits, fp32 accumulation through
          ``torch.mm(..., out_dtype=torch.float32)`` (CUDA; ~585 TFLOPS measured on an H100).
``fp32``  fp32 operands with TF32 disabled, fp32 accumulation (CUDA when ``out_dtype`` is
          missing; also runs on CPU, which is how the test suite exercises slicing without a GPU).
``int8``  ``torch._int_mm`` int8 x int8 -> int32 (CUDA; exact below 2^31; shapes padded to its
          constraints). Slices of at most 7 unsigned bits so they fit int8.

Nothing here rounds silently: a plan that cannot be proved exact is never produced, and forcing an
engine that cannot hold the operands raises :class:`PrecisionError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lasercc.errors import LasercError

ENGINES = ("auto", "f64", "i64", "fp16", "fp32", "int8")
_LIMIT = {"f64": 2.0**53, "fp16": 2.0**24, "fp32": 2.0**24, "int8": 2.0**31 - 1}
# largest |integer| an operand slice may hold exactly in the engine's operand type
_OPERAND_BITS = {"fp16": 11, "fp32": 24, "int8": 7, "f64": 53}


class PrecisionError(LasercError):
    """Operands too wide for the exact integer path that was asked for."""


@dataclass(frozen=True)
class SlicePlan:
    """How to cut one operand: ``bits`` per slice, ``count`` slices; the top slice is signed."""

    bits: int
    count: int

    def shifts(self) -> list[int]:
        return [self.bits * j for j in range(self.count)]


@dataclass(frozen=True)
class MatmulPlan:
    """An exact way to compute x @ w: engine, operand slicing and K tiling (tile length)."""

    engine: str
    x_slices: SlicePlan
    w_slices: SlicePlan
    tile: int

    @property
    def products(self) -> int:
        return self.x_slices.count * self.w_slices.count


def _bitlen(lo: int, hi: int) -> int:
    """Bits needed for a two's-complement-free magnitude split of [lo, hi] (max |v| bit length)."""
    return max(1, int(max(abs(lo), abs(hi))).bit_length())


def _slice_plan(lo: int, hi: int, bits: int) -> SlicePlan:
    return SlicePlan(bits, max(1, -(-_bitlen(lo, hi) // bits)))


def _slice_range(lo: int, hi: int, plan: SlicePlan, j: int) -> tuple[int, int]:
    """Range of slice j: low slices are unsigned ``bits``-bit, the top slice holds the sign."""
    if j < plan.count - 1:
        return 0, (1 << plan.bits) - 1
    sh = plan.bits * (plan.count - 1)
    return lo >> sh, hi >> sh


def slice_operand(v: torch.Tensor, plan: SlicePlan) -> list[torch.Tensor]:
    """Cut int64 ``v`` into slices with v == sum_j slice_j * 2^(bits*j) (arithmetic top shift)."""
    if plan.count == 1:
        return [v]
    mask = (1 << plan.bits) - 1
    out = [(v >> (plan.bits * j)) & mask for j in range(plan.count - 1)]
    out.append(v >> (plan.bits * (plan.count - 1)))
    return out


def slice_numpy(v: np.ndarray, plan: SlicePlan) -> list[np.ndarray]:
    """The same cut for NumPy constants (weights are sliced once, at prepare time)."""
    if plan.count == 1:
        return [v]
    mask = (1 << plan.bits) - 1
    out = [(v >> (plan.bits * j)) & mask for j in range(plan.count - 1)]
    out.append(v >> (plan.bits * (plan.count - 1)))
    return out


def _tile_bound(absw: np.ndarray, tile: int) -> float:
    """max over K-tiles and columns of sum_k |w_kn| within the tile."""
    k = absw.shape[0]
    if k == 0:
        return 0.0
    pad = (-k) % tile
    if pad:
        absw = np.concatenate([absw, np.zeros((pad,) + absw.shape[1:], dtype=absw.dtype)])
    return float(absw.reshape(-1, tile, *absw.shape[1:]).sum(axis=1).max(initial=0))


def _cost(products: int, k: int, tiles: int) -> float:
    """Work of a plan per output element: K multiply-adds per slice product, plus converting and
    adding one partial result per product and tile (about as dear as 64 multiply-adds)."""
    return products * max(k, 1) + products * tiles * 64.0


def plan_const_matmul(x_lo: int, x_hi: int, w: np.ndarray, engine: str) -> MatmulPlan:
    """The cheapest exact plan for x @ w with x in [x_lo, x_hi] and the constant integer ``w``.

    Cost (:func:`_cost`) counts the multiply-adds of each slice product plus the recombination of
    each (product, tile) partial; the bound uses the real weight column sums per tile, so typical
    int8 layers need a single product even at K = 768, and wider K is tiled rather than sliced.
    """
    w = np.asarray(w, dtype=np.int64)
    w_lo, w_hi = (int(w.min()), int(w.max())) if w.size else (0, 0)
    k = w.shape[0]
    if engine == "i64":
        return MatmulPlan("i64", _slice_plan(x_lo, x_hi, 64), _slice_plan(w_lo, w_hi, 64), max(k, 1))
    limit, opbits = _LIMIT[engine], _OPERAND_BITS[engine]
    best: MatmulPlan | None = None
    best_cost = None
    for wb in sorted({min(opbits, _bitlen(w_lo, w_hi)), min(opbits, 8)}, reverse=True):
        wp = _slice_plan(w_lo, w_hi, wb)
        wsl = slice_numpy(w, wp)
        # slices must be representable in the operand type (signed top slice included)
        if any(_bitlen(int(s.min(initial=0)), int(s.max(initial=0))) > opbits for s in wsl):
            continue
        absw = [np.abs(s) for s in wsl]
        for xb in sorted({min(opbits, _bitlen(x_lo, x_hi)), min(opbits, 8), 4, 2, 1}, reverse=True):
            xp = _slice_plan(x_lo, x_hi, xb)
            xmax = max(max(abs(a), abs(b)) for a, b in (_slice_range(x_lo, x_hi, xp, j) for j in range(xp.count)))
            if _bitlen(0, xmax) > opbits:
                continue
            tiles = 1
            while True:
                tile = -(-k // tiles) if k else 1
                if all(xmax * _tile_bound(a, tile) < limit for a in absw):
                    break
                if tile == 1:
                    tile = 0
                    break
                tiles = max(tiles + 1, int(tiles * 1.25))
            if tile == 0:
                continue
            cost = _cost(xp.count * wp.count, k, -(-k // tile) if k else 1)
            if best_cost is None or cost < best_cost:
                best, best_cost = MatmulPlan(engine, xp, wp, tile), cost
    if best is None:  # pragma: no cover - 1-bit slices with tile 1 always fit every engine
        raise PrecisionError(f"no exact {engine} plan for x in [{x_lo}, {x_hi}] and weights in [{w_lo}, {w_hi}]")
    return best


def plan_dynamic_matmul(a_lo: int, a_hi: int, b_lo: int, b_hi: int, k: int, engine: str) -> MatmulPlan:
    """An exact plan for activation x activation (both operands known only by their ranges)."""
    if engine == "i64":
        return MatmulPlan("i64", _slice_plan(a_lo, a_hi, 64), _slice_plan(b_lo, b_hi, 64), max(k, 1))
    limit, opbits = _LIMIT[engine], _OPERAND_BITS[engine]
    best, best_cost = None, None
    for bits in sorted({min(opbits, max(_bitlen(a_lo, a_hi), _bitlen(b_lo, b_hi))), min(opbits, 8), 4, 2, 1},
                       reverse=True):
        ap, bp = _slice_plan(a_lo, a_hi, bits), _slice_plan(b_lo, b_hi, bits)
        amax = max(max(abs(x) for x in _slice_range(a_lo, a_hi, ap, j)) for j in range(ap.count))
        bmax = max(max(abs(x) for x in _slice_range(b_lo, b_hi, bp, j)) for j in range(bp.count))
        if max(_bitlen(0, amax), _bitlen(0, bmax)) > opbits:
            continue
        per = amax * bmax
        if per == 0:
            tile = max(k, 1)
        else:
            tile = int(min(max(k, 1), (limit - 1) // per))
        if tile < 1:
            continue
        cost = _cost(ap.count * bp.count, k, -(-max(k, 1) // tile))
        if best_cost is None or cost < best_cost:
            best, best_cost = MatmulPlan(engine, ap, bp, tile), cost
    if best is None:  # pragma: no cover
        raise PrecisionError(f"no exact {engine} plan for [{a_lo}, {a_hi}] x [{b_lo}, {b_hi}], K={k}")
    return best


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """TF32 (and oneDNN's bf16 for 'medium' precision) would round fp32 operands: force full fp32
    matmuls for the duration of a product."""
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    old_prec = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_prec)  # (this also sets allow_tf32: restore it last)
        torch.backends.cuda.matmul.allow_tf32 = old_tf32


def _pad_int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch._int_mm on CUDA wants M > 16 and K, N multiples of 8: pad with zeros (exact)."""
    m, k = a.shape
    n = b.shape[1]
    pm, pk, pn = max(0, 17 - m), (-k) % 8, (-n) % 8
    if pm or pk:
        a = torch.nn.functional.pad(a, (0, pk, 0, pm))
    if pk or pn:
        b = torch.nn.functional.pad(b, (0, pn, 0, pk))
    return torch._int_mm(a.contiguous(), b.contiguous())[:m, :n]


def engine_operand(v: torch.Tensor, engine: str) -> torch.Tensor:
    """An int64 slice converted to the engine's operand type (exact by the plan's construction)."""
    return v.to({"f64": torch.float64, "i64": torch.int64, "fp16": torch.float16, "fp32": torch.float32,
                 "int8": torch.int8}[engine])


def engine_mm(a: torch.Tensor, b: torch.Tensor, engine: str) -> torch.Tensor:
    """One exact product of engine operands, returned as int64 (batched dims broadcast)."""
    if engine == "i64":
        return torch.matmul(a, b)
    if engine == "f64":
        return torch.matmul(a, b).to(torch.int64)
    if engine == "fp32":
        with _no_tf32():
            return torch.matmul(a, b).to(torch.int64)
    if engine == "fp16":
        if a.dim() == 2 and b.dim() == 2:
            return torch.mm(a, b, out_dtype=torch.float32).to(torch.int64)
        if not _has_out_dtype(a.device, batched=True):
            # fp16 slices are exact fp32 values and the bound is the same 2^24: fp32 kernels, no TF32
            with _no_tf32():
                return torch.matmul(a.float(), b.float()).to(torch.int64)
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        aa = a.expand(*batch, *a.shape[-2:]).reshape(-1, *a.shape[-2:])
        bb = b.expand(*batch, *b.shape[-2:]).reshape(-1, *b.shape[-2:])
        out = torch.bmm(aa, bb, out_dtype=torch.float32)
        return out.reshape(*batch, a.shape[-2], b.shape[-1]).to(torch.int64)
    if engine == "int8":
        if a.dim() == 2 and b.dim() == 2:
            return _pad_int_mm(a, b).to(torch.int64)
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        aa = a.expand(*batch, *a.shape[-2:]).reshape(-1, *a.shape[-2:])
        bb = b.expand(*batch, *b.shape[-2:]).reshape(-1, *b.shape[-2:])
        out = torch.stack([_pad_int_mm(x, y) for x, y in zip(aa, bb)])  # _int_mm has no batched form
        return out.reshape(*batch, a.shape[-2], b.shape[-1]).to(torch.int64)
    raise ValueError(f"unknown matmul engine {engine!r}")


class ConstMatmul:
    """x @ w for one constant weight, with the weight slices converted once for the engine."""

    def __init__(self, w: np.ndarray, x_lo: int, x_hi: int, engine: str, device: torch.device,
                 run_as: str | None = None):
        """``run_as`` executes a plan made for ``engine`` on another engine's kernels: the CPU test
        suite runs fp16 and int8 plans (slicing, tiling, recombination) with fp32 / int64 kernels,
        which are exact under the same bounds."""
        self.plan = plan_const_matmul(x_lo, x_hi, w, engine)
        self.run_as = run_as or engine
        self.k = w.shape[0]
        w64 = np.asarray(w, dtype=np.int64)
        self.tiles = -(-self.k // self.plan.tile) if self.k else 1
        self.kpad = self.tiles * self.plan.tile if self.k else 0
        self.w_slices = []
        for s in slice_numpy(w64, self.plan.w_slices):
            t = torch.as_tensor(s, device=device)
            if self.tiles > 1:  # zero rows pad K to whole tiles (exact), tiles become a batch axis
                t = torch.nn.functional.pad(t, (0, 0, 0, self.kpad - self.k))
                t = t.reshape(self.tiles, self.plan.tile, t.shape[-1])
            self.w_slices.append(engine_operand(t, self.run_as))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.plan
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        acc: torch.Tensor | None = None
        for xs, xsh in zip(slice_operand(x2, p.x_slices), p.x_slices.shifts()):
            if self.tiles > 1:  # (M, K) -> (tiles, M, tile): one batched product for all tiles
                xs = torch.nn.functional.pad(xs, (0, self.kpad - self.k))
                xs = xs.reshape(xs.shape[0], self.tiles, p.tile).transpose(0, 1)
            xe = engine_operand(xs, self.run_as)
            for ws, wsh in zip(self.w_slices, p.w_slices.shifts()):
                term = engine_mm(xe, ws, self.run_as)
                if self.tiles > 1:
                    term = term.sum(dim=0)  # int64: exact
                if xsh + wsh:
                    term = term << (xsh + wsh)
                acc = term if acc is None else acc + term
        assert acc is not None
        return acc.reshape(*lead, acc.shape[-1])


def dynamic_matmul(a: torch.Tensor, b: torch.Tensor, plan: MatmulPlan, run_as: str | None = None) -> torch.Tensor:
    """Exact a @ b (int64, batched) for activations, by ``plan`` from :func:`plan_dynamic_matmul`
    (``run_as`` as in :class:`ConstMatmul`)."""
    eng = run_as or plan.engine
    k = a.shape[-1]
    acc: torch.Tensor | None = None
    b_sl = [engine_operand(s, eng) for s in slice_operand(b, plan.w_slices)]
    for xs, xsh in zip(slice_operand(a, plan.x_slices), plan.x_slices.shifts()):
        xe = engine_operand(xs, eng)
        for ws, wsh in zip(b_sl, plan.w_slices.shifts()):
            for k0 in range(0, max(k, 1), plan.tile):
                term = engine_mm(xe[..., k0:k0 + plan.tile], ws[..., k0:k0 + plan.tile, :], eng)
                if xsh + wsh:
                    term = term << (xsh + wsh)
                acc = term if acc is None else acc + term
    assert acc is not None
    return acc


def default_engine(device: torch.device, requested: str = "auto") -> str:
    """The engine for a device: f64 on CPU; fp16 with fp32 accumulation on CUDA when this torch
    supports ``out_dtype`` (probed once on the device), else fp32 without TF32."""
    if requested not in ENGINES:
        raise LasercError(f"unknown matmul engine {requested!r} (choose from {', '.join(ENGINES)})")
    if requested != "auto":
        if device.type != "cuda" and requested in ("fp16", "int8"):
            raise LasercError(f"matmul engine {requested!r} needs a CUDA device")
        if device.type == "cuda" and requested == "i64":
            raise LasercError("matmul engine 'i64' runs on the CPU only (CUDA has no int64 matmul)")
        return requested
    if device.type != "cuda":
        return "f64"
    return "fp16" if _has_out_dtype(device) else "fp32"


_OUT_DTYPE: dict[tuple[str, bool], bool] = {}


def _has_out_dtype(device: torch.device, batched: bool = False) -> bool:
    """Whether this torch offers fp16 x fp16 -> fp32 ``mm`` (or ``bmm``) on ``device``: probed once,
    on the device, and checked for the right answer (2.0 + 2.0 = 4 cannot round)."""
    key = (str(device), batched)
    if key not in _OUT_DTYPE:
        try:
            if batched:
                a = torch.ones((2, 2, 2), dtype=torch.float16, device=device)
                ok = bool((torch.bmm(a, a, out_dtype=torch.float32) == 2).all())
            else:
                a = torch.ones((2, 2), dtype=torch.float16, device=device)
                ok = bool((torch.mm(a, a, out_dtype=torch.float32) == 2).all())
        except (RuntimeError, TypeError, NotImplementedError):
            ok = False
        _OUT_DTYPE[key] = ok
    return _OUT_DTYPE[key]


def cpu_plan_exact(bound: float) -> str:
    """CPU engine for a product whose partial sums are bounded by ``bound``: f64 below 2^53, else i64."""
    return "f64" if bound < _LIMIT["f64"] else "i64"


def describe(plan: MatmulPlan) -> dict[str, Any]:
    """A plan as plain data (for reports and the benchmark)."""
    return {"engine": plan.engine, "x_slices": plan.x_slices.count, "x_slice_bits": plan.x_slices.bits,
            "w_slices": plan.w_slices.count, "tile": plan.tile}
