"""Width matching to a budget: the guess from the fitted curve lands on a linear count as on a quadratic
one, and a state_budget matches each mixer's generation state (a KV cache against its formula)."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_sweep
from trevo.arena.budgets import count_state_bytes, match_width
from trevo.arena.sweep import SweepError, plan_sweep
from trevo.config import RunConfig
from trevo.registry import create


@pytest.mark.parametrize("measure, budget, width", [
    (lambda d: 1000 * d, 100_000, 100),  # linear in d (a KV cache): the fit's spurious far root is skipped
    (lambda d: 3 * d * d + 50 * d, 3 * 90 * 90 + 50 * 90, 90),  # quadratic (parameters)
])
def test_match_width_finds_the_width_of_a_known_count(measure, budget, width):
    info = create("task", "byte_lm", seq_len=16).info
    cfg = RunConfig().replace({"model.n_layers": 1, "task.seq_len": 16})
    matched, count = match_width(cfg, info, budget, lambda c: measure(c.model.d_model))
    assert (matched.model.d_model, count) == (width, budget)


def test_a_state_budget_matches_each_mixers_generation_state():
    info = create("task", "byte_lm", seq_len=16).info
    cfg = RunConfig().replace({"model.n_layers": 2, "model.d_model": 24, "task.seq_len": 16,
                               "model.mixer.name": "softmax_attention"})
    # a KV cache: keys and values of every layer, T positions × d_model, float32
    assert count_state_bytes(cfg, info) == 2 * 2 * 16 * 24 * 4
    budget = 2 * 1 * 16 * 40 * 4  # the tiny sweep has one layer: d_model 40
    plan = plan_sweep(tiny_sweep(state_budget=budget, variants=["softmax_attention", "mamba"]))
    by_label = {p.label: p for p in plan}
    assert by_label["softmax_attention"].config.model.d_model == 40
    mamba = by_label["mamba"].config
    assert abs(count_state_bytes(mamba, info) - budget) <= 0.05 * budget and mamba.model.d_model < 40
    with pytest.raises(SweepError, match="param_budget and state_budget both given"):
        tiny_sweep(state_budget=budget, param_budget=10_000)
    mlm = {"label": "mlm", "set": {"task.name": "mlm", "task.seq_len": 16}}
    with pytest.raises(SweepError, match="does not generate"):
        plan_sweep(tiny_sweep(state_budget=budget, variants=["softmax_attention"], tasks=[mlm]))
