"""MAD's tasks against their definitions (arXiv 2403.17844, mad-lab's generators): recall binds each key
to one value within a sequence and scores the queried value; fuzzy recall's keys span several tokens;
noisy recall's noise tokens are never keys and never scored; memorization's key-value map is fixed
across the training set and every split; compression's targets are its own inputs, closed by the
compression token and decoded from the last position alone; training targets are the shifted inputs."""

from __future__ import annotations

import torch

from trevo.registry import create
from trevo.tasks.mad import MAD


def _pairs(tokens: list[int], keys: set[int]) -> list[tuple[int, int]]:
    return [(tokens[i], tokens[i + 1]) for i in range(0, len(tokens) - 1, 2) if tokens[i] in keys]


def test_recall_binds_keys_within_a_sequence_and_scores_the_probe():
    task = create("task", "mad_recall", vocab_size=16, seq_len=64)
    batch = task.eval_set("val", 32)
    keys = set(range(7))  # 15 usable ids after the copy token: keys 0..6, values 7..14
    for x, y, m in zip(batch["input"].tolist(), batch["target"].tolist(), batch["loss_mask"].tolist(), strict=True):
        assert len(x) == 64 and sum(m) == 1 and m[-1]
        context = x[:-2]
        bound = {}
        for k, v in _pairs(context, keys):
            assert bound.setdefault(k, v) == v and 7 <= v <= 14  # one value per key per sequence
        assert x[-2] == 15 and x[-1] in bound and y[-1] == bound[x[-1]]  # copy token, a seen key, its value
    train = task.train_batch(0, 8, 0)
    assert torch.equal(train["input"][:, 1:], train["target"][:, :-1]) and bool(train["loss_mask"].all())


def test_multi_query_recall_scores_every_repeated_key():
    task = create("task", "mad_recall", vocab_size=16, seq_len=64, multi_query=True)
    batch = task.eval_set("val", 16)
    for x, y, m in zip(batch["input"].tolist(), batch["target"].tolist(), batch["loss_mask"].tolist(), strict=True):
        seq = [x[0], *y]
        seen = set()
        for i in range(0, len(seq) - 1, 2):
            k = seq[i]
            assert m[i] == (k in seen)  # target position i is the value seq[i + 1]
            seen.add(k)


def test_noisy_recall_noise_is_never_a_key_or_scored():
    task = create("task", "mad_noisy_recall", vocab_size=32, seq_len=128, noise_vocab_size=16, frac_noise=0.5)
    batch = task.eval_set("val", 32)
    noise_ids = set(range(15, 31))  # 31 usable - 16 noise = 15: keys 0..6, values 7..14, noise 15..30
    n_noise = 0
    for x, y, m in zip(batch["input"].tolist(), batch["target"].tolist(), batch["loss_mask"].tolist(), strict=True):
        n_noise += sum(t in noise_ids for t in x)
        assert x[-1] not in noise_ids and y[-1] not in noise_ids
        assert all(t not in noise_ids for t, s in zip(y, m, strict=True) if s)
    assert 0.35 < n_noise / (32 * 126) < 0.65  # about frac_noise of the context


def test_fuzzy_recall_keys_span_several_tokens():
    task = create("task", "mad_fuzzy_recall", vocab_size=16, seq_len=64, k_motif_size=3, v_motif_size=3)
    batch = task.eval_set("val", 32)
    for x, y, m in zip(batch["input"].tolist(), batch["target"].tolist(), batch["loss_mask"].tolist(), strict=True):
        n_scored = sum(m)
        assert 1 <= n_scored <= 3 and all(m[-n_scored:])  # the probe value: 1–3 tokens, at the end
        seq = [x[0], *y]
        value = tuple(seq[-n_scored:])
        key = tuple(seq[-n_scored - 3:-n_scored])  # at evaluation every key has the full motif size
        assert seq[-n_scored - 4] == 15 and all(0 <= t < 7 for t in key) and len(set(key)) == 3
        assert all(7 <= t < 14 for t in value)
        context = seq[:-n_scored - 4]
        where = [i for i in range(len(context) - 2) if tuple(context[i:i + 3]) == key]
        assert where and all(tuple(context[i + 3:i + 3 + n_scored]) == value for i in where[:1])


