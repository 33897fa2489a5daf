"""Recall across segments: passkey retrieval and copying after distractor segments, checked by hand on
small streams."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.errors import TrevoError
from trevo.registry import create


@pytest.mark.parametrize("name", ["passkey", "copy_after_distractors"])
def test_batches_are_a_function_of_seed_and_step(name):
    check_batches_are_a_function_of_seed_and_step(name, {})


@pytest.mark.parametrize("distance", [0, 1, 2])
def test_passkey_sits_distance_segments_before_the_question(distance):
    T, S, K = 8, 3, 2
    task = create("task", "passkey", seq_len=T, segments=S, distance=distance, n_key=K, vocab_size=9)
    assert task.info.segments == S and task.info.seq_len == T
    b = task.train_batch(0, 64, 1)
    assert b["input"].shape == (64, S * T)
    for x, y, m in zip(b["input"], b["target"], b["loss_mask"], strict=True):
        (marker,) = (x == 1).nonzero()[:, 0].tolist()  # exactly one key marker
        assert marker // T == S - 1 - distance  # in the segment `distance` before the last
        assert marker + K < S * T - K  # the key ends before the questions
        assert x[-K:].tolist() == [2] * K and m.nonzero()[:, 0].tolist() == list(range(S * T - K, S * T))
        assert y[m].tolist() == x[marker + 1:marker + 1 + K].tolist()  # the answers are the key
        assert (marker + K) // T == marker // T  # the key does not spill into the next segment
        others = torch.ones(S * T, dtype=torch.bool)
        others[marker:marker + K + 1] = False
        others[-K:] = False
        assert bool((x[others] >= 3).all())  # everything else is filler


def test_passkey_hand_checked_stream():
    task = create("task", "passkey", seq_len=4, segments=2, distance=1, n_key=1, vocab_size=5)
    b = task.make(torch.Generator().manual_seed(0), 1)
    x = b["input"][0].tolist()
    # segment 0 holds [marker, key] somewhere in its 4 tokens, segment 1 ends with the question marker
    assert x[:4].count(1) == 1 and x[-1] == 2 and 1 not in x[4:]
    assert b["target"][0, -1] == x[x.index(1) + 1] and int(b["loss_mask"].sum()) == 1


def test_copy_segment_is_reproduced_after_the_distractors():
    T, D, V = 5, 2, 7
    task = create("task", "copy_after_distractors", seq_len=T, distractors=D, vocab_size=V)
    assert task.info.segments == D + 2
    b = task.train_batch(0, 16, 3)
    for x, y, m in zip(b["input"], b["target"], b["loss_mask"], strict=True):
        last = (D + 1) * T
        assert x[last] == V - 1 and x[last + 1:].tolist() == x[:T - 1].tolist()  # teacher-forced copy
        assert y[m].tolist() == x[:T].tolist() and m.nonzero()[:, 0].tolist() == list(range(last, last + T))
        assert bool((x[:last] < V - 1).all())  # no marker before the copy segment


def test_bad_parameters_are_refused():
    with pytest.raises(TrevoError, match="distance"):
        create("task", "passkey", segments=2, distance=2)
    with pytest.raises(TrevoError, match="seq_len"):
        create("task", "passkey", seq_len=4, distance=0, n_key=2, segments=1)
    with pytest.raises(TrevoError, match="distractors"):
        create("task", "copy_after_distractors", distractors=-1)


@pytest.mark.parametrize("name", ["passkey", "copy_after_distractors"])
def test_trains_two_steps(tmp_path, name):
    train_two_steps(tmp_path, {"name": name, "seq_len": 8}, "true")
