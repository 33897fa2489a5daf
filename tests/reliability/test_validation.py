"""Every bad value gets one line naming the field, the value and the valid range (exit code 2),
from every entry point; a bug still shows its traceback."""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing

import pytest
import torch

from tests.helpers import TINY, sets
from trevo.arena.runner import run_sweep
from trevo.arena.sweep import SweepError, parse_sweep, plan_sweep
from trevo.cli import main
from trevo.config import ConfigError, ModelConfig, RunConfig, TrainConfig
from trevo.generate import generate
from trevo.registry import IncompatibleError, TrevoError
from trevo.train import ResourceError, build
from trevo.validation import MAX_SEQ_LEN, Rule, field_rule


def _out_of_range(rule: Rule, hint) -> object:
    """A value just outside ``rule`` (independent of trevo's own checks: read off the bounds)."""
    if rule.choices:
        return "not-a-choice"
    if rule.pattern:
        return "no/such/device"
    step = 1 if hint is int else 1e-9
    if rule.ge is not None:
        return hint(rule.ge - step)
    if rule.gt is not None:
        return hint(rule.gt)
    if rule.le is not None:
        return hint(rule.le + step)
    return hint(rule.lt)


RULED = [(f"{section}.{f.name}", cls, f.name) for section, cls in (("model", ModelConfig), ("train", TrainConfig))
         for f in dataclasses.fields(cls) if field_rule(cls, f.name) is not None]


@pytest.mark.parametrize("key,cls,name", RULED, ids=[k for k, *_ in RULED])
def test_every_ruled_field_refuses_a_value_outside_its_rule(key, cls, name):
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is not None:  # int | None: the rule applies to the int
        hint = int
    value = _out_of_range(field_rule(cls, name), hint)
    with pytest.raises(ConfigError) as e:
        RunConfig().replace({key: value})
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"config.{key} = {value!r}: expected "), message
    with pytest.raises(ConfigError, match=f"config.{key} = "):
        RunConfig().replace({key: "a string"} if hint is not str else {key: 5})


@pytest.mark.parametrize("override", ["train.lr=-1", "train.lr=0", "train.beta1=1.5", "train.beta2=-0.1",
                                      "model.dropout=1", "train.seed=-1", "train.seed=99999999999999999999",
                                      "model.d_model=0", "train.eval_every=0", "train.checkpoint_every=0",
                                      "train.eval_batches=0", "task.seq_len=-5", "task.seq_len=0",
                                      "train.batch_size=0", "model.mixer.n_heads=four", "train.steps=-3",
                                      "model.n_layers=0", "train.min_lr_ratio=-1", "train.grad_clip=.nan",
                                      "model.channel.expand=0", "train.lr=.inf", f"task.seq_len={MAX_SEQ_LEN + 1}"])