def test_multi_query_fuzzy_recall_scores_every_value_of_a_key_shown_before():
    task = create("task", "mad_fuzzy_recall", vocab_size=16, seq_len=64, multi_query=True)
    batch = task.eval_set("test", 32)
    repeats = 0
    for x, y, m in zip(batch["input"].tolist(), batch["target"].tolist(), batch["loss_mask"].tolist(), strict=True):
        seq, scored = [x[0], *y], [False, *m]
        body = seq[next(i for i, t in enumerate(seq) if t != 15):]
        assert 15 not in body  # no copy token: V-1 pads; keys 0..6 and values 7..14 (V-1 = 15 usable ids)
        runs = [i for i in range(1, len(seq)) if scored[i] and not scored[i - 1]]
        assert scored[-1] and runs
        for start in runs:  # each scored value follows a 3-token key (the full motif at evaluation) seen before
            end = next((j for j in range(start, len(seq)) if not scored[j]), len(seq))
            key, value = tuple(seq[start - 3:start]), tuple(seq[start:end])
            assert all(0 <= t < 7 for t in key) and all(7 <= t < 15 for t in value)
            earlier = [i for i in range(start - 3) if tuple(seq[i:i + 3]) == key]
            assert earlier and tuple(seq[earlier[0] + 3:earlier[0] + 3 + len(value)]) == value
        repeats += len(runs) - 1
    assert repeats > 0  # repeated keys in the context are scored, not only the final probe


def test_memorization_uses_one_fixed_map_everywhere():
    task = create("task", "mad_memorization", vocab_size=64, seq_len=32)
    again = create("task", "mad_memorization", vocab_size=64, seq_len=32)
    assert task.kv_map == again.kv_map and len(task.kv_map) == 31
    assert len(set(task.kv_map.values())) == 31  # a bijection from keys 0..30 to values 31..61
    seen = {}
    batches = [task.train_batch(s, 16, seed) for s in range(5) for seed in (0, 1)] + [task.eval_set("test", 16)]
    for b in batches:
        x, y, m = b["input"], b["target"], b["loss_mask"]
        assert bool((x[:, 1::2] == 63).all()) and bool(m[:, 1::2].all()) and not bool(m[:, 0::2].any())
        for k, v in zip(x[:, 0::2].flatten().tolist(), y[:, 1::2].flatten().tolist(), strict=True):
            assert seen.setdefault(k, v) == v == task.kv_map[k]
    assert len(seen) > 25


def test_mad_tasks_cite_the_paper_and_refuse_impossible_settings():
    from trevo.registry import get
    from trevo.tasks.synthetic import TaskParameterError

    for name in ("mad_recall", "mad_noisy_recall", "mad_fuzzy_recall", "mad_memorization", "mad_compression"):
        assert get("task", name).paper == MAD
    import pytest

    with pytest.raises(TaskParameterError, match="noise_vocab_size"):
        create("task", "mad_recall", frac_noise=0.3)
    with pytest.raises(TaskParameterError, match="vocab_size"):
        create("task", "mad_fuzzy_recall", vocab_size=6)
    with pytest.raises(TaskParameterError, match="seq_len"):
        create("task", "mad_compression", seq_len=1)


def test_compression_reconstructs_its_own_inputs_closed_by_the_compression_token():
    task = create("task", "mad_compression", vocab_size=16, seq_len=32)
    assert task.info.head == "reconstruct" and task.info.causal == "required"
    for batch in (task.eval_set("test", 64), task.train_batch(3, 64, 0)):
        x = batch["input"]
        assert x.shape == (64, 32) and bool((x[:, -1] == 15).all())  # mad-lab: compression token = V-1
        assert int(x[:, :-1].max()) <= 14 and len(set(x[:, :-1].flatten().tolist())) == 15  # uniform over 0..14
        assert torch.equal(batch["target"], x) and bool(batch["loss_mask"].all())  # every token, itself


def test_compression_model_decodes_every_position_from_the_last_one_only():
    from trevo.config import RunConfig
    from trevo.train import build

    cfg = RunConfig.from_dict({"model": {"d_model": 32, "n_layers": 2, "mixer": "gla"},
                               "task": {"name": "mad_compression", "vocab_size": 8, "seq_len": 12}})
    task, model = build(cfg)
    x = task.eval_set("val", 4)["input"]
    hidden = torch.randn(4, 12, 32)
    changed = hidden.clone()
    changed[:, :-1] = torch.randn(4, 11, 32)  # everything but the code
    head = model.head
    assert torch.equal(head(hidden), head(changed))
    # the decoder, written out (mad-lab's AutoEncoder.decode): unembed(MLP(code + p_t)) for every t
    from trevo.components.position_biases import sinusoid_table

    code = hidden[:, -1]
    for t in (0, 5, 11):
        h = code + sinusoid_table(torch.tensor([t]), 32).float()
        for i in (0, 3):
            h = torch.nn.functional.gelu(head.decoder[i + 1](head.decoder[i](h)))
        want = head.unembed[1](head.unembed[0](h))
        torch.testing.assert_close(head(hidden)[:, t], want)
    assert model(x).shape == (4, 12, 8)
