"""Window and dilated partitions of an image grid: membership by the formula, and merge inverts partition."""

from __future__ import annotations

import torch

from trevo.ops.grid_partition import group_coordinates, merge, partition


def test_partitions_group_positions_as_their_formulas_say():
    H, W = 4, 6
    x = torch.arange(H * W)[None, :, None]
    for kind, step in (("window", 2), ("dilated", 2)):
        groups = partition(x, (H, W), step, kind)[0, ..., 0]
        coords = group_coordinates((H, W), step, kind)
        for g in range(groups.shape[0]):
            keys = {((p // W) // step, (p % W) // step) if kind == "window" else ((p // W) % step, (p % W) % step)
                    for p in groups[g].tolist()}
            assert len(keys) == 1, f"{kind}: group {g} mixes positions of different groups"
            assert torch.equal(coords[g, :, 0] * W + coords[g, :, 1], groups[g])
        assert sorted(groups.flatten().tolist()) == list(range(H * W))
        assert torch.equal(merge(partition(x, (H, W), step, kind), (H, W), step, kind), x)
