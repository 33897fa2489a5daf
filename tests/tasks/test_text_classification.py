"""The user's own text classification data: JSONL and CSV rows, folder splits, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from trevo.tasks.corpus import DataError
from trevo.tasks.text_classification import TextClassification


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def examples(n=60):
    return [{"text": f"{'good' if i % 2 else 'bad'} movie number {i}", "label": "pos" if i % 2 else "neg"}
            for i in range(n)]


def test_jsonl_rows_become_byte_tokens_padded_and_labelled(tmp_path):
    task = TextClassification(str(write_jsonl(tmp_path / "d.jsonl", examples())), seq_len=24)
    assert task.classes == ["neg", "pos"] and task.info.n_classes == 2 and task.info.vocab_size == 256
    tokens, mask, labels = task.splits["all"]
    assert len(labels) == 60
    # the first row in split order, checked by hand against its bytes
    text = [r for r in examples() if r["text"].encode() == bytes(tokens[0][mask[0]].tolist())]
    assert len(text) == 1 and labels[0] == task.classes.index(text[0]["label"])
    assert not mask[0, len(text[0]["text"]):].any()  # padding after the text
    batch = task.train_batch(0, 4, seed=0)
    assert batch["input"].shape == (4, 24) and batch["padding_mask"].dtype == torch.bool


def test_split_depends_on_the_text_not_the_order(tmp_path):
    rows = examples()
    a = TextClassification(str(write_jsonl(tmp_path / "a.jsonl", rows)), seq_len=32)
    b = TextClassification(str(write_jsonl(tmp_path / "b.jsonl", rows[::-1])), seq_len=32)
    for split in ("train", "val", "test"):
        assert sorted(map(tuple, a.splits[split][0].tolist())) == sorted(map(tuple, b.splits[split][0].tolist()))


def test_csv_and_a_folder_of_splits(tmp_path):
    for split, rows in (("train", examples(20)), ("val", examples(6)), ("test", examples(4))):
        lines = ["text,label"] + [f"\"{r['text']}\",{r['label']}" for r in rows]
        (tmp_path / f"{split}.csv").write_text("\n".join(lines) + "\n")
    task = TextClassification(str(tmp_path), seq_len=16)
    assert [len(task.splits[s][2]) for s in ("train", "val", "test", "all")] == [20, 6, 4, 30]


@pytest.mark.parametrize("content, message", [
    ("", "holds no examples"),
    ('{"text": "a", "label": "x"}\n{"text": "b"}\n', "d.jsonl:2 is unlabelled"),
    ('{"text": "a", "label": "x"}\nnot json\n', "d.jsonl:2 is not valid JSON"),
    ('{"label": "x"}\n', "d.jsonl:1 has no 'text'"),
    ('{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', "one class"),
])
def test_bad_files_get_one_clear_error(tmp_path, content, message):
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        TextClassification(str(tmp_path / "d.jsonl"))


def test_unreadable_and_unknown_files(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="cannot read .* as UTF-8"):
        TextClassification(str(tmp_path / "d.jsonl"))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="reads .jsonl or .csv"):
        TextClassification(str(tmp_path / "d.txt"))


def test_a_classifier_learns_it(tmp_path, tiny_cfg):
    """The words 'good'/'bad' decide the label: a tiny model reaches high validation accuracy."""
    from trevo.train import train

    path = write_jsonl(tmp_path / "d.jsonl", examples(200))
    cfg = tiny_cfg(f"task={{name: text_classification, data: {path}, seq_len: 24}}", "train.steps=60",
                   "train.eval_every=60", "train.batch_size=16", "train.lr=0.003")
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["final"]["accuracy"] > 0.9
