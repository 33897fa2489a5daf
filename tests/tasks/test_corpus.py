"""The byte corpus (trevo.tasks.corpus): a missing, empty, too small or unreadable data source is a clear
error naming it."""

from __future__ import annotations

import pytest

from trevo.tasks.corpus import DataError
from trevo.train import build


def test_missing_empty_and_small_data(tmp_path, tiny_cfg):
    with pytest.raises(DataError, match="does not exist"):
        build(tiny_cfg(f"task.data={tmp_path / 'nope.txt'}"))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        build(tiny_cfg(f"task.data={tmp_path / 'empty.txt'}"))
    (tmp_path / "small.txt").write_bytes(b"hello world" * 3)
    with pytest.raises(DataError, match="too few for seq_len"):
        build(tiny_cfg(f"task.data={tmp_path / 'small.txt'}"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="too little"):
        build(tiny_cfg(f"task.data={tmp_path / 'folder'}"))
