"""Sweeps: every preset plans (each build-time check runs), width matching lands within 5% of the
budget, and a bad sweep is refused before any run."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import tiny_sweep
from trevo.arena.runner import DB_NAME, run_sweep
from trevo.arena.sweep import SweepError, load_sweep, match_width, parse_sweep, plan_sweep, preset_names
from trevo.config import RunConfig
from trevo.models.layers import reuses_attention
from trevo.registry import create, get, names


def test_quick_preset_plan_is_valid_and_broad():
    sweep = load_sweep("quick")
    plan = plan_sweep(sweep)
    families = {p.family for p in plan}
    tasks = {p.task for p in plan}
    assert len({p.label for p in plan}) >= 6 and len(families) >= 3, families
    assert len(tasks) >= 2 and any(p.config.task.name == "byte_lm" for p in plan)
    assert len(sweep.seeds) >= 2
    assert len({p.key for p in plan}) == len(plan)
    from trevo.arena.sweep import count_params
    from trevo.train import build

    for p in plan[:: len(sweep.seeds)]:
        task, _ = build(p.config)
        assert abs(count_params(p.config, task.info) - sweep.param_budget) <= 0.05 * sweep.param_budget, p.label


SLOW_TO_PLAN = {"lra", "lra_small", "zoology"}  # their data sets are generated to plan them
PRESETS = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_TO_PLAN else name for name in preset_names()]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_plans(preset):
    plan = plan_sweep(load_sweep(preset))  # builds every model: each build-time check runs
    assert plan and len({p.key for p in plan}) == len(plan)
    if preset == "perceiver":
        assert {p.family for p in plan if p.config.model.arch != "metaformer"} == {"perceiver"}
        assert {p.config.task.options["permuted"] for p in plan} == {False, True}


CAUSAL_ON_LM = [n for n in names("mixer") if get("mixer", n).causal and not get("mixer", n).needs_2d
                and not reuses_attention(n)]  # a Skip-Attention stack starts with an attention layer


@pytest.mark.parametrize("mixer", CAUSAL_ON_LM)
def test_width_matching_lands_within_5_percent(mixer):
    cfg = RunConfig().replace({"model.mixer.name": mixer, "model.n_layers": 2, "task.seq_len": 32,
                               "model.max_len": 32})
    task = create("task", "byte_lm", seq_len=32)
    for budget in (250_000, 600_000):
        matched, params = match_width(cfg, task.info, budget)
        assert abs(params - budget) <= 0.05 * budget, (mixer, matched.model.d_model, params)


def test_bad_sweeps_are_refused_before_any_run(tmp_path):
    with pytest.raises(SweepError, match="unknown field colour"):
        parse_sweep({"name": "x", "colour": 1, "variants": ["rwkv4"], "tasks": ["byte_lm"]})
    sweep = tiny_sweep(variants=["softmax_attention", "no_such_mixer", {"label": "bad", "set": {"model.nope": 1}}],
                       tasks=["byte_lm", {"label": "masked", "set": {"task.name": "no_such_task"}}])
    with pytest.raises(SweepError) as e:
        run_sweep(sweep, tmp_path, log=lambda s: None)
    message = str(e.value)
    assert "no_such_mixer" in message and "unknown field 'nope'" in message and "no_such_task" in message
    assert not (tmp_path / DB_NAME).exists()
    with pytest.raises(SweepError, match="baseline"):
        tiny_sweep(baseline="not_a_variant")


HYBRID = "2×d16 [gla,attn+rope] swiglu rmsnorm pre"


def test_genome_variants_plan_as_their_architecture(tmp_path):
    sweep = tiny_sweep(variants=[
        "softmax_attention",
        {"label": "hybrid", "genome": HYBRID},
        HYBRID.replace("2×", "4×"),  # a bare one-line genome: its own label
        {"label": "mapping", "genome": {"n_layers": 2, "d_model": 16, "layers": ["gla", "rwkv4"]},
         "set": {"train.lr": 1.0e-3}},
        {"label": "jamba", "set": {"model.arch": "jamba", "model.n_layers": 8}},
    ])
    plan = {p.label: p for p in plan_sweep(sweep)}
    assert plan["hybrid"].family == "hybrid" and [la.mixer.name for la in plan["hybrid"].config.model.layers] == [
        "gla", "softmax_attention"]
    assert HYBRID.replace("2×", "4×") in plan and plan["mapping"].lr == 1.0e-3
    assert plan["jamba"].family == "hybrid" and plan["softmax_attention"].family == "softmax_attention"
    from trevo.arena.sweep import plan_summary

    summary = plan_summary(list(plan.values()))
    assert f"hybrid{' ' * 22} {HYBRID}" in summary and "8×d16 [mamba,mamba,mamba,mamba,attn," in summary


def test_an_invalid_genome_variant_is_refused_with_its_reason():
    with pytest.raises(SweepError, match="not a one-line genome"):
        tiny_sweep(variants=[{"label": "x", "genome": "gla gla"}])
    bad = {"label": "bad", "genome": "2×d16 [gla,fnet] swiglu rmsnorm pre"}
    sweep = tiny_sweep(variants=["softmax_attention", bad])
    with pytest.raises(SweepError, match="variant 'bad' .*mixer 'fnet' is bidirectional only"):
        plan_sweep(sweep)
    with pytest.raises(SweepError, match="a genome variant is"):
        tiny_sweep(variants=[{"label": "x", "genome": HYBRID, "colour": 1}])


def test_a_genome_sweep_runs_and_its_report_prints_the_one_line_form(tmp_path):
    from trevo.arena.report import write_report
    from trevo.tables import escape_markdown

    sweep = tiny_sweep(variants=["softmax_attention", {"label": "hybrid", "genome": HYBRID}])
    store, chosen = run_sweep(sweep, tmp_path, log=lambda s: None)
    assert {r.label for r in chosen} == {"softmax_attention", "hybrid"} and all(r.status == "done" for r in chosen)
    md = write_report(tmp_path / DB_NAME)["md"].read_text()
    assert "## Architectures" in md and f"| hybrid | {escape_markdown(HYBRID)} |" in md  # brackets escaped


def test_a_component_registered_in_main_is_refused_at_plan_time(monkeypatch, tmp_path):
    """Worker processes do not run ``__main__``: a mixer (or a layer's mixer) registered there could never be
    built by them, so the plan says so and how to fix it, before anything runs."""
    from trevo import plugins, registry
    from trevo.components.mixers.softmax_attention import SoftmaxAttention

    monkeypatch.setitem(registry._REGISTRY, "mixer", dict(registry._REGISTRY["mixer"]))  # restored afterwards

    class MyAttention(SoftmaxAttention):
        """softmax attention, registered by a notebook."""

    MyAttention.__module__ = "__main__"
    registry.register("mixer", "my_attention")(MyAttention)
    for variant in ("my_attention", {"label": "hybrid", "set": {"model.n_layers": 2,
                                                                 "model.layers": ["gla", "my_attention"]}}):
        with pytest.raises(SweepError, match=r"mixer 'my_attention' is registered in __main__ .* pass --import"):
            plan_sweep(tiny_sweep(variants=["softmax_attention", variant]))
    # The same class from a file loaded with --import (trevo.plugins.load) plans.
    (tmp_path / "my_components.py").write_text(
        "from trevo.components.mixers.softmax_attention import SoftmaxAttention\n"
        "from trevo.registry import register\n\n\n"
        "@register('mixer', 'my_file_attention')\n"
        "class MyFileAttention(SoftmaxAttention):\n    '''softmax attention, from a file.'''\n")
    monkeypatch.delenv(plugins.ENV, raising=False)
    plugins.load(str(tmp_path / "my_components.py"))
    planned = plan_sweep(tiny_sweep(variants=["my_file_attention"], baseline=None))
    assert {r.label for r in planned} == {"my_file_attention"}


def test_a_flop_budget_matches_every_variants_training_compute():
    from trevo.arena.runner import _flops_per_token

    budget = 6.4e7  # training FLOPs: 4 steps × 2 sequences × 16 tokens at 500k matmul FLOPs per token
    # GLA pinned to its chunk form at chunk 64: FLOPs are counted on the form that runs, which the form
    # table would otherwise choose.
    gla = {"label": "gla",
           "set": {"model.mixer.name": "gla", "model.mixer.form": "chunk", "model.mixer.chunk_size": 64}}
    runs = plan_sweep(tiny_sweep(flop_budget=budget, variants=["softmax_attention", gla]))
    widths = {r.label: r.config.model.d_model for r in runs}
    assert widths["softmax_attention"] != widths["gla"]  # the same compute takes different widths
    for r in runs:
        tokens = r.config.train.steps * r.config.train.batch_size * r.config.task.options["seq_len"]
        # the runner's count, on the run's own batch (not the single sequence the matching measured)
        assert _flops_per_token(r.config) * tokens == pytest.approx(budget, rel=0.05), r.label
    with pytest.raises(SweepError, match="param_budget and flop_budget both given"):
        tiny_sweep(flop_budget=budget, param_budget=10000)
    with pytest.raises(SweepError, match="flop_budget = -1.0: expected a positive number"):
        tiny_sweep(flop_budget=-1.0)


def test_the_zoology_preset_is_zoologys_grid_and_set_takes_a_subset():
    full = load_sweep("zoology")
    zoology = [v for v in full.variants if v.label != "attention_rope"]  # trevo's control is not Zoology's
    assert len(zoology) * len(full.tasks) * len(full.d_models) * len(full.lrs) * len(full.seeds) == 336
    assert full.d_models == [64, 128, 256, 512] and full.lrs == pytest.approx(list(np.logspace(-4, -2, 4)))
    assert full.base.task.options["train_size"] == 100_000 and full.base.train.stop_at == 0.99
    subset = load_sweep("zoology", ["sweep.tasks=T64_pairs4,T256_pairs16", "sweep.d_models=64,128",
                                    "sweep.variants=attention,mamba", "sweep.lrs=[1.0e-3]", "task.train_size=500",
                                    "train.steps=10"])
    plan = plan_sweep(subset)
    assert len(plan) == 2 * 2 * 2
    assert {(p.task, p.config.model.d_model) for p in plan} == {(t, d) for t in ("T64_pairs4", "T256_pairs16")
                                                                 for d in (64, 128)}
    # --set wins over a task's own values (T256 sets 25,000 steps); what it does not set stays the task's.
    assert {p.config.train.steps for p in plan} == {10}
    assert {p.config.train.batch_size for p in plan if p.task == "T256_pairs16"} == {256}
    assert {p.config.task.options["train_size"] for p in plan} == {500}


def test_width_grids_and_published_tables_are_checked():
    with pytest.raises(SweepError, match="d_models and param_budget"):
        tiny_sweep(d_models=[16, 32], param_budget=10_000)
    with pytest.raises(SweepError, match="published names task"):
        tiny_sweep(published={"listops": {"source": "LRA", "rows": {"Transformer": 36.37}}})
    with pytest.raises(SweepError, match="published.byte_lm"):
        tiny_sweep(published={"byte_lm": {"rows": {"Transformer": "high"}}})
    with pytest.raises(SweepError, match="no task labelled nope"):
        load_sweep("zoology", ["sweep.tasks=nope"])
    plan = plan_sweep(tiny_sweep(d_models=[16, 32]))
    assert sorted((p.label, p.config.model.d_model) for p in plan) == [(v, d) for v in ("linear_attention",
                                                                                      "softmax_attention")
                                                                       for d in (16, 32)]
    collapsed = tiny_sweep(d_models=[16, 32])
    collapsed.overrides = ["model.d_model=16"]  # what --set model.d_model=16 does
    with pytest.raises(SweepError, match="same config"):
        plan_sweep(collapsed)


def test_a_task_override_changes_the_task_widths_are_matched_on():
    # --set task.vocab_size=… must reach the task the widths are matched on, not only the run's config:
    # else the plan's parameter counts are those of another model than the one each run builds.
    from trevo.arena.sweep import count_params
    from trevo.train import build

    sweep = load_sweep("hybrid_mqar", ["sweep.seeds=0", "task.vocab_size=512", "sweep.variants=softmax_attention"])
    (run,) = plan_sweep(sweep)
    task, _ = build(run.config)
    assert run.config.task.options["vocab_size"] == 512
    assert run.params == count_params(run.config, task.info)


def test_the_narang_preset_sets_every_row_beside_table_1():
    sweep = load_sweep("narang")
    effects = sweep.spec["published"]["byte_lm"]
    assert set(effects["rows"]) == {v.label for v in sweep.variants} and effects["baseline"] == sweep.baseline
    assert effects["rows"]["swiglu"] == 1.789 and effects["rows"]["vanilla"] == 1.838  # Table 1, final loss


def test_the_lra_preset_is_lras_protocol_with_its_published_table():
    sweep = load_sweep("lra")
    listops = next(t for t in sweep.tasks if t.label == "listops").values
    assert {k: listops[f"task.{k}"] for k in ("min_length", "max_length", "max_depth", "max_args", "train_size",
                                             "test_size")} == {"min_length": 500, "max_length": 2000, "max_depth": 10,
                                                               "max_args": 10, "train_size": 96_000, "test_size": 2000}
    assert create("task", "listops", min_length=500, max_length=2000).dedup  # LRA's distinct trees
    assert sweep.spec["published"]["listops"]["rows"] == {"Transformer": 36.37, "S4": 59.60, "S5": 62.15,
                                                          "Mega": 63.14}
    kept = load_sweep("lra", ["sweep.tasks=listops"])
    assert list(kept.spec["published"]) == ["listops"]


def _sweep_file(tmp_path, **extra) -> str:
    import yaml

    from tests.helpers import tiny_sweep_spec

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep_spec(**extra), sort_keys=False))
    return str(path)


def test_weight_decays_are_an_axis_like_lrs(tmp_path):
    plan = plan_sweep(tiny_sweep(lrs=[1e-3, 2e-3], weight_decays=[0.0, 0.1], variants=["gla"], baseline=None))
    assert sorted((p.lr, p.weight_decay, p.config.train.weight_decay) for p in plan) == [
        (1e-3, 0.0, 0.0), (1e-3, 0.1, 0.1), (2e-3, 0.0, 0.0), (2e-3, 0.1, 0.1)]
    assert len({p.key for p in plan}) == 4
    # without the axis, a run keeps the base's weight decay and the key it always had
    plain = plan_sweep(tiny_sweep(variants=["gla"], baseline=None))
    assert [p.key for p in plain] == [p.config.hash() for p in plain]
    assert plain[0].config.train.weight_decay == RunConfig().train.weight_decay
    subset = plan_sweep(load_sweep(_sweep_file(tmp_path, weight_decays=[0.0, 0.1]), ["sweep.weight_decays=0.05"]))
    assert {p.config.train.weight_decay for p in subset} == {0.05}
    with pytest.raises(SweepError, match=r"weight_decays\[1\]"):
        tiny_sweep(weight_decays=[0.0, -1.0])
    with pytest.raises(SweepError, match="must not repeat"):
        tiny_sweep(weight_decays=[0.1, 0.1])


def test_a_task_at_its_difficulty_settings_is_one_task_each_in_one_group(tmp_path):
    from trevo.arena.sweep import task_groups

    recall = {"label": "recall", "set": {"task.name": "mad_recall", "task.vocab_size": 16, "task.seq_len": 16},
              "vary": [{"task.seq_len": 32}, {"task.vocab_size": 32, "task.multi_query": True}]}
    sweep = tiny_sweep(tasks=["byte_lm", recall], variants=["gla"], baseline=None)
    assert [(t.label, t.group) for t in sweep.tasks] == [
        ("byte_lm", None), ("recall baseline", "recall"), ("recall seq_len=32", "recall"),
        ("recall vocab_size=32,multi_query=True", "recall")]
    options = {p.task: p.config.task.options for p in plan_sweep(sweep)}
    assert options["recall seq_len=32"] == {"vocab_size": 16, "seq_len": 32}  # the baseline's others kept
    assert options["recall vocab_size=32,multi_query=True"] == {"vocab_size": 32, "seq_len": 16, "multi_query": True}
    assert task_groups(sweep.spec)["recall seq_len=32"] == "recall" and task_groups(sweep.spec)["byte_lm"] == "byte_lm"
    path = _sweep_file(tmp_path, tasks=["byte_lm", recall])
    assert [t.label for t in load_sweep(path, ["sweep.tasks=recall"]).tasks] == [t.label for t in sweep.tasks[1:]]
    assert [t.label for t in load_sweep(path, ["sweep.tasks=recall seq_len=32"]).tasks] == ["recall seq_len=32"]
    with pytest.raises(SweepError, match="vary must be a non-empty list"):
        tiny_sweep(tasks=[{**recall, "vary": {"task.seq_len": [32]}}])


def test_a_task_may_exclude_variants_by_label_and_every_other_pair_still_runs():
    mlm = {"label": "mlm", "set": {"task.name": "mlm"}}  # bidirectional: every mixer runs on it
    lm = {"label": "lm", "set": {"task.name": "byte_lm"}, "exclude": ["fnet"]}
    with pytest.raises(SweepError, match="fnet.*bidirectional only"):  # without exclude: refused, not dropped
        plan_sweep(tiny_sweep(variants=["softmax_attention", "fnet"], tasks=[{**lm, "exclude": []}, mlm]))
    plan = plan_sweep(tiny_sweep(variants=["softmax_attention", "fnet"], tasks=[lm, mlm]))
    assert sorted((p.task, p.label) for p in plan) == [
        ("lm", "softmax_attention"), ("mlm", "fnet"), ("mlm", "softmax_attention")]
    with pytest.raises(SweepError, match="task 'lm': exclude names 'fnett', not a variant's label"):
        tiny_sweep(variants=["softmax_attention", "fnet"], tasks=[{**lm, "exclude": ["fnett"]}])
    with pytest.raises(SweepError, match="exclude names the baseline 'softmax_attention'"):
        tiny_sweep(tasks=[{**lm, "exclude": ["softmax_attention"]}])
    with pytest.raises(SweepError, match="exclude must be a list of variant labels"):
        tiny_sweep(tasks=[{**lm, "exclude": "fnet"}])


def test_the_mad_preset_has_mad_labs_settings_and_sweep():
    """Against mad-lab's configs/tasks/*.yml (baseline + each change, one at a time) and
    make_benchmark_mad_configs (lr {1e-4, 5e-4, 1e-3} × weight decay {0, 0.1})."""
    sweep = load_sweep("mad")
    assert sweep.lrs == [1e-4, 5e-4, 1e-3] and sweep.weight_decays == [0.0, 0.1]
    assert sweep.base.model.d_model == 128
    counts = {}
    for t in sweep.tasks:
        counts[t.group] = counts.get(t.group, 0) + 1
    assert counts == {"recall": 11, "fuzzy_recall": 11, "noisy_recall": 14, "selective_copy": 13, "compression": 11,
                      "memorization": 6}
    values = {t.label: t.values for t in sweep.tasks}
    assert values["noisy_recall frac_noise=0.8"]["task.frac_noise"] == 0.8
    assert values["noisy_recall vocab_size=144"]["task.noise_vocab_size"] == 16
    assert values["memorization vocab_size=8192"]["task.train_size"] == 256
    assert values["compression seq_len=256"]["task.name"] == "mad_compression"
    small = values["recall train_size=800,steps=1250,eval_every=125"]  # 200 epochs of 800 in batches of 128
    assert small["train.steps"] * sweep.base.train.batch_size == 200 * small["task.train_size"]
    assert len(sweep.tasks) * len(sweep.variants) * 6 == 1980
