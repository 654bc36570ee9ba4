"""Mutators and targets for fuzzing lasercc's readers: ONNX models, ``.npz`` files, ``.lir`` text, artifacts.

The contract being fuzzed (issue 17): for any bytes, a reader returns normally or raises a
:class:`~lasercc.errors.LasercError` -- never another exception (a crash: a bug). Used by the
hypothesis tests (``tests/test_fuzz_readers.py``, a few hundred cases) and by the long campaigns of
``bench/fuzz_campaign.py`` (cases/s and crashes found). Every mutant is a pure function of a seed, so
any crash reproduces from ``(target, seed)``.
"""

from __future__ import annotations

import copy
import io
import random
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lasercc.errors import LasercError

INTERESTING_INTS = (0, 1, -1, 2, 7, 255, 256, 65535, 1 << 31, (1 << 31) - 1, 1 << 40, -(1 << 40), (1 << 63) - 1,
                    -(1 << 63))
INTERESTING_BYTES = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x01")


# ---------------------------------------------------------------------------------------------
# byte-level mutators
# ---------------------------------------------------------------------------------------------

def mutate_bytes(data: bytes, rng: random.Random, rounds: int | None = None) -> bytes:
    """1-4 random edits: bit flips, interesting bytes, truncation, deletion, insertion, duplication."""
    b = bytearray(data)
    for _ in range(rounds or rng.randint(1, 4)):
        if not b:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            continue
        op = rng.randrange(6)
        i = rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i:i + 1] = rng.choice(INTERESTING_BYTES)
        elif op == 2:
            del b[i:]
        elif op == 3:
            del b[i:i + rng.randint(1, 64)]
        elif op == 4:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            j = min(len(b), i + rng.randint(1, 64))
            b[i:i] = b[i:j]
    return bytes(b)


def mutate_text(text: str, rng: random.Random) -> str:
    """Token-aware edits of IR text: change a number, drop or duplicate a token or a line, swap two tokens."""
    import re

    toks = re.split(r"(\s+|[{}\[\](),:=<>@%])", text)
    toks = [t for t in toks if t]
    for _ in range(rng.randint(1, 3)):
        if not toks:
            break
        i = rng.randrange(len(toks))
        op = rng.randrange(6)
        if op == 0 and re.fullmatch(r"-?\d+(\.\d+)?(e[-+]?\d+)?", toks[i]):
            toks[i] = str(rng.choice((*INTERESTING_INTS, 1e39, 1e-300, float("nan"), float("inf"), 0.0, -0.5)))
        elif op == 1:
            del toks[i]
        elif op == 2:
            toks.insert(i, toks[rng.randrange(len(toks))])
        elif op == 3:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == 4:
            toks[i] = rng.choice(("%x", "@w1", "code<8, 0.1, 0>[2]", "i64", "f32", "soma", "{", "}", "[", "]", ",",
                                  "\xff", "1" * 30))
        else:
            lines = "".join(toks).splitlines(keepends=True)
            if lines:
                k = rng.randrange(len(lines))
                if rng.random() < 0.5:
                    del lines[k]
                else:
                    lines.insert(k, lines[rng.randrange(len(lines))])
            import re as _re

            toks = [t for t in _re.split(r"(\s+|[{}\[\](),:=<>@%])", "".join(lines)) if t]
    return "".join(toks)


# ---------------------------------------------------------------------------------------------
# ONNX structure-aware mutators
# ---------------------------------------------------------------------------------------------

