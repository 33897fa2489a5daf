"""Pathfinder (LRA): the two markers are connected exactly when the label says so, ink lies only on
the paths, bad sizes are refused."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from tests.helpers import check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.errors import TrevoError
from trevo.registry import create


def test_batches_are_a_function_of_seed_and_step():
    check_batches_are_a_function_of_seed_and_step("pathfinder", {})


def _connected(mask: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> bool:
    seen = np.zeros_like(mask)
    queue = deque([a])
    seen[a] = True
    while queue:
        y, x = queue.popleft()
        if (y, x) == b:
            return True
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
    return False


def test_pathfinder_connectivity_equals_the_label():
    task = create("task", "pathfinder")
    rng = np.random.default_rng(0)
    for label in [0, 1] * 8:
        image, trace, markers = task.draw(rng, label)
        assert image.shape == (32, 32) and len(markers) == 2
        assert all(trace[m] for m in markers)
        assert _connected(trace, markers[0], markers[1]) == bool(label)
        support = trace.reshape(32, 2, 32, 2).any(axis=(1, 3))
        assert bool((image[~support] == 0).all()) and image.max() == 255  # ink only where the paths are
    b = task.train_batch(0, 16, 0)
    assert int(b["target"].sum()) == 8 and b["input"].shape == (16, 1024)
    assert int(b["input"].max()) <= 255


def test_pathfinder_bad_sizes():
    with pytest.raises(TrevoError, match="too small"):
        create("task", "pathfinder", image_size=8)
    with pytest.raises(TrevoError, match="cannot hold"):
        create("task", "pathfinder", image_size=32, contour_length=30)
    with pytest.raises(TrevoError, match="unknown option"):
        create("task", "pathfinder", paddle_lenght=3)


@pytest.mark.parametrize("causal", ["true", "false"])
def test_trains_two_steps(tmp_path, causal):
    train_two_steps(tmp_path, {"name": "pathfinder"}, causal)
