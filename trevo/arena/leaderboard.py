"""The arena's numbers, before any rendering: which runs a report shows, the chosen learning rate
of each variant, and per task a leaderboard row per variant (mean and 95% interval over seeds, the
difference from the baseline and its significance), the controlled variables and a per-family
summary.

A report shows one sweep: the runs of its latest plan (``Selection``); other sweeps, and earlier
plans of the same sweep, stay in the store and are only counted. Runs are pooled as seeds of one
variant only when their configs are equal but for the seed and the learning rate
(``variant_key``), so two configurations never share a row, whatever the store holds.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from trevo.arena.stats import Estimate, estimate, significantly_different
from trevo.arena.store import Run, Store
from trevo.errors import TrevoError


class ReportError(TrevoError, ValueError):
    """A report that cannot be made as asked (an unknown sweep or baseline)."""


SWEPT = ("seed", "lr", "weight_decay")  # the train fields a sweep varies within one variant


def variant_key(config: dict[str, Any]) -> str:
    """A hash of a run's config without its seed, learning rate and weight decay: runs that share it differ
    only in those (seeds are pooled; the learning rate and weight decay are chosen on validation)."""
    train = {k: v for k, v in config.get("train", {}).items() if k not in SWEPT}
    text = json.dumps({**config, "train": train}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def hyper(run: Run) -> tuple[float, float]:
    """The (learning rate, weight decay) a run trained with: what ``choose`` picks between."""
    return run.lr, float(run.config.get("train", {}).get("weight_decay", 0.0))


def choose(runs: list[Run]) -> list[Run]:
    """Per (task, variant): the runs of the (learning rate, weight decay) with the best mean validation
    metric (MAD keeps the best run of its lr × weight-decay sweep; a seed is not chosen, seeds are pooled)."""
    groups: dict[tuple[str, str, str], dict[tuple[float, float], list[Run]]] = {}
    for r in runs:
        if r.status == "done":
            groups.setdefault((r.task, r.label, variant_key(r.config)), {}).setdefault(hyper(r), []).append(r)
    chosen = []
    for by_lr in groups.values():
        def score(lr: tuple[float, float], by_lr=by_lr) -> float:
            rs = by_lr[lr]
            mean = statistics.fmean(r.val[r.metric] for r in rs)
            return -mean if rs[0].higher_is_better else mean
        chosen.extend(by_lr[min(by_lr, key=score)])
    return chosen


@dataclass
class Selection:
    """The runs one report shows, and what it says about them."""

    sweep: str | None
    baseline: str | None
    runs: list[Run]
    note: str  # which sweep and plan this is, and what else the store holds


def select(store: Store, sweep: str | None = None, baseline: str | None = None) -> Selection:
    """The runs of ``sweep``'s latest plan (default: the most recently planned sweep)."""
    sweeps = {s["name"]: s for s in store.sweeps()}  # ordered: the most recently planned last
    total = store.count()
    if not sweeps:
        runs = store.runs()
        return Selection(None, baseline, runs, f"All {len(runs)} runs of the store (it records no sweep).")
    if sweep is None:
        sweep = list(sweeps)[-1]
    if sweep not in sweeps:
        raise ReportError(f"the store holds no sweep {sweep!r}; its sweeps: {', '.join(sweeps)}")
    record = sweeps[sweep]
    runs = store.runs(keys=record["keys"]) if record["keys"] is not None else store.runs(sweep=sweep)
    labels = sorted({r.label for r in runs})
    baseline = baseline if baseline is not None else record["baseline"]
    if baseline is not None and baseline not in labels:
        raise ReportError(f"baseline {baseline!r} is not a variant of sweep {sweep!r}; its variants: "
                          f"{', '.join(labels)}")
    plan = "its latest plan" if record["keys"] is not None else "the runs recorded under its name"
    others = [n for n in sweeps if n != sweep]
    note = f"Sweep {sweep!r}: {plan}, {len(runs)} runs."
    if total > len(runs):
        note += (f" The store holds {total - len(runs)} other runs (earlier plans"
                 + (f", or the sweeps {', '.join(map(repr, others))}" if others else "") + "), not shown here.")
    return Selection(sweep, baseline, runs, note)


@dataclass
class Row:
    label: str
    family: str
    variant: str  # variant_key of its runs
    params: int
    d_model: int
    expand: str  # the channel mixer's expand, where the width match adjusted it
    lr: float
    weight_decay: float
    seeds: int
    metric: str
    higher_is_better: bool
    test: Estimate
    val: Estimate
    tokens_per_s: float
    peak_mem_mb: float
    flops_per_token: float
    state_bytes: float | None  # generation state after a prefill of the task's length; None where not measured
    significant: bool | None  # vs the baseline; None for the baseline itself or too few seeds
    delta: float | None
    values: list[float]
    # the test metric's breakdowns a task reports as ``<metric>_<part>`` (e.g. bpb_head, bpb_tail), over seeds
    parts: dict[str, Estimate] = field(default_factory=dict)


