"""Reading .npz files safely (never unpickling) and writing files atomically, with the umask's mode."""

import os
import stat

import numpy as np
import pytest

from yamlnet.errors import DataError
from yamlnet.npzio import read_arrays, read_npz, umask, write_npz_atomic, write_text_atomic


def test_read_says_what_a_file_is_when_it_is_no_npz(tmp_path):
    for name, content, said in (("a.png", b"\x89PNG\r\n", "a PNG image"), ("p.npz", b"\x80\x04K.", "a Python pickle"),
                                ("t.npz", b"hello", "a text file"), ("e.npz", b"", "it is empty")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=said):
            read_npz(tmp_path / name)
    with pytest.raises(DataError, match="no such file"):
        read_npz(tmp_path / "missing.npz")


def test_object_arrays_are_never_unpickled(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="never unpickles"):
        read_npz(tmp_path / "o.npz")


def test_read_arrays_names_what_is_missing(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros(2))
    x, extra = read_arrays(tmp_path / "d.npz", ("x",), optional=("classes",))
    assert x.shape == (2,) and extra is None
    with pytest.raises(DataError, match="has no array 'y'; it holds x"):
        read_arrays(tmp_path / "d.npz", ("x", "y"))


def test_atomic_writes_leave_the_old_file_or_the_new_one_never_a_temporary(tmp_path, monkeypatch):
    write_text_atomic(tmp_path / "f.txt", "old")
    write_npz_atomic(tmp_path / "a.npz", {"x": np.arange(3)})
    assert (tmp_path / "f.txt").read_text() == "old" and read_npz(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(DataError, match="cannot be written: No space left on device"):
        write_text_atomic(tmp_path / "f.txt", "new")
    assert (tmp_path / "f.txt").read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


def test_files_get_the_mode_the_umask_gives(tmp_path):
    previous = os.umask(0o027)
    try:
        assert umask() == 0o027
        write_text_atomic(tmp_path / "f.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640


def test_an_array_file_reads_rows_in_place_as_the_array_holds_them(tmp_path):
    from yamlnet.errors import ReadError
    from yamlnet.npzio import open_array, open_npy, open_npz_member
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 5, 4, 2)).astype(np.float32), np.arange(30)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "folder").mkdir()
    np.save(tmp_path / "folder" / "x.npy", x)
    for source in (tmp_path / "d.npz", tmp_path / "folder"):
        rows = open_array(source, "x")
        assert rows.shape == x.shape and rows.dtype == x.dtype
        for index in (np.array([7, 0, 29, 7]), slice(3, 9), 4):
            assert np.array_equal(rows[index], x[index])
    assert np.array_equal(open_npz_member(tmp_path / "d.npz", "y")[:], y)
    np.savez_compressed(tmp_path / "c.npz", x=x)
    with pytest.raises(DataError, match=r"is compressed \(numpy.savez_compressed\).*store it with numpy.savez"):
        open_npz_member(tmp_path / "c.npz", "x")
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    with pytest.raises(DataError, match="Fortran order"):
        open_npy(tmp_path / "f.npy")
    rows = open_array(tmp_path / "folder", "x")
    data = (tmp_path / "folder" / "x.npy").read_bytes()
    (tmp_path / "folder" / "x.npy").write_bytes(data[:len(data) // 2])
    with pytest.raises(ReadError, match="ends early: row 29 of 30"):
        rows[[29]]
