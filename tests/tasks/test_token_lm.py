"""Tokenized language modelling: a BPE trained on the data, a tokenizer.json, nanoGPT token files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trevo.tasks.corpus import DataError
from trevo.tasks.token_lm import TokenLM
from trevo.tasks.tokenizer import write_token_file

pytest.importorskip("tokenizers", reason="tokenized tasks need the optional extra: pip install 'trevo[hf]'")
TEXT = "".join(f"def function_{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(400))


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("TREVO_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "code.py"
    path.write_text(TEXT)
    return path


def test_bpe_is_trained_on_the_train_split_and_round_trips(corpus):
    task = TokenLM(seq_len=32, data=str(corpus), vocab_size=300)
    assert task.info.vocab_size == 300 and task.tokenizer.get_vocab_size() == 300
    assert task.decode(task.encode(TEXT[:200])) == TEXT[:200]  # byte-level: lossless
    train = task.split("train")
    assert len(train) < len(TEXT) / 2  # merges compress the text
    batch = task.train_batch(0, 4, 0)
    assert torch.equal(batch["input"][:, 1:], batch["target"][:, :-1])


def test_tokenizer_json_and_the_metrics(corpus, tmp_path):
    trained = TokenLM(seq_len=32, data=str(corpus), vocab_size=300).tokenizer
    trained.save(str(tmp_path / "tokenizer.json"))
    task = TokenLM(seq_len=32, data=str(corpus), tokenizer=str(tmp_path / "tokenizer.json"))
    assert task.info.vocab_size == 300
    totals = {"nll": 2.0 * math.log(2) * 10, "count": 10.0, "correct": 5.0}  # 2 bits per token
    list(task.eval_batches("val", 2, 1))
    metrics = task.finalize(totals)
    assert metrics["bpt"] == pytest.approx(2.0) and metrics["ppl"] == pytest.approx(4.0)
    ratio = len(task._corpus.val) / len(task.split("val"))
    assert metrics["bpb"] == pytest.approx(2.0 / ratio)


def test_nanogpt_token_files_are_memory_mapped(tmp_path):
    ids = np.arange(1000) % 50
    write_token_file(tmp_path / "train.bin", ids)
    write_token_file(tmp_path / "val.bin", ids[:400])
    task = TokenLM(seq_len=16, tokens=str(tmp_path), tokenizer=None, vocab_size=50)
    assert isinstance(task.split("train"), np.memmap)
    assert len(task.split("val")) == 200 and len(task.split("test")) == 200  # val.bin halved without test.bin
    batch = task.train_batch(3, 2, 0)
    assert ((batch["target"] - batch["input"]) % 50 == 1).all()  # the file's own order


def test_token_file_errors(tmp_path):
    write_token_file(tmp_path / "train.bin", np.arange(100))
    with pytest.raises(DataError, match="val.bin"):
        TokenLM(seq_len=8, tokens=str(tmp_path), tokenizer=None, vocab_size=200).split("train")
    (tmp_path / "val.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(DataError, match="not a whole number of uint16"):
        TokenLM(seq_len=8, tokens=str(tmp_path), tokenizer=None, vocab_size=200).split("train")
    write_token_file(tmp_path / "val.bin", np.arange(100))
    with pytest.raises(DataError, match="token id 99, outside the vocabulary of 50"):
        TokenLM(seq_len=8, tokens=str(tmp_path), tokenizer=None, vocab_size=50).split("train")
    with pytest.raises(DataError, match="needs task.vocab_size"):
        TokenLM(seq_len=8, tokens=str(tmp_path), tokenizer=None)
    with pytest.raises(DataError, match="only pre-tokenized files"):
        TokenLM(seq_len=8, tokenizer=None, vocab_size=50).split("train")
