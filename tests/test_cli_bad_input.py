"""The CLI bad-input table: every case prints one line on stderr and exits with status 2, never a traceback.

Each case builds its files in a fresh directory and names the words the message must contain (the file,
node or option, and what is wrong). Found by trying the CLI as a new user and as an adversary would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lasercc.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ir" / "attention_block"
MODELS = ROOT / "examples" / "models"
GPT = MODELS / "tiny_gpt.onnx"
GPT_CAL = MODELS / "tiny_gpt.calib.npz"


def _artifact(tmp: Path) -> Path:
    """A current-format copy of the example artifact (hashes in its manifest)."""
    import lasercc

    a = lasercc.load(EXAMPLE)
    return lasercc.Artifact(graph=a.graph, manifest={"target": "numpy"}).save(tmp / "art")


def _x(tmp: Path, name: str = "x.npz", **arrays: np.ndarray) -> Path:
    p = tmp / name
    np.savez(p, **(arrays or {"x": np.zeros((16, 16), np.float32)}))
    return p


def _tiny_model(tmp: Path, dims=("batch", 4), w: np.ndarray | None = None, name: str = "m.onnx",
                init: onnx.TensorProto | None = None) -> Path:
    """y = x @ W, x [batch, 4] float (a dynamic batch unless ``dims`` says otherwise)."""
    W = np.ones((4, 3), np.float32) if w is None else w
    t = init if init is not None else numpy_helper.from_array(W, "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], 3])], [t])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp / name
    p.write_bytes(m.SerializeToString())
    return p


def _huge_npz(tmp: Path) -> Path:
    """An .npz whose one member declares a 2^40-element array in a 100-byte header."""
    import io
    import zipfile

    from numpy.lib import format as npformat

    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    p = tmp / "huge.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", buf.getvalue() + b"\0" * 64)
    return p


Case = Callable[[Path], tuple[list[object], str]]

CASES: dict[str, Case] = {
    # ---- simulate: the artifact
    "sim_missing_artifact": lambda t: (["simulate", t / "nope", "-i", _x(t)], "no such artifact"),
    "sim_artifact_binary_file": lambda t: (["simulate", _x(t, "a.npz"), "-i", _x(t)], "not a text IR file"),
    "sim_artifact_without_graph": lambda t: (_mk(t / "d"), ["simulate", t / "d", "-i", _x(t)],
                                             "has no graph.lir")[1:],
    "sim_graph_lir_is_dir": lambda t: (_mk(t / "d" / "graph.lir"), ["simulate", t / "d", "-i", _x(t)],
                                       "graph.lir is a directory")[1:],
    "sim_weights_is_dir": lambda t: _edit(t, lambda a: (_rm(a / "weights.npz"), _mk(a / "weights.npz")),
                                          "weights.npz: missing from the artifact"),
    "sim_manifest_not_utf8": lambda t: _edit(t, lambda a: (a / "manifest.json").write_bytes(b"\xff\xfe\x00{"),
                                             "manifest.json: corrupt manifest"),
    "sim_manifest_wrong_type": lambda t: _edit(t, lambda a: (a / "manifest.json").write_text("[1]"),
                                               "a JSON object expected"),
    "sim_manifest_newer_format": lambda t: _edit(t, lambda a: _manifest(a, format_version=7),
                                                 "artifact format 7 was written by a newer lasercc"),
    "sim_torn_graph": lambda t: _edit(t, lambda a: (a / "graph.lir").write_text(
        (a / "graph.lir").read_text().replace("graph attention_block", "graph edited")),
        "graph.lir: content does not match the manifest's sha256"),
    "sim_stale_partition": lambda t: _edit(t, lambda a: (a / "partition.json").write_text("{}"),
                                           "partition.json: not part of this artifact"),
    "sim_bad_ir": lambda t: (_lir(t, "graph g {\n  input %x : f32[2, 4\n}\n"), "g.lir: line 3"),
    "sim_ir_not_utf8": lambda t: (_lir(t, b"graph \xff {"), "not a text IR file"),
    # ---- simulate: the input file
    "sim_input_missing": lambda t: (["simulate", _artifact(t), "-i", t / "nope.npz"], "no such input file"),
    "sim_input_is_dir": lambda t: (["simulate", _artifact(t), "-i", _mk(t / "in")], "is a directory, not an .npz"),
    "sim_input_npy": lambda t: (["simulate", _artifact(t), "-i", _npy(t)], "got a single array (.npy)"),
    "sim_input_not_zip": lambda t: (["simulate", _artifact(t), "-i", _bytes(t / "x.npz", b"hello")],
                                    "cannot read as .npz"),
    "sim_input_pickle": lambda t: (["simulate", _artifact(t), "-i", _x(t, x=np.array([{}, 1], dtype=object))],
                                   "pickles are refused"),
    "sim_input_huge_header": lambda t: (["simulate", _artifact(t), "-i", _huge_npz(t)],
                                        "over the limit of"),
    "sim_input_zero_rows": lambda t: (["simulate", _artifact(t), "-i", _x(t, x=np.zeros((0, 16), np.float32))],
                                      "input 'x' has no rows"),
    "sim_input_wrong_name": lambda t: (["simulate", _artifact(t), "-i", _x(t, y=np.zeros((16, 16), np.float32))],
                                       "input names do not match"),
    "sim_input_wrong_shape": lambda t: (["simulate", _artifact(t), "-i", _x(t, x=np.zeros((16, 15), np.float32))],
                                        "expected shape"),
    "sim_input_strings": lambda t: (["simulate", _artifact(t), "-i", _x(t, x=np.array([["a"] * 16] * 16))],
                                    "expected real numbers"),
    "sim_input_nan": lambda t: (["simulate", _artifact(t), "-i", _x(t, x=np.full((16, 16), np.nan, np.float32))],
                                "contains NaN or infinity"),
    # ---- simulate: options
    "sim_device_cuda_with_numpy": lambda t: (["simulate", _artifact(t), "-i", _x(t), "--device", "cuda"],
                                             "--device applies to --backend torch only"),
    "sim_unknown_backend": lambda t: (["simulate", _artifact(t), "-i", _x(t), "--backend", "tpu"],
                                      "unknown backend 'tpu'"),
    "sim_output_missing_dir": lambda t: (["simulate", _artifact(t), "-i", _x(t), "-o", t / "no" / "y.npz"],
                                         "no" + os.sep + "y.npz: directory"),
    "sim_output_is_dir": lambda t: (["simulate", _artifact(t), "-i", _x(t), "-o", _mk(t / "out")],
                                    "is a directory"),
    "sim_output_empty": lambda t: (["simulate", _artifact(t), "-i", _x(t), "-o", ""], "output file name is empty"),
    "sim_compare_onnx_missing": lambda t: (["simulate", _artifact(t), "-i", _x(t), "--compare-onnx", t / "m.onnx"],
                                           "no such ONNX model"),
    "sim_compare_onnx_dir": lambda t: (["simulate", _artifact(t), "-i", _x(t), "--compare-onnx", _mk(t / "m")],
                                       "is a directory, not an ONNX model"),
    # ---- inspect / profile
    "inspect_partition_not_utf8": lambda t: _edit(t, lambda a: _partition(a, b"\xff{"), "corrupt partition file",
                                                  verb="inspect"),
    "inspect_partition_wrong_type": lambda t: _edit(t, lambda a: _partition(a, b"[1, 2]"), "corrupt partition file",
                                                    verb="inspect"),
    "inspect_plot_missing_dir": lambda t: (["inspect", _artifact(t), "--plot", t / "no" / "p.png"],
                                           "directory"),
    "profile_constants_not_json": lambda t: (["profile", _artifact(t), "--energy-constants",
                                              _bytes(t / "c.json", b"\xff")], "cannot read energy constants"),
    "profile_constants_list": lambda t: (["profile", _artifact(t), "--energy-constants",
                                          _bytes(t / "c.json", b"[1]")], "must hold a JSON object"),
    "profile_constants_is_dir": lambda t: (["profile", _artifact(t), "--energy-constants", _mk(t / "c")],
                                           "energy constants"),
    "profile_gpu_not_utf8": lambda t: (["profile", _artifact(t), "--gpu-measured", _bytes(t / "g.json", b"\xff")],
                                       "cannot read GPU measurement file"),
    "profile_input_npy": lambda t: (["profile", _artifact(t), "--input", _npy(t)], "got a single array (.npy)"),
    # ---- passes
    "passes_colon_name": lambda t: (["passes", "--check", ":Foo"], "':Foo'"),
    "passes_unknown": lambda t: (["passes", "--check", "nosuch"], "nosuch"),
    "passes_bad_module": lambda t: (["passes", "--check", "no_such_module_xyz:Foo"], "no_such_module_xyz"),
    "passes_unknown_option": lambda t: (["passes", "--check", "dce{bogus=1}"], "bogus"),
    "passes_huge_segments": lambda t: (["passes", "--check", "asnc-fit{max_segments=100000}"], "max_segments"),
    # ---- compile: the model
    "compile_missing_model": lambda t: (["compile", t / "m.onnx", "-o", t / "o", "-q"], "no such ONNX model"),
    "compile_model_is_dir": lambda t: (["compile", _mk(t / "m.onnx"), "-o", t / "o", "-q"],
                                       "is a directory, not an ONNX model"),
    "compile_model_garbage": lambda t: (["compile", _bytes(t / "m.onnx", b"\x08\xff\xff\xff garbage"), "-o",
                                         t / "o", "-q"], "cannot read as ONNX"),
    "compile_model_empty": lambda t: (["compile", _bytes(t / "m.onnx", b""), "-o", t / "o", "-q"], "m.onnx"),
    "compile_initializer_dims_disagree": lambda t: (["compile", _tiny_model(t, dims=(2, 4), init=_bad_dims()), "-o",
                                                     t / "o", "-q"], "initializer 'W'"),
    "compile_initializer_unknown_dtype": lambda t: (["compile", _tiny_model(t, dims=(2, 4), init=_bad_dtype()),
                                                     "-o", t / "o", "-q"], "initializer 'W'"),
    "compile_nan_weight": lambda t: (["compile", _tiny_model(t, dims=(2, 4), w=_nan_w()), "-o", t / "o", "-q"],
                                     "initializer 'W' holds NaN"),
    "compile_huge_declared_shape": lambda t: (["compile", _tiny_model(t, dims=(1 << 40, 4)), "-o", t / "o", "-q"],
                                              "--max-elements"),
    "compile_huge_pinned_shape": lambda t: (["compile", _tiny_model(t), "-o", t / "o", "-q", "--input-shape",
                                             f"x={1 << 40},4"], "--max-elements"),
    "compile_bad_input_shape": lambda t: (["compile", _tiny_model(t), "-o", t / "o", "--input-shape", "x=a,b", "-q"],
                                          "bad --input-shape"),
    # ---- compile: the output directory
    "compile_output_is_file": lambda t: (["compile", GPT, "-o", _bytes(t / "f", b"x"), "-q"],
                                         "exists and is not a directory"),
    "compile_output_foreign_dir": lambda t: (["compile", GPT, "-o", _foreign(t), "-q"], "not a lasercc artifact"),
    "compile_output_empty": lambda t: (["compile", GPT, "-o", "", "-q"], "output directory name is empty"),
    "compile_output_under_file": lambda t: (["compile", GPT, "-o", _bytes(t / "f", b"x") / "sub", "-q"],
                                            "is not a directory"),
    # ---- compile: calibration
    "compile_calib_npy": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--calibration", _npy(t)],
                                    "got a single array (.npy)"),
    "compile_calib_missing": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--calibration", t / "c.npz"],
                                        "no such"),
    "compile_calib_zero_rows": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--calibration",
                                           _x(t, input_ids=np.zeros((0, 16), np.int64))], "has no rows"),
    "compile_calib_ids_over_vocab": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--calibration",
                                                _x(t, input_ids=np.full((2, 16), 64, np.int64))],
                                               "input_ids"),
    "compile_calib_negative_ids": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--calibration",
                                              _x(t, input_ids=np.full((2, 16), -1, np.int64))], "negative"),
    "compile_calib_float_ids": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--calibration",
                                           _x(t, input_ids=np.full((2, 16), 1.5))], "integer"),
    "compile_calib_string_ids": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--calibration",
                                            _x(t, input_ids=np.full((2, 16), "a"))], "integer"),
    "compile_calib_all_nan": lambda t: (["compile", _tiny_model(t, dims=(2, 4)), "-o", t / "o", "-q",
                                         "--calibration", _x(t, x=np.full((4, 4), np.nan, np.float32))],
                                        "NaN"),
    "compile_passes_colon": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--passes", ":Foo"], "':Foo'"),
    "compile_passes_unknown": lambda t: (["compile", GPT, "-o", t / "o", "-q", "--passes", "nosuch"], "nosuch"),
}


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _rm(p: Path) -> None:
    p.unlink()


def _bytes(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _npy(t: Path) -> Path:
    p = t / "x.npy"
    np.save(p, np.zeros((16, 16), np.float32))
    return p


def _lir(t: Path, text: str | bytes) -> list[object]:
    p = t / "g.lir"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return ["simulate", p, "-i", _x(t)]


def _edit(t: Path, fn: Callable[[Path], object], message: str, verb: str = "simulate") -> tuple[list[object], str]:
    a = _artifact(t)
    fn(a)
    return ([verb, a, "-i", _x(t)] if verb == "simulate" else [verb, a]), message


def _manifest(a: Path, **kv: object) -> None:
    m = json.loads((a / "manifest.json").read_text())
    m.update(kv)
    (a / "manifest.json").write_text(json.dumps(m))


def _partition(a: Path, data: bytes) -> None:
    """A partition.json listed in the manifest (so the hash check passes) but unreadable."""
    import hashlib

    (a / "partition.json").write_bytes(data)
    m = json.loads((a / "manifest.json").read_text())
    m["files"]["partition.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (a / "manifest.json").write_text(json.dumps(m))


def _foreign(t: Path) -> Path:
    d = _mk(t / "mine")
    (d / "notes.txt").write_text("keep")
    return d


def _bad_dims() -> onnx.TensorProto:
    t = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    del t.dims[:]
    t.dims.extend([5, 7])  # 35 elements declared, 12 stored
    return t


def _bad_dtype() -> onnx.TensorProto:
    t = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    t.data_type = 999
    return t


def _nan_w() -> np.ndarray:
    w = np.ones((4, 3), np.float32)
    w[1, 2] = np.nan
    return w


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, message = CASES[case](tmp_path)
    capsys.readouterr()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # nothing may be written into the working directory
    try:
        before = set(os.listdir(tmp_path))
        code = main([str(a) for a in argv])
        after = set(os.listdir(tmp_path))
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and "warning:" not in ln]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lasercc {argv[0]}: error: "), err
    assert message in lines[0], err
    assert after == before, sorted(after - before)  # no partial output left behind


def test_broken_pipe_is_quiet() -> None:
    """``lasercc inspect ... | head -1``: no BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(f"{sys.executable} -m lasercc inspect {EXAMPLE} | head -1", shell=True, capture_output=True,
                       text=True, env=env, check=False)
    assert r.stdout.startswith("graph attention_block")
    assert r.stderr == "", r.stderr


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (Linux /proc): simulate keeps its input open while it runs."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc to see when the run has started")
def test_ctrl_c_during_a_run_exits_130(tmp_path: Path) -> None:
    """SIGINT while simulating exits 130 with one line. Deterministic: the signal is sent once the child holds
    its input open (imports done, rows streaming; the whole run would take minutes), not after a fixed sleep
    that a loaded machine turns into "still importing"."""
    import signal
    import time

    big = _x(tmp_path, x=np.random.default_rng(0).standard_normal((16 * 4000, 16)).astype(np.float32))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "lasercc", "simulate", str(EXAMPLE), "-i", str(big), "--mode",
                          "spikes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not _has_open(p.pid, big.resolve()):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "simulate did not start reading its input within 120 s"
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, (p.returncode, err)
    assert err.strip() == "lasercc: interrupted", err


