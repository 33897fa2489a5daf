"""MQAR (Zoology): the generator follows the paper's layout (keys, values, queries answered by
the token after the key's earlier occurrence), refuses bad sizes, and trains only causal models."""

from __future__ import annotations

import pytest

from tests.helpers import TWO_STEPS, check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.config import RunConfig
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import create
from trevo.train import train


def test_batches_are_a_function_of_seed_and_step():
    check_batches_are_a_function_of_seed_and_step("mqar", {"seq_len": 64, "n_pairs": 4})


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


def test_trains_two_steps(tmp_path):
    train_two_steps(tmp_path, {"name": "mqar", "seq_len": 32, "n_pairs": 4, "vocab_size": 16}, "true")


def test_lm_probes_refuse_a_bidirectional_model(tmp_path):
    cfg = RunConfig().override(TWO_STEPS).replace({"model.causal": "false", "task": {"name": "mqar", "seq_len": 32,
                                                                                    "n_pairs": 4, "vocab_size": 16}})
    with pytest.raises(IncompatibleError, match="causal"):
        train(cfg, tmp_path, progress=False)
