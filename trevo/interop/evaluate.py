"""``trevo eval``: a run's metrics on a split of its task, or on any file or folder of the user's.

Language models (byte_lm, token_lm) on a file or folder: the text is tokenized as the run was (bytes,
or the run's tokenizer), cut into consecutive windows of ``seq_len`` + 1 tokens overlapping by one
(every token after the first is predicted once, from the context inside its window), and scored:
loss (nats per token), bits per token, bits per byte (bits over the text's bytes) and perplexity.
Other tasks (classification, masked LM) read ``--data`` as the task's own data option and are
scored on all of it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trevo.tasks.base import BITS_PER_NAT
from trevo.tasks.corpus import DataError, load_corpus


def _lm_ids(task: Any, data: str) -> tuple[np.ndarray, int]:
    """The token ids of every byte of ``data`` (all splits, in order) and its byte count."""
    corpus = load_corpus(data, 0.05)
    raw = b"".join(bytes(corpus.split(s).numpy()) for s in ("train", "val", "test"))
    tokenizer = getattr(task, "tokenizer", None)
    if tokenizer is None and task.info.vocab_size != 256:
        raise DataError("this run reads token files, not text; give --data a folder of .bin token files")
    if tokenizer is None:
        return np.frombuffer(raw, dtype=np.uint8).astype(np.int64), len(raw)
    ids = [e.ids for e in tokenizer.encode_batch([raw.decode("utf-8", errors="replace")])]
    return np.asarray(ids[0], dtype=np.int64), len(raw)


@torch.no_grad()
def score_lm(model: torch.nn.Module, ids: np.ndarray, seq_len: int, batch_size: int = 8,
             max_windows: int | None = None) -> dict[str, float]:
    """Summed next-token negative log-likelihood over consecutive windows of ``ids``."""
    if len(ids) < 2:
        raise DataError(f"the data has {len(ids)} tokens; evaluation needs at least 2")
    starts = list(range(0, len(ids) - 1, seq_len))[:max_windows]
    nll, count, correct = 0.0, 0, 0
    model.eval()
    for b in range(0, len(starts), batch_size):
        rows = [torch.from_numpy(np.asarray(ids[s:s + seq_len + 1], dtype=np.int64)) for s in starts[b:b + batch_size]]
        width = max(len(r) for r in rows)
        window = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width - 1, dtype=torch.bool)
        for i, r in enumerate(rows):
            window[i, :len(r)] = r
            mask[i, :len(r) - 1] = True
        logits = model(window[:, :-1]).float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1),
                                                 reduction="none").reshape(mask.shape)
        nll += float(loss[mask].sum())
        count += int(mask.sum())
        correct += int(((logits.argmax(-1) == window[:, 1:]) & mask).sum())
    return {"nll": nll, "count": float(count), "correct": float(correct)}


def lm_metrics(totals: dict[str, float], n_bytes: int | None) -> dict[str, float]:
    loss = totals["nll"] / max(totals["count"], 1)
    metrics = {"loss": loss, "bpt": loss * BITS_PER_NAT, "ppl": math.exp(min(loss, 700.0)),
               "accuracy": totals["correct"] / max(totals["count"], 1), "tokens": totals["count"]}
    if n_bytes:
        metrics["bpb"] = totals["nll"] * BITS_PER_NAT / n_bytes
        metrics["bytes"] = float(n_bytes)
    return metrics


def evaluate_run(run_dir: str | Path, data: str | None = None, split: str = "test", batch_size: int = 8,
                 max_batches: int | None = None, seq_len: int | None = None) -> dict[str, float]:
    """Metrics of the run ``run_dir`` on ``split`` of its task, or on ``data`` (a file or folder).

    ``seq_len`` (language models only) scores windows of that many tokens instead of the trained length: the
    length-extrapolation test of ALiBi (Press et al. 2022, Table 1) and KERPLE (Chi et al. 2022).
    """
    from trevo.api import load
    from trevo.registry import create
    from trevo.train import evaluate

    model, cfg, task = load(run_dir)
    lm = cfg.task.name in ("byte_lm", "token_lm")
    if seq_len is not None and not lm:
        raise DataError(f"--seq-len applies to language-model runs; this run's task is {cfg.task.name!r}")
    if seq_len is not None and seq_len < 1:
        raise DataError(f"--seq-len must be a positive number of tokens, got {seq_len}")
    # A fixed-length component (a learned position table) refuses longer windows itself, naming its limit.
    window = seq_len or task.info.seq_len
    if data is None:
        if lm:
            tokens = task.split(split) if cfg.task.name == "token_lm" else task.corpus.split(split).numpy()
            totals = score_lm(model, tokens, window, batch_size, max_batches and max_batches * batch_size)
            # bits per byte of the text the windows cover: the whole split, or its first --max-batches windows
            per_token = task.bytes_per_token(split) if cfg.task.name == "token_lm" else 1.0
            return lm_metrics(totals, int(per_token * (totals["count"] + 1)) if per_token else None)
        n = max_batches or 1_000_000  # every batch of the split (tasks stop at the end of a split)
        return evaluate(model, task, split, batch_size, n)
    path = Path(data).expanduser()
    if lm:
        if path.is_dir() and (path / "val.bin").is_file() or path.suffix == ".bin":
            root = path if path.is_dir() else path.parent
            options = {**cfg.task.options, "tokens": str(root), "data": None}
            task = create("task", "token_lm", **{k: v for k, v in options.items() if k != "data"})
            ids = np.concatenate([task.split(s) for s in ("val", "test")]).astype(np.int64)
            return lm_metrics(score_lm(model, ids, window, batch_size), None)
        ids, n_bytes = _lm_ids(task, str(path))
        return lm_metrics(score_lm(model, ids, window, batch_size,
                                   max_batches and max_batches * batch_size), n_bytes)
    task = create("task", cfg.task.name, **{**cfg.task.options, "data": str(path)})
    return evaluate(model, task, "all", batch_size, max_batches or 1_000_000)