def mutate_onnx(model: object, rng: random.Random) -> bytes:
    """1-3 structural edits of an ``onnx.ModelProto`` (a copy): initializer dims / data type / data, graph
    input types and shapes, node op types, inputs and attributes, opset; serialized (then sometimes
    byte-mutated as well)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)  # type: ignore[arg-type]
    g = m.graph
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        if op == 0 and len(g.initializer):
            t = g.initializer[rng.randrange(len(g.initializer))]
            dims = list(t.dims)
            if dims and rng.random() < 0.7:
                dims[rng.randrange(len(dims))] = rng.choice(INTERESTING_INTS[:12])
            else:
                dims = [rng.choice((0, 1, 2, 3, 5, 1 << 20)) for _ in range(rng.randint(0, 4))]
            del t.dims[:]
            t.dims.extend(dims)
        elif op == 1 and len(g.initializer):
            t = g.initializer[rng.randrange(len(g.initializer))]
            t.data_type = rng.choice((0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 16, 17, 21, 22, 23, 40, 999))
        elif op == 2 and len(g.initializer):
            t = g.initializer[rng.randrange(len(g.initializer))]
            if t.raw_data:
                raw = bytearray(t.raw_data)
                if rng.random() < 0.5:
                    t.raw_data = bytes(raw[:rng.randrange(len(raw) + 1)])
                elif t.data_type == onnx.TensorProto.FLOAT and len(raw) >= 4:
                    k = 4 * rng.randrange(len(raw) // 4)
                    raw[k:k + 4] = np.array([rng.choice((np.nan, np.inf, -np.inf, 3e38, -3e38))], np.float32).tobytes()
                    t.raw_data = bytes(raw)
        elif op == 3 and len(g.input):
            vi = g.input[rng.randrange(len(g.input))]
            tt = vi.type.tensor_type
            if rng.random() < 0.3:
                tt.elem_type = rng.choice((0, 1, 6, 7, 9, 10, 16, 999))
            elif len(tt.shape.dim):
                d = tt.shape.dim[rng.randrange(len(tt.shape.dim))]
                if rng.random() < 0.3:
                    d.dim_param = "n"
                else:
                    d.dim_value = rng.choice(INTERESTING_INTS[:12])
        elif op == 4 and len(g.node):
            n = g.node[rng.randrange(len(g.node))]
            n.op_type = rng.choice(("MatMul", "Add", "Gemm", "Softmax", "Gather", "Reshape", "Transpose", "Bogus",
                                    "Identity", "Cast", "Where", "LayerNormalization", "Erf", "Concat", "Slice"))
        elif op == 5 and len(g.node):
            n = g.node[rng.randrange(len(g.node))]
            names = [i for nn in g.node for i in nn.input] + [o for nn in g.node for o in nn.output]
            if n.input and rng.random() < 0.4:
                del n.input[rng.randrange(len(n.input))]
            elif names:
                if n.input:
                    n.input[rng.randrange(len(n.input))] = rng.choice(names + ["", "nope"])
                else:
                    n.input.append(rng.choice(names))
        elif op == 6 and len(g.node):
            n = g.node[rng.randrange(len(g.node))]
            if n.attribute:
                a = n.attribute[rng.randrange(len(n.attribute))]
                if a.type == onnx.AttributeProto.INT:
                    a.i = rng.choice(INTERESTING_INTS)
                elif a.type == onnx.AttributeProto.INTS and len(a.ints):
                    a.ints[rng.randrange(len(a.ints))] = rng.choice(INTERESTING_INTS[:10])
                elif a.type == onnx.AttributeProto.FLOAT:
                    a.f = rng.choice((0.0, -1.0, float("nan"), float("inf"), 1e39))
        elif op == 7 and len(g.node) > 1:
            del g.node[rng.randrange(len(g.node))]
        elif op == 8 and len(m.opset_import):
            m.opset_import[0].version = rng.choice((1, 7, 11, 13, 17, 21, 99))
    data = m.SerializeToString()
    if rng.random() < 0.15:
        data = mutate_bytes(data, rng, 1)
    return data


# ---------------------------------------------------------------------------------------------
# targets: each takes bytes (and a scratch directory) and raises only LasercError
# ---------------------------------------------------------------------------------------------

def load_onnx_target(data: bytes, scratch: Path) -> None:
    """The ONNX loader: wire-level split, weight checks, shape pinning and inference, input specs, dtypes,
    initializers and format detection -- everything before lowering."""
    from lasercc.errors import boundary
    from lasercc.frontends.onnx import detect_format
    from lasercc.frontends.onnx.load import (
        check_weights_finite,
        initializers,
        input_specs,
        pin_shapes,
        tensor_dtypes,
    )
    from lasercc.frontends.onnx.weights import load_split

    @boundary
    def run() -> None:
        p = scratch / "m.onnx"
        p.write_bytes(data)
        split = load_split(p)
        m, w = split.model, split.weights
        check_weights_finite(m, w)
        detect_format(m)
        m = pin_shapes(m, {}, copy=False)
        input_specs(m)
        tensor_dtypes(m)
        initializers(m, w)

    run()


def compile_target(data: bytes, scratch: Path) -> None:
    """The whole compile (loader, calibration with generated data, lowering, default passes)."""
    import warnings

    import lasercc

    p = scratch / "m.onnx"
    p.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lasercc.compile(p, progress=False)


def npz_target(data: bytes, scratch: Path) -> None:
    """The ``.npz`` readers: whole arrays (inputs, calibration, weights) and row blocks (``simulate``'s input)."""
    from lasercc.errors import InputError
    from lasercc.ir.artifact import read_npz_arrays
    from lasercc.ir.data import NpzRows

    p = scratch / "x.npz"
    p.write_bytes(data)
    try:
        whole = read_npz_arrays(p)
    except InputError:
        whole = None
    try:
        rows = NpzRows(p)
        got: dict[str, list[np.ndarray]] = {k: [] for k in rows.members}
        for block in rows.blocks(3):
            for k, v in block.items():
                got[k].append(v)
    except InputError as e:
        if whole is not None:
            raise AssertionError(f"read_npz reads the file, NpzRows refuses it: {e}") from None
        raise
    if whole is not None:  # what both readers accept, they must read alike
        for k, parts in got.items():
            arr = parts[0] if not rows.members[k].shape else np.concatenate(parts)
            if not np.array_equal(arr, whole[k], equal_nan=arr.dtype.kind in "fc"):
                raise AssertionError(f"NpzRows and read_npz disagree on member {k!r}")


def lir_target(text: bytes, weights: dict[str, np.ndarray]) -> None:
    """``.lir`` parse + verify with the original weights."""
    from lasercc.errors import boundary
    from lasercc.ir import parse_graph

    @boundary
    def run() -> None:
        try:
            s = text.decode("utf-8")
        except UnicodeDecodeError:
            raise LasercError("not UTF-8") from None
        parse_graph(s, weights).verify()

    run()


def artifact_target(files: dict[str, bytes], scratch: Path, direct_lir: bool) -> None:
    """``lasercc.load`` of an artifact directory (hash-checked) or of its ``graph.lir`` (no hash check, so
    mutated weights reach the npz reader, the parser and the verifier)."""
    import lasercc

    d = scratch / "art"
    d.mkdir(exist_ok=True)
    for k, v in files.items():
        (d / k).write_bytes(v)
    lasercc.load(d / "graph.lir" if direct_lir else d)


# ---------------------------------------------------------------------------------------------
# corpora and a campaign driver
# ---------------------------------------------------------------------------------------------

def bundled_models(root: Path) -> list[Path]:
    """The example ONNX models (float and QDQ) shipped in ``examples/models``."""
    return sorted((root / "examples" / "models").glob("*.onnx"))


@dataclass
class Crash:
    target: str
    seed: int
    error: str
    where: str


@dataclass
class CampaignResult:
    target: str
    cases: int
    seconds: float
    ok: int
    refused: int
    crashes: list[Crash]

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds else 0.0


def _where(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    frames = [f for f in tb if "lasercc" in f.filename] or list(tb)
    f = frames[-1] if frames else None
    return f"{Path(f.filename).name}:{f.lineno} ({f.name})" if f else "?"


def make_case(target: str, seed: int, corpus: dict[str, object]) -> Callable[[Path], None]:
    """The mutant for ``(target, seed)`` as a callable on a scratch directory."""
    rng = random.Random(seed)
    if target in ("onnx", "compile"):
        models = corpus["onnx"]  # list of (ModelProto, bytes)
        proto, raw = models[rng.randrange(len(models))]  # type: ignore[index]
        data = mutate_onnx(proto, rng) if rng.random() < 0.8 else mutate_bytes(raw, rng)
        fn = load_onnx_target if target == "onnx" else compile_target
        return lambda scratch: fn(data, scratch)
    if target == "npz":
        blobs = corpus["npz"]  # list of bytes
        data = mutate_bytes(blobs[rng.randrange(len(blobs))], rng)  # type: ignore[index]
        return lambda scratch: npz_target(data, scratch)
    if target == "lir":
        text, weights = corpus["lir"]  # type: ignore[misc]
        t = mutate_text(text, rng).encode() if rng.random() < 0.85 else mutate_bytes(text.encode(), rng)
        return lambda scratch: lir_target(t, weights)
    if target == "artifact":
        files: dict[str, bytes] = dict(corpus["artifact"])  # type: ignore[arg-type]
        name = rng.choice(sorted(files))
        files[name] = mutate_text(files[name].decode(), rng).encode() if name.endswith((".lir", ".json")) and \
            rng.random() < 0.7 else mutate_bytes(files[name], rng)
        direct = rng.random() < 0.7
        return lambda scratch: artifact_target(files, scratch, direct)
    raise ValueError(f"unknown fuzz target {target!r}")


def build_corpus(root: Path) -> dict[str, object]:
    """Seeds: the bundled ONNX models, their calibration/input ``.npz`` files, the example IR and artifact."""
    import onnx

    from lasercc.ir import print_graph
    from lasercc.ir.artifact import load

    models = [(onnx.load(str(p)), p.read_bytes()) for p in bundled_models(root)]
    npz = [p.read_bytes() for p in sorted((root / "examples" / "models").glob("*.npz"))]
    ex = root / "examples" / "ir" / "attention_block"
    art = load(ex)
    buf = io.BytesIO()
    np.savez(buf, **art.graph.constants.arrays())
    npz.append(buf.getvalue())
    with tempfile.TemporaryDirectory() as td:
        saved = type(art)(graph=art.graph, manifest={"target": "numpy"}).save(Path(td) / "a")
        files = {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()}
    return {"onnx": models, "npz": npz, "lir": (print_graph(art.graph), art.graph.constants.arrays()),
            "artifact": files}


def run_case(target: str, seed: int, corpus: dict[str, object], scratch: Path) -> tuple[str, Crash | None]:
    """``("ok" | "refused" | "crash", crash)`` for one mutant."""
    case = make_case(target, seed, corpus)
    try:
        case(scratch)
    except LasercError:
        return "refused", None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - a crash is what we are looking for
        return "crash", Crash(target, seed, f"{type(e).__name__}: {str(e)[:200]}", _where(e))
    return "ok", None


def campaign(target: str, cases: int, corpus: dict[str, object], seed0: int = 0,
             on_progress: Callable[[int], None] | None = None) -> CampaignResult:
    """Run ``cases`` mutants of ``target`` (seeds ``seed0..seed0+cases-1``) and count outcomes."""
    import time

    counts = {"ok": 0, "refused": 0, "crash": 0}
    crashes: list[Crash] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lasercc-fuzz-") as td:
        scratch = Path(td)
        for k in range(cases):
            sub = scratch / str(k % 4)
            sub.mkdir(exist_ok=True)
            outcome, crash = run_case(target, seed0 + k, corpus, sub)
            counts[outcome] += 1
            if crash is not None:
                crashes.append(crash)
            if on_progress is not None and (k + 1) % 1000 == 0:
                on_progress(k + 1)
    return CampaignResult(target, cases, time.perf_counter() - t0, counts["ok"], counts["refused"], crashes)


def deep_copy_corpus(corpus: dict[str, object]) -> dict[str, object]:
    """A copy safe to mutate (the campaign never mutates its corpus; tests may)."""
    return copy.deepcopy(corpus)