def test_cli_bad_values_are_one_line_and_exit_2(override, tmp_path, capsys):
    field = override.split("=")[0]
    assert main(["train", "--quiet", "--out", str(tmp_path / "run"), *sets(*TINY, override)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trevo: error: config.{field} = ") and err.count("\n") == 1 and "Traceback" not in err
    assert "expected" in err
    assert not (tmp_path / "run").exists()


def test_all_bad_values_are_reported_together():
    with pytest.raises(ConfigError) as e:
        RunConfig().override(["train.lr=-1", "model.d_model=0", "model.mixer.n_heads=x", "train.device=gpu"])
    lines = str(e.value).splitlines()
    assert lines[0] == "4 invalid settings:" and len(lines) == 5
    assert {line.split(" = ")[0].strip() for line in lines[1:]} == {
        "config.train.lr", "config.model.d_model", "config.train.device", "config.model.mixer.n_heads"}


def test_yaml_booleans_are_the_causal_choices(tiny_cfg):
    assert RunConfig().override(["model.causal=true"]).model.causal == "true"
    assert RunConfig().override(["model.causal=false"]).model.causal == "false"
    _, model = build(tiny_cfg("model.causal=true"))
    assert model.causal
    with pytest.raises(IncompatibleError, match="causal language model needs"):
        build(tiny_cfg("model.causal=false"))


def test_component_options_are_checked_against_the_constructor_signature():
    with pytest.raises(ConfigError, match=r"config.model.mixer.n_heads = '4': expected an integer"):
        RunConfig().override(["model.mixer.n_heads='4'"])
    with pytest.raises(ConfigError, match=r"config.task.seq_len = 1.5: expected an integer"):
        RunConfig().override(["task.seq_len=1.5"])
    with pytest.raises(ConfigError, match=r"config.model.channel.expand = 'wide': expected a finite number > 0"):
        RunConfig().override(["model.channel.expand=wide"])
    # Valid types pass; an int where a float is declared is a number.
    assert RunConfig().override(["model.channel.expand=3"]).model.channel.options == {"expand": 3}
    # Sizes and counts by their option word, in components that came after the rule table was written.
    for mixer, option in (("native_sparse_attention", "select_block_size"), ("path_attention", "w_low_rank_dim"),
                          ("multi_head_latent_attention", "rope_head_dim")):
        with pytest.raises(ConfigError, match=rf"config.model.mixer.{option} = 0: expected an integer ≥ 1"):
            RunConfig().replace({"model.mixer": {"name": mixer, option: 0}})


def test_residuals_and_per_layer_specs_are_validated():
    """model.residual's options and every field of every model.layers entry get the same checks as the
    model's own components; a removed field names its successor."""
    with pytest.raises(ConfigError, match=r"^config.model.residual.alpha_init = 'x': expected a finite number$"):
        RunConfig().replace({"model.residual": {"name": "skipinit", "alpha_init": "x"}})
    with pytest.raises(ConfigError) as e:
        RunConfig().replace({"model.n_layers": 2, "model.layers": [
            {"mixer": {"name": "gla", "n_heads": 0}}, {"mixer": "rwkv4", "channel": {"name": "swiglu", "expand": -1}}]})
    assert str(e.value).splitlines()[1:] == [
        "  config.model.layers[0].mixer.n_heads = 0: expected an integer ≥ 1",
        "  config.model.layers[1].channel.expand = -1: expected a finite number > 0"]
    for layers, message in ((5, "config.model.layers: expected a list of layers"),
                            ([{"mixer": "gla", "n_heads": 2}], r"config.model.layers\[0\]: unknown field 'n_heads'"),
                            ([{"name": "gla"}], r"for a mixer with options write \{mixer: \{name: gla, ...\}\}"),
                            ([3], r"config.model.layers\[0\]: a layer is a mixer name or a mapping")):
        with pytest.raises(ConfigError, match=message):
            RunConfig().replace({"model.layers": layers})
    with pytest.raises(ConfigError, match="model.block was replaced by model.residual"):
        RunConfig.from_dict({"model": {"block": "postnorm"}})


def test_absurd_sizes_are_refused_before_anything_is_allocated(tiny_cfg):
    with pytest.raises(ResourceError, match="needs at least .* GiB"):
        build(tiny_cfg("task.name=mqar", f"task.seq_len={MAX_SEQ_LEN}", "task.n_pairs=1", "train.batch_size=100000"))
    with pytest.raises(ResourceError, match="embedding table"):
        build(tiny_cfg("task.name=mqar", "task.vocab_size=100000000000", "model.d_model=4096"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_device_is_refused(tiny_cfg):
    with pytest.raises(ResourceError, match="sees no CUDA device"):
        build(tiny_cfg("train.device=cuda"))


def test_a_bug_still_shows_its_traceback(monkeypatch, tmp_path):
    training = importlib.import_module("trevo.train")  # the module; the package's name trevo.train is the API function

    def broken(cfg, *device):
        raise ZeroDivisionError("a bug, not bad input")

    monkeypatch.setattr(training, "build", broken)
    with pytest.raises(ZeroDivisionError):
        main(["train", "--quiet", "--out", str(tmp_path), *sets(*TINY)])


@pytest.mark.parametrize("argv,message", [
    (["bench", "mixers", "--repeats", "-2"], "--repeats: '-2': expected an integer ≥ 1"),
    (["bench", "mixers", "--time-cap", "-1"], "--time-cap: '-1': expected a finite number > 0"),
    (["bench", "ops", "--n-heads", "0"], "--n-heads: '0': expected an integer ≥ 1"),
    (["arena", "quick", "--workers", "-1"], "--workers: '-1': expected an integer ≥ 1"),
    (["arena", "quick", "--workers", "0"], "--workers: '0': expected an integer ≥ 1"),
    (["generate", "--run", "x", "--tokens", "-5"], "--tokens: '-5': expected an integer ≥ 0"),
    (["generate", "--run", "x", "--temperature", "nan"], "--temperature: 'nan': expected a finite number ≥ 0"),
    (["generate", "--run", "x", "--temperature", "-1"], "--temperature: '-1': expected a finite number ≥ 0"),
    (["knn", "x", "--k", "0"], "--k: '0': expected an integer ≥ 1"),
    (["knn", "x", "--eval-batches", "-2"], "--eval-batches: '-2': expected an integer ≥ 1"),
    (["knn", "x", "--store-batches", "0"], "--store-batches: '0': expected an integer ≥ 1"),
    (["knn", "x", "--lam", "nan"], "--lam: 'nan': expected a finite number in [0, 1]"),
    (["knn", "x", "--temperature", "0"], "--temperature: '0': expected a finite number > 0"),
    (["tasks", "show", "mqar", "--out", "x", "-n", "0"], "-n: '0': expected an integer in [1, 1024]"),
])
def test_bad_command_line_numbers(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_bench_refuses_a_bad_device_before_measuring(tmp_path, capsys):
    assert main(["bench", "mixers", "--device", "tpu", "--no-plots", "--out", str(tmp_path)]) == 2
    assert "--device = 'tpu': expected cpu, cuda, cuda:N or mps" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("option,message", [("n_pairs=-1", "mqar.n_pairs = -1: expected an integer ≥ 1"),
                                            ("seq_len=abc", "mqar.seq_len = 'abc': expected an integer"),
                                            ("seq_len=10", "pairs do not fit in seq_len=10")])
def test_tasks_show_checks_its_options(option, message, tmp_path, capsys):
    assert main(["tasks", "show", "mqar", "--out", str(tmp_path), "--set", option]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_generate_checks_its_arguments(tiny_cfg):
    _, model = build(tiny_cfg())
    for n_new, temperature in ((-1, 0.0), (2, -1.0), (2, math.nan), (2, math.inf), (1.5, 0.0)):
        with pytest.raises(TrevoError):
            generate(model, b"ab", n_new, temperature=temperature)
    assert generate(model, b"ab", 0)[0] == b""


BASE = {"model": {"n_layers": 1, "d_model": 16}, "task": {"name": "byte_lm", "seq_len": 16},
        "train": {"steps": 2, "batch_size": 2, "eval_every": 2, "eval_batches": 1, "warmup_steps": 1}}


@pytest.mark.parametrize("extra,message", [
    ({"lrs": [-1]}, "lrs[0] = -1: expected a finite number > 0"),
    ({"lrs": ["fast"]}, "lrs[0] = 'fast': expected a finite number > 0"),
    ({"seeds": [-1]}, "seeds[0] = -1: expected an integer in [0, 4,294,967,295]"),
    ({"seeds": [0, 0]}, "must not repeat"),
    ({"name": "x/../../escaped"}, "name = 'x/../../escaped': expected letters, digits"),
    ({"name": ".."}, "name = '..'"),
    ({"param_budget": -5}, "param_budget = -5: expected a positive integer"),
])
def test_bad_sweeps(extra, message):
    with pytest.raises(SweepError) as e:
        parse_sweep({"name": "s", "base": BASE, "variants": ["softmax_attention"], "tasks": ["byte_lm"], **extra})
    assert message in str(e.value)


def test_a_parameter_budget_that_cannot_be_met_is_refused():
    sweep = parse_sweep({"name": "s", "base": BASE, "variants": ["softmax_attention"], "tasks": ["byte_lm"],
                         "param_budget": 10})
    with pytest.raises(SweepError, match="from the 10 budget .*within 5%"):
        plan_sweep(sweep)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_run_sweep_refuses_bad_workers(workers, tmp_path):
    sweep = parse_sweep({"name": "s", "base": BASE, "variants": ["softmax_attention"], "tasks": ["byte_lm"]})
    with pytest.raises(SweepError, match="--workers"):
        run_sweep(sweep, tmp_path, workers=workers, log=lambda s: None)
    assert not list(tmp_path.iterdir())
