"""Distributed simulation on a local 2-worker Ray (lasercc.distributed, ``simulate --workers``).

The reference is a one-process :func:`lasercc.runtime.run_graph` on the same rows: outputs must be
identical codes in input order and the merged statistics must equal its totals exactly (an identity:
every counter is an integer sum over batches). Faults are injected into real Ray workers: a worker
process that exits mid-shard, a MemoryError in a shard.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from lasercc import distributed as D  # noqa: E402
from lasercc.errors import ArtifactError, InputError, ResourceError  # noqa: E402
from lasercc.ir.artifact import Artifact  # noqa: E402
from lasercc.ir.data import random_inputs  # noqa: E402
from lasercc.runtime import run_graph  # noqa: E402
from lasercc.testing import mlp_graph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one costs 10-30 s on 2 shared cores)."""
    tmp = tempfile.mkdtemp(prefix="lcray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, _temp_dir=tmp,
             object_store_memory=D.LOCAL_OBJECT_STORE_BYTES)
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def case():
    """A 3-layer MLP, batch 2, 40 rows; rows 10..19 are scaled up so that only some shards saturate
    (the merge must count the codes of shards where a node saturated nothing)."""
    g = mlp_graph(layers=3, width=24, batch=2, bits=6, seed=3)
    x = random_inputs(g, 0, rows=20)
    x["x"][10:20] *= 4
    return g, x, run_graph(g, x)


def _same(res, ref) -> None:
    for o in ref.codes:
        np.testing.assert_array_equal(res.codes[o], ref.codes[o])
        np.testing.assert_array_equal(res.values[o], ref.values[o])
    got = {k: v for k, v in res.stats.items() if k != "distributed"}
    assert got == ref.stats


def test_outputs_in_order_and_stats_merged_exactly(local_ray, case) -> None:
    g, x, ref = case
    assert ref.stats["saturation"], "the case must saturate somewhere, or the saturation merge is untested"
    seen = []
    res = D.run_distributed(g, x, workers=2, shard_rows=4, progress=seen.append)
    _same(res, ref)
    assert res.stats["distributed"]["shards"] == 10
    assert seen[-1].shards_done == seen[-1].shards == 10 and seen[-1].rows_done == 40


def test_killed_worker_is_retried_without_losing_or_duplicating_rows(local_ray, case, tmp_path, monkeypatch) -> None:
    g, x, ref = case
    monkeypatch.setitem(D.FAULTS, 1, "die")  # the worker running shard 1 exits (os._exit) on its first try
    blocks: list[dict] = []
    res = D.run_distributed(g, x, workers=2, shard_rows=8, work_dir=tmp_path / "wd",
                            sink=lambda codes, values: blocks.append(codes))
    assert len(blocks) == 5  # every shard once, none twice, in input order
    for o in ref.codes:
        np.testing.assert_array_equal(np.concatenate([b[o] for b in blocks]), ref.codes[o])
    assert {k: v for k, v in res.stats.items() if k != "distributed"} == ref.stats
    assert not (tmp_path / "wd").exists()  # removed after a complete run


def test_failed_run_resumes_from_finished_shards(local_ray, case, tmp_path, monkeypatch) -> None:
    g, x, ref = case
    wd = tmp_path / "wd"
    monkeypatch.setitem(D.FAULTS, 3, "oom")
    emitted = []
    with pytest.raises(ResourceError, match="out of memory on shard 3"):
        D.run_distributed(g, x, workers=1, shard_rows=4, work_dir=wd, sink=lambda c, v: emitted.append(c))
    monkeypatch.delitem(D.FAULTS, 3)
    kept = sorted(p.name for p in wd.glob("shard-*.npz"))
    assert kept == ["shard-000000.npz", "shard-000001.npz", "shard-000002.npz"]
    # other inputs must not be resumed into this run
    y = {k: v.copy() for k, v in x.items()}
    y["x"][0, 0] += 1
    with pytest.raises(InputError, match="different run"):
        D.run_distributed(g, y, workers=2, shard_rows=4, work_dir=wd, resume=True)
    res = D.run_distributed(g, x, workers=2, shard_rows=4, work_dir=wd, resume=True)
    assert res.stats["distributed"]["resumed"] == 3
    _same(res, ref)


def test_corrupt_shard_is_one_clear_error(local_ray, case, tmp_path, monkeypatch) -> None:
    g, x, _ = case
    wd = tmp_path / "wd"
    monkeypatch.setitem(D.FAULTS, 2, "oom")
    with pytest.raises(ResourceError):
        D.run_distributed(g, x, workers=1, shard_rows=8, work_dir=wd)
    monkeypatch.delitem(D.FAULTS, 2)
    (wd / "shard-000001.npz").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(ArtifactError, match="shard-000001.npz: corrupt shard"):
        D.run_distributed(g, x, workers=2, shard_rows=8, work_dir=wd, resume=True)


def test_cli_workers_writes_the_same_file_as_one_process(local_ray, case, tmp_path) -> None:
    from lasercc.cli import main

    g, x, _ = case
    art = tmp_path / "art"
    Artifact(graph=g).save(art)
    np.savez(tmp_path / "in.npz", **x)
    assert main(["simulate", str(art), "-i", str(tmp_path / "in.npz"), "-o", str(tmp_path / "one.npz")]) == 0
    assert main(["simulate", str(art), "-i", str(tmp_path / "in.npz"), "-o", str(tmp_path / "two.npz"),
                 "--workers", "2", "--shard-rows", "6"]) == 0
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "in.npz", "one.npz", "two.npz"]


