"""Atomic, versioned artifacts: a save killed at any step leaves the old artifact or a clear error, never a
mix; stale files of an earlier compile disappear; torn/edited/newer artifacts and concurrent writers are
refused by name."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import time

import numpy as np
import pytest

import lasercc
from lasercc.errors import ArtifactError, InputError, LasercError
from lasercc.ir import artifact as artifact_mod
from lasercc.testing import random_graph, random_inputs


def _old_new():
    old = lasercc.Artifact(graph=random_graph(3), manifest={"target": "loihi2"},
                           extra_files={"partition.json": '{"cores_used": 1}\n', "lava/net.py": "# lava\n"})
    new = lasercc.Artifact(graph=random_graph(5), manifest={"target": "numpy"})
    assert old.graph != new.graph
    return old, new


def _steps(art, d) -> list[str]:
    seen: list[str] = []
    artifact_mod.fault_point = seen.append
    try:
        art.save(d)
    finally:
        artifact_mod.fault_point = lambda step: None
    return seen


def _killed_save(art, d, step: str) -> bool:
    """Save ``art`` to ``d`` in a forked child that dies (``os._exit``, no cleanup) at ``step``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        def hook(s: str) -> None:
            if s == step:
                os._exit(17)
        artifact_mod.fault_point = hook
        try:
            art.save(d)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) == 17


def _state(d, old, new) -> str:
    try:
        got = lasercc.load(d)
    except LasercError:
        return "error"
    names = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    if got.graph == old.graph:
        assert names == ["graph.lir", "lava/net.py", "manifest.json", "partition.json", "weights.npz"]
        return "old"
    assert got.graph == new.graph, "a mix of the old and the new artifact"
    assert names == ["graph.lir", "manifest.json", "report.json", "weights.npz"] or \
        names == ["graph.lir", "manifest.json", "weights.npz"], names  # no stale partition.json / lava/
    return "new"


def test_kill_at_every_step_leaves_old_or_new(tmp_path):
    old, new = _old_new()
    old.save(tmp_path / "probe")
    steps = _steps(new, tmp_path / "probe")  # replacing an artifact
    assert steps == ["mkdir", "graph.lir", "weights.npz", "manifest.json", "exchanged"], steps
    d = tmp_path / "art"
    for step in steps:
        old.save(d)
        assert _killed_save(new, d, step), step
        state = _state(d, old, new)
        # before the swap the old artifact is whole; after it the new one is
        assert state == ("new" if step == "exchanged" else "old"), (step, state)
        new.save(d)  # the next save cleans up what the killed one left
        assert _state(d, old, new) == "new"
        assert not list(tmp_path.glob(".art.*")), list(tmp_path.glob(".art.*"))


def test_kill_of_a_first_save_leaves_no_artifact_or_the_whole_one(tmp_path):
    _, new = _old_new()
    steps = _steps(new, tmp_path / "probe")
    assert steps[-1] == "renamed"
    for step in steps:
        d = tmp_path / f"fresh-{step.replace('/', '_')}"
        assert _killed_save(new, d, step)
        if d.exists():
            assert lasercc.load(d).graph == new.graph
        else:
            with pytest.raises(LasercError, match="no such artifact.*interrupted save"):
                lasercc.load(d)
        new.save(d)
        assert lasercc.load(d).graph == new.graph


def test_exception_during_save_keeps_old_and_cleans_up(tmp_path):
    old, new = _old_new()
    d = tmp_path / "art"
    old.save(d)
    for step in _steps(new, d):
        old.save(d)

        def hook(s, step=step):
            if s == step:
                raise KeyboardInterrupt
        artifact_mod.fault_point = hook
        try:
            with pytest.raises(KeyboardInterrupt):
                new.save(d)
        finally:
            artifact_mod.fault_point = lambda s: None
        assert _state(d, old, new) == ("new" if step == "exchanged" else "old")
        assert not list(tmp_path.glob(".art.*"))


def test_sigkill_at_random_moments(tmp_path):
    old, new = _old_new()
    d = tmp_path / "art"
    old.save(d)
    rng = random.Random(0)
    seen = set()
    for _ in range(6):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child: save alternately until killed
            try:
                for i in range(10_000):
                    (new if i % 2 == 0 else old).save(d)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.02, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        seen.add(_state(d, old, new))
    assert seen <= {"old", "new"}