def leaderboard(runs: list[Run], baseline: str | None) -> dict[str, list[Row]]:
    """Rows per task, best first. The baseline is the row labelled ``baseline``; were a label to
    have several configs (a store read without a plan), it compares against none of them."""
    by_task: dict[str, dict[tuple[str, str], list[Run]]] = {}
    for r in choose(runs):
        by_task.setdefault(r.task, {}).setdefault((r.label, variant_key(r.config)), []).append(r)
    boards = {}
    for task, groups in sorted(by_task.items()):
        def metric_values(rs: list[Run]) -> list[float]:
            return [(r.test or r.val)[r.metric] for r in rs]

        base_groups = [rs for (label, _), rs in groups.items() if label == baseline]

        rows = []
        for (label, variant), rs in groups.items():
            values = metric_values(rs)
            first = rs[0]
            base_runs = _baseline_runs(base_groups, first.config["model"]["d_model"])
            base_values = metric_values(base_runs) if base_runs else None
            compare = label != baseline and base_values is not None
            rows.append(Row(
                label=label, family=first.family, variant=variant,
                params=int(statistics.fmean(r.params for r in rs)),
                d_model=first.config["model"]["d_model"], expand=_expand(first.config), lr=first.lr,
                weight_decay=hyper(first)[1], seeds=len(rs), metric=first.metric,
                higher_is_better=bool(first.higher_is_better), test=estimate(values),
                val=estimate([r.val[r.metric] for r in rs]),
                tokens_per_s=statistics.fmean(r.tokens_per_s for r in rs),
                peak_mem_mb=statistics.fmean(r.peak_mem_mb for r in rs),
                flops_per_token=statistics.fmean(r.flops_per_token for r in rs),
                state_bytes=_mean_or_none([r.state_bytes for r in rs]),
                significant=significantly_different(values, base_values) if compare else None,
                delta=statistics.fmean(values) - statistics.fmean(base_values) if compare else None,
                values=values, parts=_parts(rs)))
        rows.sort(key=lambda row: -row.test.mean if row.higher_is_better else row.test.mean)
        boards[task] = rows
    return boards


def _parts(runs: list[Run]) -> dict[str, Estimate]:
    """Each breakdown ``<metric>_<part>`` of the test metric that every run reports, over the runs."""
    metric = runs[0].metric
    names = [k for k in (runs[0].test or {}) if k.startswith(f"{metric}_")]
    return {name[len(metric) + 1:]: estimate([r.test[name] for r in runs]) for name in names
            if all(name in (r.test or {}) for r in runs)}


def _baseline_runs(base_groups: list[list[Run]], d_model: int) -> list[Run] | None:
    """The baseline's runs a row is compared with: its one group, or in a width grid (a baseline group per
    d_model) the group at the row's ``d_model``; None where there is no such single group."""
    if len(base_groups) == 1:
        return base_groups[0]
    widths = [rs[0].config["model"]["d_model"] for rs in base_groups]
    if len(set(widths)) != len(widths) or d_model not in widths:
        return None
    return base_groups[widths.index(d_model)]


@dataclass
class GroupScore:
    """A variant's score on a group of task settings: the mean over the settings it finished of each
    setting's test metric (its chosen run, seeds pooled), MAD's score per task."""

    mean: float
    done: int  # settings of the group the variant has a result on
    total: int  # settings of the group in the boards
    state_bytes: float | None  # the largest generation state over the group's settings


def group_scores(boards: dict[str, list[Row]], groups: dict[str, str]) -> dict[str, dict[str, GroupScore]]:
    """``{variant: {group: GroupScore}}`` (MAD: a task's score is the mean over its difficulty settings of
    the best run of each; ``groups`` maps a task label to its group, a label it lacks is a group alone).
    Rows are told apart by ``shown_label`` (a width grid's rows by their d_model)."""
    by_group: dict[str, list[str]] = {}
    for task in boards:
        by_group.setdefault(groups.get(task, task), []).append(task)
    scores: dict[str, dict[str, GroupScore]] = {}
    for group, tasks in by_group.items():
        values: dict[str, list[Row]] = {}
        for task in tasks:
            for row in boards[task]:
                values.setdefault(shown_label(row, boards[task]), []).append(row)
        for label, rows in values.items():
            states = [r.state_bytes for r in rows if r.state_bytes is not None]
            scores.setdefault(label, {})[group] = GroupScore(
                statistics.fmean(r.test.mean for r in rows), len(rows), len(tasks), max(states) if states else None)
    return scores


def overall(scores: dict[str, GroupScore], groups: list[str]) -> float | None:
    """The mean over ``groups`` of a variant's group scores (MAD's score over tasks); None unless it has
    every setting of every group (a partial mean would flatter a variant that failed the hard settings)."""
    if any(g not in scores or scores[g].done < scores[g].total for g in groups):
        return None
    return statistics.fmean(scores[g].mean for g in groups)


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def shown_label(row: Row, rows: list[Row]) -> str:
    """The row's label; where another row of the board has the same label, with its width (a d_models
    grid) if that tells them apart, else with its variant key."""
    same = [r for r in rows if r.label == row.label]
    if len(same) == 1:
        return row.label
    if len({r.d_model for r in same}) == len(same):
        return f"{row.label} d={row.d_model}"
    return f"{row.label} [{row.variant}]"