def test_a_swallowed_ctrl_c_stops_the_run_at_the_next_batch() -> None:
    """Native code may swallow the KeyboardInterrupt of a SIGINT (lasercc.interrupts): the flag the CLI's
    handler set stops run_graph at its next batch instead of letting it run to the end."""
    import lasercc
    from lasercc import interrupts

    art = lasercc.load(EXAMPLE)
    with np.load(EXAMPLE / "input.npz") as z:
        x = np.concatenate([z["x"]] * 4)
    previous = interrupts.install()
    try:
        interrupts._state["received"] = True  # as if the handler ran and C code cleared its exception
        for mode in ("codes", "spikes"):
            with pytest.raises(KeyboardInterrupt):
                lasercc.run_graph(art.graph, {"x": x}, mode=mode)
    finally:
        interrupts._state["received"] = False
        interrupts.restore(previous)
    assert lasercc.run_graph(art.graph, {"x": x}).codes["out"].shape[0] == x.shape[0]


@pytest.mark.parametrize("where", ["imports", "verb"])
def test_a_ctrl_c_turned_into_another_error_exits_130(where: str, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """An interrupted C-extension import resurfaces as ImportError (seen with NumPy under Ctrl-C): after a
    SIGINT, whatever exception surfaces is an interruption, exit 130, not a traceback or "internal error"."""
    import lasercc.cli as cli
    import lasercc.commands.inspect as inspect_cmd
    from lasercc import interrupts

    def broken(*a: object) -> None:
        interrupts._state["received"] = True
        raise ImportError('PyCapsule_Import could not import module "datetime"')

    monkeypatch.setattr(cli, "build_parser", broken) if where == "imports" else \
        monkeypatch.setattr(inspect_cmd, "run", broken)
    assert cli.main(["inspect", str(EXAMPLE)]) == 130
    assert capsys.readouterr().err == "lasercc: interrupted\n"
    monkeypatch.undo()  # the next main() starts clean
    assert cli.main(["inspect", str(EXAMPLE)]) == 0


def test_a_second_ctrl_c_ends_a_stuck_process() -> None:
    """If the first Ctrl-C is lost for good (here: swallowed in a loop), the second ends the process at once."""
    import signal

    code = ("import time\nfrom lasercc import interrupts\ninterrupts.install()\nready = False\n"
            "while True:\n    try:\n        if not ready:\n            ready = True\n"
            "            print('ready', flush=True)\n        time.sleep(0.02)\n    except KeyboardInterrupt:\n"
            "        print('swallowed', flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGINT)
        assert p.stdout.readline().strip() == "swallowed"
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == -signal.SIGINT
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_ctrl_c_while_importing_the_verbs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The verbs' heavy imports (NumPy, onnx, onnxruntime) happen inside main's boundary: Ctrl-C there is 130."""
    import lasercc.cli as cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["inspect", str(EXAMPLE)]) == 130
    assert capsys.readouterr().err == "lasercc: interrupted\n"


def test_cli_module_import_is_light() -> None:
    """``import lasercc.cli`` (what the console script does before main) loads no NumPy/onnx/onnxruntime."""
    code = "import sys, lasercc.cli; print(sorted(m for m in ('numpy', 'onnx', 'onnxruntime') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stdout.strip() == "[]", r.stdout


def test_internal_error_is_one_line_exit_3(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A bug (an exception that is not the input's fault) is reported as one, not disguised as bad input."""
    import lasercc.commands.inspect as inspect_cmd

    def boom(args: object) -> int:
        raise IndexError("tuple index out of range")

    monkeypatch.setattr(inspect_cmd, "run", boom)
    monkeypatch.delenv("LASERCC_DEBUG", raising=False)
    assert main(["inspect", str(EXAMPLE)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("lasercc inspect: internal error: IndexError: tuple index out of range") and \
        err.count("\n") == 1, err


def test_python_api_translates_os_errors(tmp_path: Path) -> None:
    """``lasercc.load``/``compile``/``run_graph`` raise the library's errors for what the OS refuses."""
    import lasercc
    from lasercc.errors import InputError

    d = _artifact(tmp_path)
    with pytest.raises(InputError, match="is a directory, not an ONNX model"):
        lasercc.compile(tmp_path, progress=False)
    with pytest.raises(InputError, match="needs backend='torch'"):
        lasercc.load(d).run({"x": np.zeros((8, 16), np.float32)}, device="cuda")
    with pytest.raises(InputError, match="m.onnx: empty file"):
        lasercc.compile(_bytes(tmp_path / "m.onnx", b""), progress=False)
    (d / "graph.lir").chmod(0)
    try:
        if os.access(d / "graph.lir", os.R_OK):  # running as root: permissions do not apply
            return
        with pytest.raises(InputError, match="graph.lir"):
            lasercc.load(d)
    finally:
        (d / "graph.lir").chmod(0o644)


def test_lava_interpreter_is_never_taken_from_the_working_directory(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``.venv-lava/bin/python`` planted in the working directory (or its parents) is never run."""
    from lasercc.backends import lava_runner
    from lasercc.errors import LasercError

    planted = tmp_path / ".venv-lava" / "bin" / "python"
    planted.parent.mkdir(parents=True)
    planted.write_text("#!/bin/sh\ntouch pwned\n")
    planted.chmod(0o755)
    work = _mk(tmp_path / "models" / "downloaded")
    monkeypatch.chdir(work)
    monkeypatch.delenv("LASERCC_LAVA_PYTHON", raising=False)
    try:
        found = lava_runner.lava_python()
    except LasercError as e:
        assert "no Lava environment at" in str(e)
    else:
        assert found == lava_runner.installation_root() / ".venv-lava" / "bin" / "python"
    assert lava_runner.lava_python(planted) == planted  # named explicitly: the user's choice
    with pytest.raises(LasercError, match="--lava-python .* is not an executable file"):
        lava_runner.lava_python(tmp_path / "nope")


def test_no_files_outside_the_named_paths(tmp_path: Path) -> None:
    """A compile (which imports onnxruntime and runs it for calibration) writes nothing under $HOME -- onnxruntime
    telemetry is off -- and nothing in the working directory: only the named artifact."""
    home, work = _mk(tmp_path / "home"), _mk(tmp_path / "work")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home)}
    env.pop("ORT_DISABLE_TELEMETRY", None)
    env.pop("XDG_CACHE_HOME", None)
    model = _tiny_model(tmp_path, dims=(2, 4))
    cmd = ["compile", model, "-o", tmp_path / "art", "-q", "--calibration", _x(tmp_path, x=np.ones((4, 4), np.float32))]
    r = subprocess.run([sys.executable, "-m", "lasercc", *map(str, cmd)], capture_output=True, text=True, env=env,
                       cwd=work, check=False)
    assert r.returncode == 0, r.stderr
    assert [p for p in home.rglob("*")] == [] and list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "home", "m.onnx", "work", "x.npz"]
