"""The task generators match their papers' definitions (checked by independent code here)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from trevo.config import ComponentSpec, ModelConfig
from trevo.models import build_model
from trevo.registry import TrevoError, create
from trevo.tasks.corpus import DataError


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name, options", [
    ("mqar", {"seq_len": 64, "n_pairs": 4}), ("selective_copy", {}), ("induction", {}),
    ("listops", {}), ("pathfinder", {}), ("mlm", {"seq_len": 32}), ("digits", {})])
def test_batches_are_a_function_of_seed_and_step(name, options):
    task = create("task", name, **options)
    assert _same(task.train_batch(3, 4, 7), task.train_batch(3, 4, 7))
    assert not _same(task.train_batch(3, 4, 7), task.train_batch(4, 4, 7))
    first = next(task.eval_batches("val", 4, 1))
    # Generated sets are prefix-stable; mlm spreads its windows over the split, so only the same request repeats.
    more = 1 if name == "mlm" else 2
    assert _same(first, next(create("task", name, **options).eval_batches("val", 4, more)))
    assert not _same(first, next(task.eval_batches("test", 4, 1)))


def test_mqar_follows_zoology():
    task = create("task", "mqar", seq_len=64, n_pairs=6, vocab_size=40)
    b = task.train_batch(0, 64, 0)
    half = 20
    for x, y, m in zip(b["input"], b["target"], b["loss_mask"], strict=True):
        keys, values = x[0:12:2], x[1:12:2]
        assert len(set(keys.tolist())) == 6 and bool(((keys >= 1) & (keys < half)).all())
        assert len(set(values.tolist())) == 6 and bool((values >= half).all() and (values < 40).all())
        queries = m.nonzero().flatten().tolist()
        assert len(queries) == 6 and all(q >= 12 and (q - 12) % 2 == 0 for q in queries)
        assert sorted(x[queries].tolist()) == sorted(keys.tolist())
        for q in queries:  # the answer is the token right after the key's earlier occurrence
            earlier = [p for p in range(q) if int(x[p]) == int(x[q])]
            assert earlier and int(x[earlier[0] + 1]) == int(y[q])
        assert int(x[~m][12:].abs().sum()) == 0  # filler is 0 in the default variant
    noisy = create("task", "mqar", seq_len=64, n_pairs=6, vocab_size=40, random_filler=True).train_batch(0, 8, 0)
    assert int((noisy["input"][:, 12:] != 0).sum()) > 8 * 30


@pytest.mark.parametrize("options, match", [
    ({"seq_len": 60, "n_pairs": 16}, "do not fit"), ({"n_pairs": 8, "vocab_size": 16}, "too small"),
    ({"seq_len": 63}, "even")])
def test_mqar_bad_parameters(options, match):
    with pytest.raises(TrevoError, match=match):
        create("task", "mqar", **options)


def test_selective_copy_targets_are_the_data_tokens_in_order():
    task = create("task", "selective_copy", seq_len=48, n_data=6, vocab_size=10)
    b = task.train_batch(0, 32, 1)
    for x, y, m in zip(b["input"], b["target"], b["loss_mask"], strict=True):
        region = x[:42]
        assert y[m].tolist() == region[region != 0].tolist() and len(region[region != 0]) == 6
        assert bool((x[42:] == 9).all()) and bool(m[42:].all()) and not bool(m[:42].any())
        assert bool(((region >= 0) & (region <= 8)).all())
    with pytest.raises(TrevoError, match="do not fit"):
        create("task", "selective_copy", seq_len=10, n_data=6)


def test_induction_recall_and_per_length_metrics():
    task = create("task", "induction", seq_len=16, vocab_size=8, eval_lengths=[32])
    b = task.train_batch(0, 32, 0)
    for x, y in zip(b["input"], b["target"], strict=True):
        specials = (x == 7).nonzero().flatten().tolist()
        assert len(specials) == 2 and specials[1] == 15 and int(y[-1]) == int(x[specials[0] + 1])
    totals: dict[str, float] = {}
    for batch in task.eval_batches("val", 4, 2):
        logits = torch.nn.functional.one_hot(batch["target"], 8).float()  # a perfect model
        for k, v in task.score(logits, batch).items():
            totals[k] = totals.get(k, 0.0) + v
    metrics = task.finalize(totals)
    assert metrics["acc@16"] == metrics["acc@32"] == metrics["accuracy"] == 1.0


def _parse(tokens: list[int], i: int = 0) -> tuple[int, int]:
    """An independent evaluator of the prefix token form: returns (value, next index)."""
    t = tokens[i]
    if 1 <= t <= 10:
        return t - 1, i + 1
    args, i = [], i + 1
    while tokens[i] != 15:
        v, i = _parse(tokens, i)
        args.append(v)
    op = {11: "MIN", 12: "MAX", 13: "MED", 14: "SM"}[t]
    value = {"MIN": min(args), "MAX": max(args), "SM": sum(args) % 10,
             "MED": int(np.median(args))}[op]
    return value, i + 1


def test_listops_labels_and_length_window():
    task = create("task", "listops", min_length=20, max_length=60, max_depth=6, max_args=5)
    b = task.train_batch(0, 64, 0)
    lengths = b["padding_mask"].sum(1)
    assert bool(((lengths > 20) & (lengths < 60)).all())
    for x, y, n in zip(b["input"], b["target"], lengths, strict=True):
        tokens = x[:n].tolist()
        value, end = _parse(tokens)
        assert end == n and value == int(y)
        assert bool((x[n:] == 0).all())
    assert len(set(b["target"].tolist())) > 3
    with pytest.raises(TrevoError, match="empty"):
        create("task", "listops", min_length=50, max_length=50)
    with pytest.raises(TrevoError, match="at most"):
        create("task", "listops", min_length=500, max_length=2000, max_depth=2, max_args=3)


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


def test_eval_sets_cache_atomically_under_the_given_directory(tmp_path):
    task = create("task", "listops", cache_dir=str(tmp_path / "cache"))
    first = next(task.eval_batches("val", 8, 1))
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    again = create("task", "listops", cache_dir=str(tmp_path / "cache"))
    assert _same(first, next(again.eval_batches("val", 8, 1)))
    assert _same(first, next(create("task", "listops").eval_batches("val", 8, 1)))


def test_digits_levels_and_fixed_permutation():
    plain = create("task", "digits")
    permuted = create("task", "digits", permuted=True)
    a, b = plain.train_batch(0, 8, 0), permuted.train_batch(0, 8, 0)
    assert torch.equal(a["target"], b["target"]) and torch.equal(a["input"][:, permuted.permutation], b["input"])
    assert int(a["input"].max()) == 255 and int(a["input"].min()) == 0
    assert plain.info.layout == permuted.info.layout == (8, 8)  # a 2-D model still runs on the scrambled grid
    s2mlp = build_model(ModelConfig(d_model=16, n_layers=1, mixer=ComponentSpec("s2mlp")), permuted.info)
    assert s2mlp(b["input"]).shape == (8, 10)
    assert create("task", "digits", upsample=2).info.layout == (16, 16)
    assert sum(len(x["target"]) for x in plain.eval_batches("val", 64, 10)) == 200


def _cifar_records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return labels, pixels


def test_image_file_reads_binary_cifar(tmp_path):
    records = {}
    for i, name in enumerate([*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]):
        labels, pixels = _cifar_records(4, i)
        np.concatenate([labels[:, None], pixels], axis=1).tofile(tmp_path / name)
        records[name] = (labels, pixels)
    task = create("task", "image_file", data_dir=str(tmp_path), val_fraction=0.25)
    test = next(task.eval_batches("test", 4, 1))
    labels, pixels = records["test_batch.bin"]
    r, g, b = pixels[:, :1024].astype(float), pixels[:, 1024:2048].astype(float), pixels[:, 2048:].astype(float)
    assert test["input"].tolist() == np.floor(0.2989 * r + 0.5870 * g + 0.1140 * b).astype(int).tolist()
    assert test["target"].tolist() == labels.tolist()
    assert sum(len(x["target"]) for x in task.eval_batches("val", 4, 5)) == 5  # 25% of 20 training records
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin"):
        create("task", "image_file", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="test_batch.bin"):
        create("task", "image_file")


def test_mlm_masks_15_percent_with_80_10_10():
    task = create("task", "mlm", seq_len=100)
    b = task.train_batch(0, 200, 0)
    m = b["loss_mask"]
    assert bool((m.sum(1) == 15).all()) and task.info.vocab_size == 257
    assert torch.equal(b["input"][~m], b["target"][~m])
    masked = (b["input"] == 256)[m].float().mean()
    kept = (b["input"] == b["target"])[m].float().mean()
    assert 0.76 < masked < 0.84 and 0.08 < kept < 0.15  # 10% kept + random bytes that happen to match
    assert task.info.causal == "forbidden" and task.info.metric == "bpb" and not task.info.higher_is_better