def width_grid(boards: dict[str, list[Row]]) -> dict[str, dict[str, dict[int, Row]]]:
    """Zoology's figure as numbers: ``{task: {label: {d_model: row}}}`` for the labels that ran at two or
    more widths. Each row is one cell's best learning rate (``choose`` picks it per task, label and width
    on validation, independently in every cell, as Zoology keeps the best of its four per cell)."""
    grid: dict[str, dict[str, dict[int, Row]]] = {}
    for task, rows in boards.items():
        by_label: dict[str, dict[int, Row]] = {}
        for row in rows:
            by_label.setdefault(row.label, {})[row.d_model] = row
        wide = {label: dict(sorted(cells.items())) for label, cells in by_label.items() if len(cells) > 1}
        if wide:
            grid[task] = wide
    return grid


def _expand(config: dict[str, Any]) -> str:
    channel = config["model"]["channel"]
    return f"{channel['expand']:g}" if isinstance(channel, dict) and "expand" in channel else ""


def family_best(boards: dict[str, list[Row]]) -> dict[str, dict[str, Row]]:
    """The best row of each family on each task: ``{family: {task: row}}``."""
    best: dict[str, dict[str, Row]] = {}
    for task, rows in boards.items():
        for row in rows:  # best first
            best.setdefault(row.family, {}).setdefault(task, row)
    return dict(sorted(best.items()))


def controlled(runs: list[Run]) -> list[str]:
    """What the runs of a task shared (the controlled variables), as lines; a backbone field that some
    variant overrides is listed per variant instead of being shown as shared, and so is a training
    setting that differs between runs."""
    lines = []
    for task in sorted({r.task for r in runs}):
        task_runs = [r for r in runs if r.task == task]
        cfg = task_runs[0].config
        t = {k: _shared(task_runs, "train", k) for k in ("beta1", "beta2", "weight_decay", "warmup_steps", "steps",
                                                        "batch_size")}
        seq_lens = {r.config["task"].get("seq_len") if isinstance(r.config["task"], dict) else None
                    for r in task_runs}
        steps, batch, seq_len = cfg["train"]["steps"], cfg["train"]["batch_size"], next(iter(seq_lens))
        same = len(seq_lens) == 1 and seq_len and t["steps"] == str(steps) and t["batch_size"] == str(batch)
        tokens = f" ({steps * batch * seq_len:,} tokens)" if same else ""
        model = ", ".join(f"{name} {_shared(task_runs, 'model', name)}" for name in ("n_layers", "channel", "norm",
                                                                                    "position", "residual"))
        stop = _shared(task_runs, "train", "stop_at")
        stop_text = "" if stop == "null" else f", early stop at val {task_runs[0].metric or 'metric'} > {stop}"
        lines.append(f"{task}: {model}; AdamW β=({t['beta1']}, {t['beta2']}), wd {t['weight_decay']}, warmup "
                     f"{t['warmup_steps']} + cosine, {t['steps']} steps × batch {t['batch_size']}{tokens}{stop_text}"
                     f"{_data_protocol(task_runs)}")
    return lines


def _data_protocol(runs: list[Run]) -> str:
    """``; data: …`` for a generated task (fresh examples every step, or a fixed set and its epochs), where
    every run of the task shares it; else nothing."""
    from trevo.config import RunConfig
    from trevo.registry import create

    texts = set()
    for r in runs:
        try:
            cfg = RunConfig.from_dict(r.config)
            task = create("task", cfg.task.name, **cfg.task.options)
        except TrevoError:
            return ""
        if not hasattr(task, "describe_data"):
            return ""
        texts.add(task.describe_data(cfg.train.steps, cfg.train.batch_size))
    return f"; data: {texts.pop()}" if len(texts) == 1 else ""


def _shared(runs: list[Run], section: str, name: str) -> str:
    """The value of ``<section>.<name>`` if every run has the same, else which variants have which."""
    labels: dict[str, set[str]] = {}
    for r in runs:
        labels.setdefault(json.dumps(r.config[section].get(name)), set()).add(r.label)
    if len(labels) == 1:
        return next(iter(labels))
    return "varies (" + "; ".join(f"{', '.join(sorted(ls))}: {v}" for v, ls in sorted(labels.items())) + ")"


def architectures(runs: list[Run]) -> list[tuple[str, str]]:
    """(variant label, one-line genome) of every metaformer or recipe variant: its architecture at the
    width it ran (after width matching)."""
    from trevo.config import RunConfig
    from trevo.models.genome import Genome
    from trevo.models.recipes import is_recipe

    out: dict[str, str] = {}
    for r in runs:
        if r.label in out:
            continue
        try:
            cfg = RunConfig.from_dict(r.config)
            if cfg.model.arch == "metaformer" or is_recipe(cfg.model.arch):
                out[r.label] = Genome.from_config(cfg).line()
        except TrevoError:
            continue  # a config of an older trevo: no genome line
    return sorted(out.items())
