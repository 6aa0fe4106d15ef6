"""qhw.fileio: atomic writes leave the old file or the new one, with the mode open() would give."""

import os
import stat

import pytest

from qhw.fileio import atomic_write_bytes, atomic_write_json, read_json


def test_written_file_has_the_umask_mode_not_mkstemps_0600(tmp_path):
    mask = os.umask(0o022)
    try:
        import importlib

        import qhw.fileio

        importlib.reload(qhw.fileio)
        path = qhw.fileio.atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
        importlib.reload(qhw.fileio)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = atomic_write_json(tmp_path / "doc.json", {"v": 1})

    with pytest.raises(TypeError):
        atomic_write_bytes(path, object())  # not bytes: the write fails midway
    assert read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]
