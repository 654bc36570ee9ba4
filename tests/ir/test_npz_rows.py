"""``NpzRows``: row blocks of an ``.npz`` streamed through zipfile equal the arrays np.load reads, for stored and
compressed archives, C and Fortran order, 0-d members and foreign byte orders; damaged files are InputErrors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from lasercc.errors import InputError
from lasercc.ir.data import NpzRows, read_npz


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((23, 4, 3)).astype(np.float32),
            "ids": rng.integers(0, 1000, size=(23, 5)),
            "be": rng.standard_normal((23, 2)).astype(">f8"),
            "f": np.asfortranarray(rng.standard_normal((23, 6))),
            "s": np.array(7.5)}


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("rows", [1, 5, 23, 100])
def test_blocks_concatenate_to_the_arrays(tmp_path: Path, save, rows: int) -> None:  # noqa: ANN001
    arrays = _arrays()
    save(tmp_path / "a.npz", **arrays)
    src = NpzRows(tmp_path / "a.npz")
    assert src.shapes() == {k: (v.shape, v.dtype) for k, v in arrays.items()}
    got: dict[str, list[np.ndarray]] = {k: [] for k in arrays}
    n = 0
    for block in src.blocks(rows):
        n += 1
        for k, v in block.items():
            got[k].append(v)
            if arrays[k].ndim:
                assert v.shape[0] <= rows
    assert n == -(-23 // rows)
    whole = read_npz(tmp_path / "a.npz")
    for k, parts in got.items():
        arr = parts[0] if not arrays[k].ndim else np.concatenate(parts)
        np.testing.assert_array_equal(arr, arrays[k])
        np.testing.assert_array_equal(arr, whole[k])
        assert parts[0].dtype == arrays[k].dtype


def test_blocks_per_member_row_counts_stay_in_step(tmp_path: Path) -> None:
    """Inputs with different batch sizes (rows per chunk) are read chunk-aligned: block i of each member
    covers the same batches."""
    np.savez(tmp_path / "a.npz", a=np.arange(12).reshape(12, 1), b=np.arange(24).reshape(24, 1))
    blocks = list(NpzRows(tmp_path / "a.npz").blocks({"a": 3, "b": 6}))
    assert len(blocks) == 4
    for i, bl in enumerate(blocks):
        assert bl["a"].ravel().tolist() == list(range(3 * i, 3 * i + 3))
        assert bl["b"].ravel().tolist() == list(range(6 * i, 6 * i + 6))


def test_damaged_files_are_input_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((100, 8), np.float32))
    data = (tmp_path / "a.npz").read_bytes()
    # a member whose header declares more rows than it holds: rewrite the zip with a cut member
    with zipfile.ZipFile(tmp_path / "a.npz") as z:
        member = z.read("x.npy")
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as z:
        z.writestr("x.npy", member[:-40])
    with pytest.raises(InputError, match="declares shape \\[100, 8\\] .* holds"):
        NpzRows(tmp_path / "cut.npz")
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read as .npz"):
        list(NpzRows(tmp_path / "trunc.npz").blocks(10))
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="pickles are refused"):
        NpzRows(tmp_path / "obj.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(InputError, match="single array"):
        NpzRows(tmp_path / "one.npy")
    with pytest.raises(InputError, match="no such input file"):
        NpzRows(tmp_path / "missing.npz")


def test_declared_sizes_over_the_limit_are_refused_before_reading(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    np.savez(tmp_path / "a.npz", x=np.zeros((1000, 8), np.float32))
    monkeypatch.setenv("LASERCC_MAX_ARRAY_BYTES", "1000")
    with pytest.raises(InputError, match="over the limit of 1,000 bytes"):
        NpzRows(tmp_path / "a.npz")


def test_read_npz_blocks_checks_headers_at_the_call(tmp_path: Path) -> None:
    from lasercc.ir.data import read_npz_blocks

    np.savez(tmp_path / "a.npz", x=np.arange(10).reshape(10, 1))
    assert [b["x"].ravel().tolist() for b in read_npz_blocks(tmp_path / "a.npz", 4)] == \
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(InputError, match="no such input file"):
        read_npz_blocks(tmp_path / "missing.npz", 4)  # before any iteration
