"""Recall across segments: tasks whose answer lies in an earlier segment of a stream, so that only a
model with a memory (``trevo.segments``) can score above chance.

Both generate streams of ``segments`` × ``seq_len`` tokens (``info.segments``); a model reads them
one segment of ``seq_len`` at a time.
"""

from __future__ import annotations

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, TaskInfo
from trevo.tasks.synthetic import GeneratedTask, require
from trevo.validation import MAX_SEQ_LEN

PASSKEY = Paper("Landmark Attention: Random-Access Infinite Context Length for Transformers (passkey retrieval)",
                "2305.16300", 2023)
COPY = Paper("Recurrent Memory Transformer (copy and reverse tasks across segments)", "2207.06881", 2022)

FILLER_START = 3  # token ids below are markers


@register("task", "passkey", paper=PASSKEY, category="Benchmark", family="segment_recall")
class Passkey(GeneratedTask):
    """Passkey retrieval across segments (Mohtashami & Jaggi 2023, §4.2; the RMT papers' needle tests).

    A stream of ``segments`` segments of ``seq_len`` tokens is filler: tokens drawn uniformly from
    3 … V−1. In segment ``segments − 1 − distance`` the key marker (token 1) is followed by the passkey,
    ``n_key`` tokens drawn from 3 … V−1, at a uniformly random offset of that segment. The last
    segment ends with ``n_key`` question markers (token 2): at the i-th one the model must output the
    i-th passkey token (scored there only; metric: per-token accuracy, chance 1/(V−3)). ``distance`` is
    the number of segments between the key and the question: 0 puts both in the last segment. The
    paper's filler is repeated text and its key a 5-digit number in a prompt; this is the same test on
    a synthetic vocabulary.
    """

    def __init__(self, seq_len: int = 32, segments: int = 4, distance: int = 3, n_key: int = 4,
                 vocab_size: int = 16) -> None:
        require(segments >= 1, f"passkey: segments must be at least 1, got {segments}")
        require(0 <= distance < segments, f"passkey: distance must lie in [0, segments − 1 = {segments - 1}] (the "
                                          f"key's segment is segments − 1 − distance), got {distance}")
        require(n_key >= 1, f"passkey: n_key must be at least 1, got {n_key}")
        require(vocab_size >= 5, f"passkey: vocab_size must be at least 5 (3 markers and 2 key tokens), "
                                 f"got {vocab_size}")
        need = 2 * n_key + 1 if distance == 0 else n_key + 1
        require(need <= seq_len <= MAX_SEQ_LEN, f"passkey: seq_len must lie in [{need}, {MAX_SEQ_LEN:,}] (the "
                                                f"marker, {n_key} key tokens and the questions), got {seq_len}")
        self.seq_len, self.segments, self.distance, self.n_key, self.vocab_size = (
            seq_len, segments, distance, n_key, vocab_size)
        self.params = {"seq_len": seq_len, "segments": segments, "distance": distance, "n_key": n_key,
                       "vocab_size": vocab_size}
        self.info = TaskInfo(vocab_size=vocab_size, head="lm", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="accuracy", higher_is_better=True, segments=segments)

    def make(self, gen: torch.Generator, n: int) -> Batch:
        T, S, K, V = self.seq_len, self.segments, self.n_key, self.vocab_size
        tokens = torch.randint(FILLER_START, V, (n, S * T), generator=gen)
        key = torch.randint(FILLER_START, V, (n, K), generator=gen)
        question = S * T - K  # the questions fill the last K positions of the stream
        key_segment = S - 1 - self.distance
        room = (question if self.distance == 0 else (key_segment + 1) * T) - (K + 1) - key_segment * T
        offset = key_segment * T + torch.randint(0, room + 1, (n,), generator=gen)
        rows = torch.arange(n)[:, None]
        tokens[rows[:, 0], offset] = 1
        tokens[rows, offset[:, None] + 1 + torch.arange(K)] = key
        tokens[:, question:] = 2
        target = torch.zeros_like(tokens)
        target[:, question:] = key
        loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
        loss_mask[:, question:] = True
        return {"input": tokens, "target": target, "loss_mask": loss_mask}


@register("task", "copy_after_distractors", paper=COPY, category="Benchmark", family="segment_recall")
class CopyAfterDistractors(GeneratedTask):
    """Copy a segment after ``distractors`` segments of noise (the copy task of RMT, Bulatov et al. 2022,
    §4, with the segments to copy and to answer set apart by distractor segments).

    Vocabulary: 0 … V−2 data tokens, V−1 the copy marker. Segment 0 holds ``seq_len`` data tokens
    x_0 … x_{T−1} drawn uniformly; segments 1 … ``distractors`` hold fresh uniform data tokens; the
    last segment's input is the marker then x_0 … x_{T−2}, and its target x_0 … x_{T−1} (teacher
    forcing: at position t the model must give x_t). Only the last segment is scored; metric:
    per-token accuracy (chance 1/(V−1)). ``segments`` = ``distractors`` + 2.
    """

    def __init__(self, seq_len: int = 16, distractors: int = 1, vocab_size: int = 16) -> None:
        require(distractors >= 0, f"copy_after_distractors: distractors must be at least 0, got {distractors}")
        require(vocab_size >= 3, f"copy_after_distractors: vocab_size must be at least 3, got {vocab_size}")
        require(2 <= seq_len <= MAX_SEQ_LEN, f"copy_after_distractors: seq_len must lie in [2, {MAX_SEQ_LEN:,}], "
                                             f"got {seq_len}")
        self.seq_len, self.distractors, self.vocab_size = seq_len, distractors, vocab_size
        self.params = {"seq_len": seq_len, "distractors": distractors, "vocab_size": vocab_size}
        self.info = TaskInfo(vocab_size=vocab_size, head="lm", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="accuracy", higher_is_better=True, segments=distractors + 2)

    def make(self, gen: torch.Generator, n: int) -> Batch:
        T, V = self.seq_len, self.vocab_size
        S = self.distractors + 2
        tokens = torch.randint(0, V - 1, (n, S * T), generator=gen)
        source = tokens[:, :T]
        last = (S - 1) * T
        tokens[:, last] = V - 1
        tokens[:, last + 1:] = source[:, :-1]
        target = torch.zeros_like(tokens)
        target[:, last:] = source
        loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
        loss_mask[:, last:] = True
        return {"input": tokens, "target": target, "loss_mask": loss_mask}
