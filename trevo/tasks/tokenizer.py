"""Tokenizers for the tokenized tasks: a byte-level BPE trained with Hugging Face ``tokenizers`` on a
corpus's training split, or a ``tokenizer.json`` of one's own; and token files in nanoGPT's ``.bin``
convention (a flat array of uint16 or uint32 ids, read with ``np.memmap``, so a corpus larger than
memory is never loaded whole).

Byte-level BPE (Radford et al. 2019, GPT-2 §2.2; Sennrich et al. 2016): every byte is a base symbol,
so any text encodes without unknown tokens, and merges are learned from the training split only.
Trained tokenizers and the token ids of a corpus are cached under ``$TREVO_CACHE`` (default
``~/.cache/trevo``), keyed by the corpus, the vocabulary size and the library version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from trevo.tasks.corpus import Corpus, DataError

TOKEN_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
END_OF_TEXT = "<|endoftext|>"


def require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise DataError("tokenized tasks need the `tokenizers` library: pip install 'trevo[hf]' "
                        "(or pip install tokenizers)") from None
    return tokenizers


def cache_dir() -> Path:
    root = Path(os.environ.get("TREVO_CACHE") or Path.home() / ".cache" / "trevo")
    root.mkdir(parents=True, exist_ok=True)
    return root


def load_tokenizer(path: str | Path) -> Any:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file (or a folder holding one)."""
    tokenizers = require_tokenizers()
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise DataError(f"tokenizer file {str(path)!r} does not exist; give a tokenizer.json (as Hugging Face "
                        f"tokenizers writes it), or tokenizer=bpe to train one on the data")
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:  # the library raises its own exception type for malformed files
        raise DataError(f"{path} is not a tokenizer.json that Hugging Face tokenizers can read: {e}") from None


def _text_chunks(data: bytes, size: int = 1 << 20) -> list[str]:
    """The corpus as text, cut at line ends into pieces of about ``size`` bytes (for batched encoding)."""
    pieces, start = [], 0
    while start < len(data):
        stop = data.find(b"\n", start + size)
        stop = len(data) if stop < 0 else stop + 1
        pieces.append(data[start:stop].decode("utf-8", errors="replace"))
        start = stop
    return pieces


def corpus_fingerprint(corpus: Corpus) -> str:
    """A hash of a corpus's splits (their bytes, not their paths): the cache key of what is derived from it."""
    h = hashlib.sha256()
    for split in (corpus.train, corpus.val, corpus.test):
        h.update(len(split).to_bytes(8, "little"))
        h.update(split.numpy().tobytes())
    return h.hexdigest()


def train_bpe(corpus: Corpus, vocab_size: int) -> Any:
    """A byte-level BPE of ``vocab_size`` tokens (the 256 bytes, ``<|endoftext|>`` and the merges)
    learned from the training split of ``corpus``; cached, so a second call only reads it."""
    tokenizers = require_tokenizers()
    if not 257 <= vocab_size <= 1 << 20:
        raise DataError(f"a byte-level BPE needs vocab_size between 257 (the bytes and <|endoftext|>) and 2^20, "
                        f"got {vocab_size}")
    fields = [corpus_fingerprint(corpus), vocab_size, tokenizers.__version__]
    key = hashlib.sha256(json.dumps(fields).encode()).hexdigest()
    path = cache_dir() / f"bpe-{key[:16]}.json"
    if path.is_file():
        return tokenizers.Tokenizer.from_file(str(path))
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_text_chunks(bytes(corpus.train.numpy())), trainer=trainer)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)
    return tok


def encode_split(tokenizer: Any, data: bytes, key: str) -> np.ndarray:
    """The token ids of ``data`` as a uint32 memmap, cached under ``key``."""
    path = cache_dir() / f"tokens-{hashlib.sha256(key.encode()).hexdigest()[:16]}.bin"
    if not path.is_file():
        ids = [np.asarray(e.ids, dtype=np.uint32) for e in tokenizer.encode_batch(_text_chunks(data))]
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        (np.concatenate(ids) if ids else np.zeros(0, np.uint32)).tofile(tmp)
        os.replace(tmp, path)
    if path.stat().st_size == 0:
        return np.zeros(0, np.uint32)
    return np.memmap(path, dtype=np.uint32, mode="r")


def tokenizer_key(tokenizer: Any) -> str:
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()


def read_token_file(path: Path, dtype: str) -> np.ndarray:
    """A nanoGPT ``.bin`` file: a flat array of ``dtype`` token ids, memory-mapped (read-only)."""
    if dtype not in TOKEN_DTYPES:
        raise DataError(f"token_dtype must be one of {', '.join(TOKEN_DTYPES)}, got {dtype!r}")
    if not path.is_file():
        raise DataError(f"token file {str(path)!r} does not exist; a token folder holds train.bin and val.bin "
                        f"(nanoGPT's convention), optionally test.bin")
    size = path.stat().st_size
    width = np.dtype(TOKEN_DTYPES[dtype]).itemsize
    if size == 0:
        raise DataError(f"token file {str(path)!r} is empty")
    if size % width:
        raise DataError(f"token file {str(path)!r} has {size} bytes, not a whole number of {dtype} ids; "
                        f"is token_dtype right (uint16 for vocabularies up to 65536, else uint32)?")
    return np.memmap(path, dtype=TOKEN_DTYPES[dtype], mode="r")


def write_token_file(path: str | Path, ids: Any, dtype: str = "uint16") -> Path:
    """Write token ids as a nanoGPT ``.bin`` file (the inverse of ``read_token_file``)."""
    if dtype not in TOKEN_DTYPES:
        raise DataError(f"token_dtype must be one of {', '.join(TOKEN_DTYPES)}, got {dtype!r}")
    array = np.asarray(ids)
    if array.size and (array.min() < 0 or array.max() > np.iinfo(TOKEN_DTYPES[dtype]).max):
        raise DataError(f"token ids in [{array.min()}, {array.max()}] do not fit {dtype}")
    path = Path(path)
    array.astype(TOKEN_DTYPES[dtype]).tofile(path)
    return path
