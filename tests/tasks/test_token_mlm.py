"""token_mlm: BERT's 80/10/10 corruption over byte ids with an offset (the language Perceiver's ids)."""

from __future__ import annotations

import torch

from trevo.tasks.token_mlm import TokenMLM, corrupt


def test_corruption_rates_and_ranges():
    chunk = torch.randint(6, 262, (400, 100), generator=torch.Generator().manual_seed(0))
    batch = corrupt(chunk, torch.Generator().manual_seed(1), 0.15, 3, 6, 262)
    mask = batch["loss_mask"]
    assert (mask.sum(1) == 15).all()
    changed = batch["input"] != chunk
    assert not changed[~mask].any()  # only chosen positions are touched
    masked = (batch["input"] == 3) & mask
    assert abs(masked.sum() / mask.sum() - 0.8) < 0.02
    assert ((batch["input"] >= 6) | (batch["input"] == 3)).all()


def test_perceiver_byte_ids(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(bytes(range(256)) * 40)
    task = TokenMLM(seq_len=32, data=str(path), byte_offset=6, mask_id=3, vocab_size=262)
    assert task.info.vocab_size == 262 and task.info.head == "mlm"
    batch = task.train_batch(0, 4, 0)
    assert ((batch["target"] >= 6) & (batch["target"] < 262)).all()
    first = batch["target"][0]
    assert ((first[1:] - first[:-1]) % 256 == 1).all()  # consecutive bytes of the file, shifted by 6
    a, b = next(task.eval_batches("val", 2, 1)), next(task.eval_batches("val", 2, 1))
    assert torch.equal(a["input"], b["input"])  # evaluation masks are fixed