def test_new_compile_removes_stale_target_files(tmp_path):
    old, new = _old_new()
    d = tmp_path / "art"
    old.save(d)
    assert (d / "partition.json").exists()
    new.save(d)
    assert not (d / "partition.json").exists() and not (d / "lava").exists()


def test_manifest_hashes_and_format_version(tmp_path):
    _, new = _old_new()
    d = new.save(tmp_path / "art")
    m = json.loads((d / "manifest.json").read_text())
    assert m["format_version"] == artifact_mod.FORMAT_VERSION
    assert m["files"]["graph.lir"]["sha256"] == artifact_mod.sha256_file(d / "graph.lir")
    assert m["files"]["weights.npz"]["bytes"] == (d / "weights.npz").stat().st_size


@pytest.mark.parametrize(("edit", "message"), [
    ("graph", "graph.lir: content does not match the manifest's sha256"),
    ("weights", "weights.npz: content does not match"),
    ("missing_weights", "weights.npz: missing from the artifact"),
    ("stale_partition", "partition.json: not part of this artifact"),
    ("newer_format", "artifact format 99 was written by a newer lasercc"),
    ("bad_format", "format_version 'x' is not a non-negative integer"),
    ("manifest_list", "a JSON object expected"),
    ("manifest_binary", "corrupt manifest"),
    ("no_files_table", "needs a 'files' table"),
])
def test_torn_or_edited_artifact_is_refused(tmp_path, edit, message):
    old, new = _old_new()
    d = new.save(tmp_path / "art")
    other = old.save(tmp_path / "other")
    mf = d / "manifest.json"
    m = json.loads(mf.read_text())
    if edit == "graph":
        (d / "graph.lir").write_text((d / "graph.lir").read_text().replace("graph ", "graph  ", 1))
    elif edit == "weights":
        (d / "weights.npz").write_bytes((other / "weights.npz").read_bytes())
    elif edit == "missing_weights":
        (d / "weights.npz").unlink()
    elif edit == "stale_partition":
        (d / "partition.json").write_text("{}")
    elif edit == "newer_format":
        mf.write_text(json.dumps({**m, "format_version": 99}))
    elif edit == "bad_format":
        mf.write_text(json.dumps({**m, "format_version": "x"}))
    elif edit == "manifest_list":
        mf.write_text("[1, 2]")
    elif edit == "manifest_binary":
        mf.write_bytes(b"\xff\xfe{")
    elif edit == "no_files_table":
        mf.write_text(json.dumps({k: v for k, v in m.items() if k != "files"}))
    with pytest.raises(ArtifactError, match=message):
        lasercc.load(d)


def test_edited_lir_loads_when_named_directly(tmp_path):
    _, new = _old_new()
    d = new.save(tmp_path / "art")
    (d / "graph.lir").write_text((d / "graph.lir").read_text() + "\n")
    with pytest.raises(ArtifactError):
        lasercc.load(d)
    assert lasercc.load(d / "graph.lir").graph == new.graph  # the debugging route


def test_concurrent_writer_gets_a_clear_error(tmp_path):
    _, new = _old_new()
    d = tmp_path / "art"
    fd = os.open(tmp_path / ".art.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's lock (flock is per open file description)
    try:
        with pytest.raises(ArtifactError, match="being written by another lasercc process"):
            new.save(d)
    finally:
        os.close(fd)
    new.save(d)  # released: works, and the lock file is gone afterwards
    assert not (tmp_path / ".art.lock").exists()
    with artifact_mod.artifact_lock(d):  # re-entrant in one process (compile holds it around save)
        new.save(d)


def test_output_paths_refused_or_followed(tmp_path):
    _, new = _old_new()
    with pytest.raises(InputError, match="output directory name is empty"):
        new.save("")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        new.save(tmp_path / "file")
    with pytest.raises(InputError, match="is not a directory"):
        new.save(tmp_path / "file" / "sub")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a lasercc artifact .it holds notes.txt"):
        new.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    new.save(tmp_path / "empty")
    real = new.save(tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    assert new.save(tmp_path / "link") == real and (tmp_path / "link").is_symlink()
    new.save(tmp_path / "deep" / "er" / "art")  # missing parents are created


def test_saved_artifact_runs_the_same(tmp_path):
    _, new = _old_new()
    d = new.save(tmp_path / "art")
    x = random_inputs(new.graph, 1, rows=2)
    a, b = new.run(x, output="codes"), lasercc.load(d).run(x, output="codes")
    assert all(np.array_equal(a[k], b[k]) for k in a)
