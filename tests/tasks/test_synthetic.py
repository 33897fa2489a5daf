"""Generated tasks (trevo.tasks.synthetic): evaluation sets are cached atomically under the given
directory and equal the uncached ones."""

from __future__ import annotations

from tests.helpers import same_batches
from trevo.registry import create


def test_eval_sets_cache_atomically_under_the_given_directory(tmp_path):
    task = create("task", "listops", cache_dir=str(tmp_path / "cache"))
    first = next(task.eval_batches("val", 8, 1))
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    again = create("task", "listops", cache_dir=str(tmp_path / "cache"))
    assert same_batches(first, next(again.eval_batches("val", 8, 1)))
    assert same_batches(first, next(create("task", "listops").eval_batches("val", 8, 1)))
