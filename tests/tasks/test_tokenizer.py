"""Tokenizer helpers: nanoGPT token files round-trip; a trained BPE is cached and read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trevo.tasks.corpus import Corpus, DataError
from trevo.tasks.tokenizer import load_tokenizer, read_token_file, train_bpe, write_token_file


def test_token_files_round_trip_in_both_widths(tmp_path):
    ids = np.array([0, 1, 65535, 7])
    assert read_token_file(write_token_file(tmp_path / "a.bin", ids), "uint16").tolist() == ids.tolist()
    big = np.array([0, 70000])
    assert read_token_file(write_token_file(tmp_path / "b.bin", big, "uint32"), "uint32").tolist() == [0, 70000]
    with pytest.raises(DataError, match="do not fit uint16"):
        write_token_file(tmp_path / "c.bin", big)


def test_bpe_is_cached(tmp_path, monkeypatch):
    pytest.importorskip("tokenizers", reason="needs the optional extra: pip install 'trevo[hf]'")
    monkeypatch.setenv("TREVO_CACHE", str(tmp_path))
    data = torch.from_numpy(np.frombuffer(("import os\nprint(os.getcwd())\n" * 200).encode(), np.uint8).copy())
    corpus = Corpus(data, data[:100], data[:100], "test")
    first = train_bpe(corpus, 280)
    cached = list(tmp_path.glob("bpe-*.json"))
    assert len(cached) == 1
    assert train_bpe(corpus, 280).to_str() == first.to_str()
    assert load_tokenizer(cached[0]).encode("import os").ids == first.encode("import os").ids
    with pytest.raises(DataError, match="between 257"):
        train_bpe(corpus, 100)
