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