def test_bad_options_refused_before_running(case, tmp_path) -> None:
    from lasercc.cli import main

    g, x, _ = case
    Artifact(graph=g).save(tmp_path / "art")
    np.savez(tmp_path / "in.npz", **x)
    base = ["simulate", str(tmp_path / "art"), "-i", str(tmp_path / "in.npz")]
    assert main(base + ["--resume"]) == 2  # needs --workers
    assert main(base + ["--workers", "2", "--resume"]) == 2  # needs -o
    with pytest.raises(InputError, match="multiple of the batch size 2"):
        D.plan_shards(g, 40, 2, shard_rows=3)


def test_unreachable_cluster_and_unstartable_ray_are_one_line_errors(case, tmp_path) -> None:
    """In a fresh process (this one may hold the module's Ray): exit status 2, one line, nothing written."""
    g, x, _ = case
    Artifact(graph=g).save(tmp_path / "art")
    np.savez(tmp_path / "in.npz", **x)
    (tmp_path / "file").write_text("")
    env = dict(os.environ, PYTHONPATH=str(ROOT), LASERCC_RAY_TMPDIR=str(tmp_path / "file" / "ray"))
    base = [sys.executable, "-m", "lasercc", "simulate", str(tmp_path / "art"), "-i", str(tmp_path / "in.npz"),
            "-o", str(tmp_path / "out.npz"), "--workers", "2"]
    for extra, msg in (([], "cannot start a local Ray"), (["--address", "127.0.0.1:1"], "cannot reach a Ray")):
        p = subprocess.run(base + extra, capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 2, p.stderr
        errs = [ln for ln in p.stderr.splitlines() if "error:" in ln]
        assert len(errs) == 1 and msg in errs[0], p.stderr
        assert sorted(q.name for q in tmp_path.iterdir()) == ["art", "file", "in.npz"]


def test_missing_ray_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"lasercc\[distributed\]"):
        D.require_ray()


def test_eval_with_workers_equals_one_process(local_ray, tmp_path) -> None:
    import warnings

    import lasercc
    from lasercc.evaluate import evaluate

    models = ROOT / "examples" / "models"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = lasercc.compile(str(models / "tiny_gpt.qdq.onnx"), progress=False)
    np.save(tmp_path / "t.npy", np.load(models / "tiny_gpt.heldout.npz")["input_ids"][:8])
    one = evaluate(art, tmp_path / "t.npy", "nll", batch_rows=4)
    two = evaluate(art, tmp_path / "t.npy", "nll", batch_rows=4, workers=2)
    assert (two.value, two.ci_low, two.ci_high, two.tokens) == (one.value, one.ci_low, one.ci_high, one.tokens)


def test_saved_artifact_through_the_python_api_equals_one_process(local_ray, case, tmp_path) -> None:
    """The Python API on an artifact read back from disk (``run_distributed(art.graph, ...)``): same codes,
    values and merged statistics as one process; the lava backend is refused (it runs in one process)."""
    from lasercc.ir.artifact import load

    g, x, ref = case
    Artifact(graph=g).save(tmp_path / "art")
    art = load(tmp_path / "art")
    _same(D.run_distributed(art.graph, x, workers=2), ref)
    with pytest.raises(InputError, match="lava backend runs in one process"):
        D.run_distributed(art.graph, x, workers=2, backend="lava")


def _cli_error(capsys, argv: list[str]) -> tuple[int, str]:
    """Exit status of ``lasercc ARGV`` in this process and its one error line (asserted to be one)."""
    from lasercc.cli import main

    capsys.readouterr()
    rc = main(argv)
    errs = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errs) == 1, errs
    return rc, errs[0]


def test_cli_worker_oom_then_missing_and_corrupt_shards_stay_clean(local_ray, case, tmp_path, capsys,
                                                                  monkeypatch) -> None:
    """A worker's MemoryError, then a resume over a deleted and a torn shard file: each is one error line
    and status 2 with no output file; finally the resume writes the same file as one process."""
    from lasercc.cli import main

    g, x, _ = case
    Artifact(graph=g).save(tmp_path / "art")
    np.savez(tmp_path / "in.npz", **x)
    out = tmp_path / "out.npz"
    base = ["simulate", str(tmp_path / "art"), "-i", str(tmp_path / "in.npz"), "-o", str(out), "--workers", "1",
            "--shard-rows", "8"]
    wd = D.work_dir_for(out)
    monkeypatch.setitem(D.FAULTS, 3, "oom")
    rc, err = _cli_error(capsys, base)
    assert rc == 2 and "out of memory on shard 3" in err
    assert not out.exists()
    assert sorted(p.name for p in wd.glob("shard-*.npz")) == [f"shard-00000{k}.npz" for k in range(3)]
    monkeypatch.delitem(D.FAULTS, 3)

    # a shard deleted from the work directory is computed again; a torn one is refused, naming the file
    (wd / "shard-000001.npz").unlink()
    (wd / "shard-000002.npz").write_bytes(b"PK\x03\x04 torn")
    rc, err = _cli_error(capsys, base + ["--resume"])
    assert rc == 2 and "shard-000002.npz: corrupt shard" in err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.tmp"))

    (wd / "shard-000002.npz").unlink()
    assert main(base + ["--resume"]) == 0
    assert "1 resumed" in capsys.readouterr().out  # shard 0 only: 1 and 2 were recomputed
    assert main(["simulate", str(tmp_path / "art"), "-i", str(tmp_path / "in.npz"), "-o",
                 str(tmp_path / "one.npz")]) == 0
    with np.load(out) as a, np.load(tmp_path / "one.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    assert not wd.exists()
