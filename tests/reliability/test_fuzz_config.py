"""Random config overrides, valid and invalid, for every field of ModelConfig and TrainConfig and for
task and mixer options: a run either stops with a TrevoError (a clear message, exit code 2 in the
CLI) or finishes with finite metrics. Any other exception is a bug.

Valid values are drawn small (a run takes well under a second); invalid ones are drawn from outside
each field's declared rule (``trevo.validation``: below or above its bounds, not finite, another
type, not one of its choices), so that the property covers exactly the checks the config declares.
``OUTCOMES`` counts what the drawn configs did; the test prints it (``-s``). The slow test draws
``TREVO_FUZZ_EXAMPLES`` configs (default 400; 1500 in the closing note's measurement).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import typing

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from trevo.config import ModelConfig, RunConfig, TrainConfig
from trevo.registry import TrevoError
from trevo.train import train
from trevo.validation import Rule, field_rule

BASE = {"model.d_model": 16, "model.n_layers": 1, "task.seq_len": 16, "train.batch_size": 2, "train.steps": 2,
        "train.eval_every": 2, "train.checkpoint_every": 2, "train.eval_batches": 1, "train.warmup_steps": 1}

# Small valid values of every field, so that a valid draw is a tiny run.
VALID = {
    "model.arch": st.just("metaformer"),
    "model.d_model": st.integers(4, 24),
    "model.n_layers": st.integers(1, 2),
    "model.mixer": st.sampled_from(["softmax_attention", "linear_attention", "rwkv4", "retnet"]),
    "model.channel": st.sampled_from(["swiglu", "mlp"]),
    "model.norm": st.sampled_from(["rmsnorm", "layernorm"]),
    "model.position": st.sampled_from(["none", "sinusoidal", "rope", "learned"]),
    "model.residual": st.sampled_from(["prenorm", "postnorm", "sandwich", "rezero", "parallel"]),
    # Per-layer specs: bare mixer names and mappings (n_layers must be a multiple of their number).
    "model.layers": st.sampled_from([[], ["rwkv4"], ["softmax_attention", "retnet"],
                                     [{"mixer": "linear_attention", "residual": "postnorm", "channel": "mlp"}]]),
    "model.causal": st.sampled_from(["auto", "true", "false", True, False]),
    "model.max_len": st.one_of(st.none(), st.integers(16, 40)),
    "model.dropout": st.floats(0, 0.5),
    "model.tie_embeddings": st.booleans(),
    "model.options": st.just({}),
    "train.steps": st.integers(1, 3),
    "train.batch_size": st.integers(1, 3),
    "train.lr": st.one_of(st.floats(1e-5, 1e-2), st.floats(1e3, 1e30)),  # the large ones diverge
    "train.min_lr_ratio": st.floats(0, 1),
    "train.warmup_steps": st.integers(0, 4),
    "train.weight_decay": st.floats(0, 1),
    "train.beta1": st.floats(0, 0.99),
    "train.beta2": st.floats(0, 0.999),
    "train.grad_clip": st.floats(0, 10),
    "train.eval_every": st.integers(1, 4),
    "train.eval_batches": st.integers(1, 2),
    "train.checkpoint_every": st.integers(1, 4),
    "train.seed": st.integers(0, 2**32 - 1),
    "train.device": st.just("cpu"),
    "train.dtype": st.sampled_from(["float32", "float64", "bfloat16"]),
    "train.precision": st.sampled_from(["fp32", "bf16", "fp16"]),
    "train.log": st.just("csv"),  # tensorboard: an optional package
    "train.parallel": st.sampled_from(["none", "ddp", "fsdp"]),  # without torchrun: one process
    "train.compile": st.just(False),  # compiling takes tens of seconds per config
    "train.init_from": st.none(),  # a run directory to start from: none in a fuzzed run
    "train.bptt_segments": st.integers(1, 2),  # 2 on a task of whole sequences: refused
    "train.objective": st.sampled_from([None, "causal_lm", "masked_lm"]),
    "train.stop_at": st.one_of(st.none(), st.floats(-1, 5)),
    "train.peft": st.none(),  # fine-tunes a train.init_from run: none in a fuzzed run
}
TASK_OPTIONS = {
    "byte_lm": {"seq_len": st.integers(2, 24), "val_fraction": st.floats(0.01, 0.3)},
    "mqar": {"seq_len": st.sampled_from([8, 12, 16, 24]), "n_pairs": st.integers(1, 3),
             "vocab_size": st.integers(4, 32), "power_a": st.floats(0.01, 1), "random_filler": st.booleans()},
    "selective_copy": {"seq_len": st.integers(2, 24), "n_data": st.integers(1, 4), "vocab_size": st.integers(3, 16)},
}
MIXER_OPTIONS = {"n_heads": st.sampled_from([1, 2, 4]), "chunk_size": st.integers(1, 16)}

FIELDS = {f"{section}.{f.name}": (cls, f.name) for section, cls in (("model", ModelConfig), ("train", TrainConfig))
          for f in dataclasses.fields(cls)}
assert set(FIELDS) == set(VALID), set(FIELDS) ^ set(VALID)  # a new field needs its valid values here

JUNK = st.one_of(st.text(max_size=6), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.floats(allow_nan=True))


def invalid(hint: typing.Any, rule: Rule | None) -> st.SearchStrategy:
    """Values outside what ``hint`` and ``rule`` allow (or arbitrary ones where nothing is declared)."""
    rule = rule or Rule()
    options = [JUNK.filter(lambda v: not _fits(hint, rule, v))]
    if hint in (int, float) or hint == (int | None):
        low = rule.ge if rule.ge is not None else rule.gt
        high = rule.le if rule.le is not None else rule.lt
        if low is not None:
            options.append(st.integers(-10**20, math.ceil(low) - 1) if hint is not float
                           else st.floats(-1e30, low, exclude_max=rule.ge is not None))
        if high is not None:
            options.append(st.integers(math.floor(high) + 1, 10**20) if hint is not float
                           else st.floats(high, 1e30, exclude_min=rule.le is not None))
        if hint is float:
            options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    return st.one_of(options)


def _fits(hint: typing.Any, rule: Rule, value: typing.Any) -> bool:
    from trevo.validation import check

    return check("x", value, hint, rule) is None


@st.composite
def overrides(draw) -> dict[str, typing.Any]:
    """Base values, then some fields drawn valid (5 times in 6) or invalid."""
    values = dict(BASE)

    def valid_or(strategy: st.SearchStrategy, bad: st.SearchStrategy) -> typing.Any:
        return draw(strategy if draw(st.integers(0, 5)) else bad)

    for key in draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=4, unique=True)):
        cls, name = FIELDS[key]
        values[key] = valid_or(VALID[key], invalid(typing.get_type_hints(cls)[name], field_rule(cls, name)))
    task = draw(st.sampled_from(sorted(TASK_OPTIONS)))
    values["task.name"] = task
    for option, valid in draw(st.lists(st.sampled_from(sorted(TASK_OPTIONS[task].items())), max_size=3,
                                       unique_by=lambda kv: kv[0])):
        values[f"task.{option}"] = valid_or(valid, JUNK)
    if draw(st.booleans()):
        option, valid = draw(st.sampled_from(sorted(MIXER_OPTIONS.items())))
        mixer = values.get("model.mixer", "softmax_attention")
        values["model.mixer"] = {"name": mixer if isinstance(mixer, str) else "softmax_attention",
                                 option: valid_or(valid, JUNK)}
    return values


OUTCOMES: collections.Counter = collections.Counter()


def check_one(values: dict[str, typing.Any], out) -> str:
    try:
        cfg = RunConfig().replace(values)
    except TrevoError:
        return "refused by the config"
    try:
        result = train(cfg, out, progress=False)
    except TrevoError as e:
        return f"refused at build or run ({type(e).__name__})"
    metrics = [v for v in [*result["final"].values(), *result["losses"]] if isinstance(v, float)]  # None: no targets
    assert metrics and all(math.isfinite(v) for v in metrics), result["final"]
    return "trained, finite metrics"


def run_property(max_examples: int, tmp_path_factory) -> None:
    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(overrides())
    def prop(values):
        outcome = check_one(values, tmp_path_factory.mktemp("fuzz"))
        event(outcome)
        OUTCOMES[outcome] += 1

    OUTCOMES.clear()
    prop()
    print(f"\nfuzzed configs: {sum(OUTCOMES.values())}: {dict(OUTCOMES)}")
    assert OUTCOMES["trained, finite metrics"] > 0 and OUTCOMES["refused by the config"] > 0, OUTCOMES


def test_random_overrides_give_a_clear_error_or_a_finite_run(tmp_path_factory):
    run_property(150, tmp_path_factory)


@pytest.mark.slow
def test_random_overrides_many(tmp_path_factory):
    run_property(int(os.environ.get("TREVO_FUZZ_EXAMPLES", 400)), tmp_path_factory)
