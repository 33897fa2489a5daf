"""Sweeps: what the arena compares, and the plan of runs it expands to.

A sweep file (or a preset in ``trevo/arena/presets/``)::

    name: quick
    base:                       # a RunConfig shared by every run: the controlled variables
      model: {n_layers: 4, channel: swiglu, norm: rmsnorm}
      train: {steps: 200, batch_size: 16, lr: 3.0e-3, warmup_steps: 20}
    param_budget: 400000        # d_model matched per (variant, task) to this many parameters
    # or flop_budget: 1.0e12    # ... to this many training FLOPs (matmul FLOPs per token × tokens)
    baseline: softmax_attention # the variant the others are compared with
    seeds: [0, 1]
    # or state_budget: 65536   # ... to this many bytes of generation state after a prefill of the task's length
    lrs: [1.0e-3, 3.0e-3]       # optional: the best per variant and task is chosen on validation
    weight_decays: [0.0, 0.1]   # optional, the same: the best (lr, weight decay) pair is chosen on validation
    d_models: [64, 128]         # optional, instead of param_budget: every variant at each width (Zoology's
                                # accuracy-against-width grid; the best lr is chosen per width)
    published: {listops: {source: "Tay et al. 2021, Table 1", rows: {Transformer: 36.37}}}
                                # optional: a paper's numbers per task label, printed beside trevo's rows;
                                # with baseline: (a label) and tolerance:, its rows are keyed by the sweep's
                                # labels and the report sets each paper effect beside trevo's (agrees or not)
    variants:                   # a bare string is a mixer name, or a one-line genome
      - softmax_attention
      - {label: rwkv4+cmix, set: {model.mixer.name: rwkv4, model.channel.name: rwkv4_channel}}
      - {label: gla3+attn, genome: "4×d96 [gla,gla,gla,attn+rope] swiglu rmsnorm pre"}  # or a model mapping
    tasks:                      # a bare string is a task name
      - {label: byte_lm, set: {task.name: byte_lm, task.seq_len: 128}}
      - {label: recall, set: {task.name: mad_recall}, vary: [{task.seq_len: 256}, {task.vocab_size: 32}]}
                                # optional vary: the task at harder settings too, one task each
                                # ("recall seq_len=256" …); the report averages each variant over them
      - {label: lm, set: {task.name: byte_lm}, exclude: [fnet]}
                                # optional exclude: variant labels that do not run on this task (a
                                # bidirectional mixer on a causal task), named so that none is dropped silently

Every variant × task × d_model × seed × lr × weight decay becomes one run. The plan is validated whole — unknown fields,
unknown components, incompatible mixer/task pairs — before any run starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from trevo import presets
from trevo.arena.budgets import count_flops, count_params, count_state_bytes, match_width
from trevo.config import COMPONENTS, LAYER_FIELDS, ConfigError, RunConfig, TrainConfig
from trevo.errors import TrevoError
from trevo.models.layers import model_family
from trevo.precision import check_precision
from trevo.registry import create, get
from trevo.train import check_device, check_fits
from trevo.validation import check_field

SWEEP_FIELDS = {"name", "description", "base", "param_budget", "flop_budget", "state_budget", "baseline", "seeds",
                "lrs", "weight_decays", "d_models", "published", "variants", "tasks"}
BUDGETS = ("param_budget", "flop_budget", "state_budget")
# What a task entry may carry beside label and set.
TASK_FIELDS = {"vary", "exclude"}
# How close the width match must land to the parameter budget (the arena's promise).
BUDGET_TOLERANCE = 0.05
# A sweep's name becomes a folder name (runs/arena-<name>): one path component, no "..".
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class SweepError(TrevoError, ValueError):
    """A sweep that cannot run; the message lists every problem found."""


@dataclass(frozen=True)
class Variant:
    label: str
    values: dict[str, Any]
    # The task whose difficulty settings this one is (a task entry's ``vary``); None: a task of its own.
    group: str | None = None
    # Variant labels that do not run on this task (a task entry's ``exclude``).
    exclude: tuple[str, ...] = ()


@dataclass
class Sweep:
    name: str
    base: RunConfig
    variants: list[Variant]
    tasks: list[Variant]
    seeds: list[int] = field(default_factory=lambda: [0])
    lrs: list[float] = field(default_factory=list)
    weight_decays: list[float] = field(default_factory=list)  # empty: the base's train.weight_decay
    d_models: list[int] = field(default_factory=list)  # empty: the base's (or the matched) width
    param_budget: int | None = None
    # Training FLOPs (matmul FLOPs per token of a forward + backward step × the run's tokens), instead of
    # param_budget: widths matched so that every variant spends the same compute.
    flop_budget: float | None = None
    # Bytes of generation state after a prefill of the task's length (MAD's comparison at equal state size),
    # instead of param_budget.
    state_budget: int | None = None
    baseline: str | None = None
    description: str = ""
    spec: dict[str, Any] = field(default_factory=dict)  # the sweep as written
    # How far a matched width's parameters may be from param_budget; None: not checked (trevo evolve,
    # whose genomes are evaluated at the nearest width and whose baseline it checks itself).
    budget_tolerance: float | None = BUDGET_TOLERANCE
    # ``dotted.key=value`` assignments applied to every run last, over the variants' and tasks' own values
    # (the command line's --set: it overrides a field of every run).
    overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedRun:
    label: str
    family: str
    task: str
    seed: int
    lr: float
    config: RunConfig
    key: str
    params: int
    seq_len: int = 0  # the task's sequence length (tokens per example)
    weight_decay: float = 0.0


def preset_names() -> list[str]:
    return presets.preset_names("trevo.arena")


# The sweep's own lists that ``--set sweep.<field>=…`` may replace (a subset of a preset: fewer widths,
# tasks, variants, learning rates or seeds), and its budgets (one number; setting one drops the others).
SWEEP_OVERRIDES = ("d_models", "lrs", "weight_decays", "seeds", "tasks", "variants", *BUDGETS)


def load_sweep(source: str, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """A preset name (``quick``, ``standard`` …) or the path of a sweep YAML file, with ``overrides``
    (``--set``): ``sweep.d_models=[64,128]``, ``sweep.lrs=…``, ``sweep.weight_decays=…``, ``sweep.seeds=…``
    replace those lists, ``sweep.state_budget=65536`` (or ``param_budget``, ``flop_budget``) matches widths to
    that budget instead of the sweep's own, ``sweep.tasks=a,b`` and ``sweep.variants=a,b`` keep only the
    labels named (a task's group names all its difficulty settings); every other
    ``dotted.key=value`` is applied to every run, over the variants' and tasks' own values."""
    data, where = presets.load_yaml("trevo.arena", source, "sweep", SweepError)
    run_level, keep = [], {}
    for assignment in overrides:
        key, sep, raw = assignment.partition("=")
        if not key.startswith("sweep."):
            run_level.append(assignment)
            continue
        field_name = key[len("sweep."):]
        if field_name not in SWEEP_OVERRIDES or not sep:
            raise SweepError(f"--set {assignment}: a sweep field is set as sweep.<field>=<value> with field one of "
                             f"{', '.join(SWEEP_OVERRIDES)}")
        if field_name in BUDGETS and isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in BUDGETS}
            data[field_name] = yaml.safe_load(raw)  # checked with the sweep's own fields below
            continue
        value = yaml.safe_load(raw) if raw.strip().startswith("[") else [
            yaml.safe_load(x) for x in raw.split(",") if x.strip()]
        if field_name in ("tasks", "variants"):
            keep[field_name] = [str(v) for v in value]
        elif isinstance(data, dict):
            data = {**data, field_name: value}
    sweep = parse_sweep(data, where)
    for field_name, labels in keep.items():  # a task's label, or its group: all its difficulty settings
        items = getattr(sweep, field_name)
        names = {v.label for v in items} | {v.group for v in items if v.group}
        unknown = [x for x in labels if x not in names]
        if unknown:
            raise SweepError(f"--set sweep.{field_name}: no {field_name[:-1]} labelled {', '.join(unknown)}; the "
                             f"sweep's: {', '.join(sorted(names))}")
        setattr(sweep, field_name, [v for v in items if v.label in labels or v.group in labels])
    if sweep.baseline is not None and sweep.baseline not in {v.label for v in sweep.variants}:
        sweep.baseline = None  # the subset left the baseline out
    if isinstance(sweep.spec.get("published"), dict):  # keep the published tables of the tasks kept
        kept = {t.label for t in sweep.tasks} | {t.group for t in sweep.tasks if t.group}
        sweep.spec = {**sweep.spec, "published": {t: v for t, v in sweep.spec["published"].items() if t in kept}}
    if run_level:
        try:
            sweep.base = sweep.base.override(run_level)  # a bad key or value fails here, before planning
        except ConfigError as e:
            raise SweepError(f"--set: {e}") from None
        sweep.overrides = run_level
    return sweep


def _variants(items: Any, where: str, key: str) -> list[Variant]:
    if not isinstance(items, list) or not items:
        raise SweepError(f"{where}: '{key}' must be a non-empty list")
    out = []
    for item in items:
        if key == "variants" and (isinstance(item, str) and "[" in item or isinstance(item, dict) and "genome" in item):
            out.append(_genome_variant(item, where))
        elif isinstance(item, str):
            target = "model.mixer.name" if key == "variants" else "task.name"
            out.append(Variant(item, {target: item}))
        elif isinstance(item, dict) and set(item) <= {"label", "set", *(TASK_FIELDS if key == "tasks" else ())} \
                and ("vary" in item or isinstance(item.get("set"), dict)):
            exclude = _exclude(item, where)
            if "vary" in item:
                out += [replace(t, exclude=exclude) for t in _difficulties(item, where)]
            else:
                label = str(item.get("label") or ",".join(f"{k}={v}" for k, v in item["set"].items()))
                out.append(Variant(label, dict(item["set"]), exclude=exclude))
        else:
            raise SweepError(f"{where}: each of '{key}' is a name or {{label: ..., set: {{dotted.key: value}}}}"
                             + (", with an optional vary: [{dotted.key: value}, …] and exclude: [variant label, …]"
                                if key == "tasks" else "")
                             + f", got {item!r}")
    labels = [v.label for v in out]
    if len(set(labels)) != len(labels):
        raise SweepError(f"{where}: '{key}' labels must be unique, got {labels}")
    return out


def _exclude(item: dict[str, Any], where: str) -> tuple[str, ...]:
    exclude = item.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise SweepError(f"{where}: task {item.get('label')!r}: exclude must be a list of variant labels, "
                         f"got {exclude!r}")
    return tuple(exclude)


def _difficulties(item: dict[str, Any], where: str) -> list[Variant]:
    """A task at its difficulty settings, as MAD varies them (mad-lab's task configs: a baseline and
    ``changes``, one at a time): ``{label: recall, set: {…}, vary: [{task.seq_len: 256}, …]}`` is the task
    ``recall baseline`` and one task per entry of ``vary`` (``recall seq_len=256``: the baseline's settings with that
    entry's over them), all of group ``recall``; the report averages a variant's score over a group."""
    base, vary = item.get("set", {}), item["vary"]
    label = item.get("label")
    if not isinstance(label, str) or not label or not isinstance(base, dict):
        raise SweepError(f"{where}: a task with vary needs a label and a set mapping, got {item!r}")
    if not isinstance(vary, list) or not vary or not all(isinstance(v, dict) and v for v in vary):
        raise SweepError(f"{where}: task {label!r}: vary must be a non-empty list of {{dotted.key: value}} "
                         f"mappings (one per difficulty setting), got {vary!r}")
    out = [Variant(f"{label} baseline", dict(base), label)]
    for change in vary:
        name = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in change.items())
        out.append(Variant(f"{label} {name}", {**base, **change}, label))
    return out


def task_groups(spec: Any) -> dict[str, str]:
    """``{task label: group}`` of a sweep as written (a task without ``vary`` is its own group); empty for
    a spec that does not parse."""
    try:
        tasks = _variants(spec.get("tasks"), "sweep", "tasks") if isinstance(spec, dict) else []
    except SweepError:
        return {}
    return {t.label: t.group or t.label for t in tasks}


def _genome_variant(item: Any, where: str) -> Variant:
    """A variant given as a genome (``{label: x, genome: LINE or {model fields}}``, or a bare one-line genome):
    it sets every architecture field of the model (trevo.models.genome), ``set`` may add others."""
    from trevo.models.genome import Genome

    value = item["genome"] if isinstance(item, dict) else item
    extra = set(item) - {"label", "genome", "set"} if isinstance(item, dict) else set()
    if extra or isinstance(item, dict) and not isinstance(item.get("set", {}), dict):
        raise SweepError(f"{where}: a genome variant is {{label: ..., genome: ..., set: {{...}}}}, got {item!r}")
    try:
        genome = Genome.from_any(value)
    except TrevoError as e:
        raise SweepError(f"{where}: variant {item!r}: {e}") from None
    values = {"model.arch": "metaformer", "model.options": {},
              **{f"model.{k}": v for k, v in genome.to_dict().items()}}
    if isinstance(item, dict):
        values.update(item.get("set", {}))
    label = str(item.get("label") or genome.line()) if isinstance(item, dict) else genome.line()
    return Variant(label, values)


def parse_sweep(data: Any, where: str = "sweep") -> Sweep:
    if not isinstance(data, dict):
        raise SweepError(f"{where}: a sweep is a mapping with name, base, variants, tasks …")
    unknown = set(data) - SWEEP_FIELDS
    if unknown:
        raise SweepError(f"{where}: unknown field {', '.join(sorted(unknown))}; "
                         f"fields: {', '.join(sorted(SWEEP_FIELDS))}")
    try:
        base = RunConfig.from_dict(data.get("base") or {})
    except ConfigError as e:
        raise SweepError(f"{where}: base: {e}") from None
    seeds = data.get("seeds", [0])
    lrs, wds = data.get("lrs") or [], data.get("weight_decays") or []
    if not isinstance(seeds, list) or not seeds:
        raise SweepError(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")
    for key, values in (("lrs", lrs), ("weight_decays", wds)):
        if not isinstance(values, list):
            raise SweepError(f"{where}: {key} must be a list of numbers, got {values!r}")
    lrs = [float(x) if isinstance(x, str) and _is_float(x) else x for x in lrs]  # YAML reads 3e-3 as a string
    wds = [float(x) if isinstance(x, str) and _is_float(x) else x for x in wds]
    problems = [check_field(TrainConfig, "seed", x, f"{where}: seeds[{i}]") for i, x in enumerate(seeds)]
    problems += [check_field(TrainConfig, "lr", x, f"{where}: lrs[{i}]") for i, x in enumerate(lrs)]
    problems += [check_field(TrainConfig, "weight_decay", x, f"{where}: weight_decays[{i}]") for i, x in enumerate(wds)]
    budget = data.get("param_budget")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0):
        problems.append(f"{where}: param_budget = {budget!r}: expected a positive integer")
    flops = data.get("flop_budget")
    flops = float(flops) if isinstance(flops, str) and _is_float(flops) else flops  # YAML reads 1e12 as a string
    if flops is not None and (not isinstance(flops, (int, float)) or isinstance(flops, bool) or not flops > 0
                              or flops == float("inf")):
        problems.append(f"{where}: flop_budget = {flops!r}: expected a positive number of training FLOPs")
    state = data.get("state_budget")
    if state is not None and (not isinstance(state, int) or isinstance(state, bool) or state <= 0):
        problems.append(f"{where}: state_budget = {state!r}: expected a positive integer (bytes of generation state)")
    given = [b for b in BUDGETS if data.get(b) is not None]
    if len(given) > 1:
        problems.append(f"{where}: {' and '.join(given)} {'both' if len(given) == 2 else 'all'} given; match widths "
                        f"to one of them")
    d_models = data.get("d_models") or []
    if not isinstance(d_models, list) or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in d_models):
        problems.append(f"{where}: d_models = {d_models!r}: expected a list of positive integers (widths)")
    elif len(set(d_models)) != len(d_models):
        problems.append(f"{where}: d_models must not repeat a width, got {d_models}")
    elif d_models and given:
        problems.append(f"{where}: d_models and {given[0]} both set the "
                        f"width; keep one (d_models: every variant at each width; a budget: each variant at the "
                        f"width that matches it)")
    problems += _published_problems(data.get("published"), where)
    name = str(data.get("name") or Path(where).stem)
    if not NAME.fullmatch(name):
        problems.append(f"{where}: name = {name!r}: expected letters, digits, '.', '_' or '-' (it names the output "
                        f"folder), starting with a letter or digit")
    problems = [p for p in problems if p]
    if not problems and any(len(set(xs)) != len(xs) for xs in (seeds, lrs, wds)):
        problems.append(f"{where}: seeds, lrs and weight_decays must not repeat a value (a repeat would be one run "
                        f"counted twice)")
    if problems:
        raise SweepError("\n".join(problems))
    lrs, wds = [float(x) for x in lrs], [float(x) for x in wds]
    sweep = Sweep(name=name, base=base,
                  variants=_variants(data.get("variants"), where, "variants"),
                  tasks=_variants(data.get("tasks"), where, "tasks"), seeds=seeds, lrs=lrs,
                  weight_decays=wds, d_models=list(d_models), param_budget=budget, state_budget=state,
                  flop_budget=None if flops is None else float(flops),
                  baseline=data.get("baseline"), description=data.get("description", ""), spec=data)
    labels = [v.label for v in sweep.variants]
    if sweep.baseline is not None and sweep.baseline not in labels:
        raise SweepError(f"{where}: baseline {sweep.baseline!r} is not one of the variants' labels")
    for task in sweep.tasks:
        unknown = [x for x in task.exclude if x not in labels]
        if unknown:
            raise SweepError(f"{where}: task {task.label!r}: exclude names {', '.join(map(repr, unknown))}, not a "
                             f"variant's label; the labels: {', '.join(labels)}")
        if sweep.baseline in task.exclude:
            raise SweepError(f"{where}: task {task.label!r}: exclude names the baseline {sweep.baseline!r}; every "
                             f"task's rows are compared with it, so it runs on every task")
    unknown_tasks = sorted(set(data.get("published") or {}) - {t.label for t in sweep.tasks}
                           - {t.group for t in sweep.tasks if t.group})
    if unknown_tasks:
        raise SweepError(f"{where}: published names task(s) {', '.join(unknown_tasks)} that the sweep does not have; "
                         f"its tasks: {', '.join(t.label for t in sweep.tasks)}")
    for task, entry in (data.get("published") or {}).items():
        if "baseline" not in entry:
            continue
        if entry["baseline"] != sweep.baseline:
            raise SweepError(f"{where}: published.{task}.baseline = {entry['baseline']!r}: an effects table is "
                             f"keyed by the sweep's labels, so its baseline must be the sweep's ({sweep.baseline!r})")
        unknown = [str(k) for k in entry["rows"] if k not in labels]
        if unknown:
            raise SweepError(f"{where}: published.{task} names {', '.join(unknown)}, not variants of the sweep; an "
                             f"effects table (one with a baseline) is keyed by the sweep's labels: {', '.join(labels)}")
    return sweep


PUBLISHED_FIELDS = {"source", "rows", "baseline", "tolerance"}


def _published_problems(published: Any, where: str) -> list[str]:
    """``published: {task label: {source: str, rows: {model: number}}}``, or nothing. An entry with
    ``baseline`` (and optionally ``tolerance``) compares effects: its rows are keyed by the sweep's labels."""
    if published is None:
        return []
    shape = "published: {task label: {source: 'paper, table', rows: {model: number}}}"
    if not isinstance(published, dict):
        return [f"{where}: expected {shape}, got {published!r}"]

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    problems = []
    for task, entry in published.items():
        ok = (isinstance(entry, dict) and {"source", "rows"} <= set(entry) <= PUBLISHED_FIELDS
              and isinstance(entry["source"], str) and isinstance(entry["rows"], dict) and entry["rows"]
              and all(number(v) for v in entry["rows"].values()))
        if not ok:
            problems.append(f"{where}: published.{task}: expected {{source: 'paper, table', rows: {{model: number}}}} "
                            f"(and optionally baseline: a row, tolerance: a number ≥ 0), got {entry!r}")
        elif "baseline" in entry and entry["baseline"] not in entry["rows"]:
            problems.append(f"{where}: published.{task}.baseline = {entry['baseline']!r} is not one of its rows; "
                            f"its rows: {', '.join(map(str, entry['rows']))}")
        elif "tolerance" in entry and not (number(entry["tolerance"]) and entry["tolerance"] >= 0):
            problems.append(f"{where}: published.{task}.tolerance = {entry['tolerance']!r}: expected a number ≥ 0 "
                            f"(paper changes within it count as none)")
    return problems


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_reachable_from_workers(cfg: RunConfig) -> None:
    """Refuse components that were registered in ``__main__`` (a script, a notebook, ``python -c``): every
    run trains in a fresh worker process, which does not run ``__main__`` and so would not know them."""
    named = [(kind, getattr(cfg.model, kind) if kind != "task" else cfg.task) for kind, _ in COMPONENTS]
    named += [(kind, getattr(layer, kind)) for layer in cfg.model.layers for kind in LAYER_FIELDS
              if getattr(layer, kind) is not None]
    names = [("model", cfg.model.arch), *((kind, spec.name) for kind, spec in named)]
    local = []
    for kind, name in dict.fromkeys(names):
        try:
            module = getattr(get(kind, name).factory, "__module__", "")
        except TrevoError:
            continue  # an unknown name: the build that follows says so, with suggestions
        if module in ("__main__", "__mp_main__"):
            local.append(f"{kind} {name!r}")
    if local:
        raise SweepError(f"{', '.join(local)} {'is' if len(local) == 1 else 'are'} registered in __main__ (your script "
                         f"or notebook), which the arena's worker processes do not run, so they cannot build it; put "
                         f"the component in a file (e.g. my_components.py) and pass --import my_components.py (from "
                         f"Python: trevo.plugins.load('my_components.py') before planning)")


def plan_sweep(sweep: Sweep) -> list[PlannedRun]:
    """Every run of the sweep, widths matched; raises one SweepError listing every problem."""
    problems: list[str] = []
    runs: list[PlannedRun] = []
    for task in sweep.tasks:
        try:
            task_cfg = sweep.base.replace(task.values)
            if sweep.overrides:  # a --set task.<field> changes the task that widths are matched on
                task_cfg = task_cfg.override(sweep.overrides)
            task_obj = create("task", task_cfg.task.name, **task_cfg.task.options)
        except TrevoError as e:
            problems.append(f"task {task.label!r}: {e}")
            continue
        for variant, width in ((v, d) for v in sweep.variants if v.label not in task.exclude
                               for d in sweep.d_models or [None]):
            try:
                # The task's settings win over a variant's: every variant sees the same task.
                cfg = task_cfg.replace(variant.values).replace(task.values)
                if width is not None:
                    cfg = cfg.replace({"model.d_model": width})
                if sweep.overrides:
                    cfg = cfg.override(sweep.overrides)
                check_reachable_from_workers(cfg)
                if sweep.param_budget:
                    cfg, params = match_width(cfg, task_obj.info, sweep.param_budget)
                    tolerance = sweep.budget_tolerance
                    if tolerance is not None and abs(params - sweep.param_budget) > tolerance * sweep.param_budget:
                        raise SweepError(
                            f"the closest width, d_model={cfg.model.d_model}, has {params:,} parameters, "
                            f"{abs(params / sweep.param_budget - 1):.0%} from the {sweep.param_budget:,} budget "
                            f"(the arena matches within {tolerance:.0%}); change param_budget or n_layers")
                elif sweep.flop_budget:
                    per_token = sweep.flop_budget / (cfg.train.steps * cfg.train.batch_size * task_obj.info.seq_len)
                    cfg, flops = match_width(cfg, task_obj.info, per_token, lambda c, t=task_obj: count_flops(c, t),
                                             "FLOPs-per-token")
                    tolerance = sweep.budget_tolerance
                    if tolerance is not None and abs(flops - per_token) > tolerance * per_token:
                        raise SweepError(
                            f"the closest width, d_model={cfg.model.d_model}, spends {flops:,} matmul FLOPs per token, "
                            f"{abs(flops / per_token - 1):.0%} from the {per_token:,.0f} the flop_budget allows per "
                            f"token (the arena matches within {tolerance:.0%}); change flop_budget or n_layers")
                    params = count_params(cfg, task_obj.info)
                elif sweep.state_budget:
                    cfg, state = match_width(cfg, task_obj.info, sweep.state_budget,
                                             lambda c, i=task_obj.info: count_state_bytes(c, i), "state-byte")
                    tolerance = sweep.budget_tolerance
                    if tolerance is not None and abs(state - sweep.state_budget) > tolerance * sweep.state_budget:
                        raise SweepError(
                            f"the closest width, d_model={cfg.model.d_model}, holds {state:,} bytes of state after "
                            f"{task_obj.info.seq_len} tokens, {abs(state / sweep.state_budget - 1):.0%} from the "
                            f"{sweep.state_budget:,}-byte state_budget (the arena matches within {tolerance:.0%}); "
                            f"change state_budget or n_layers")
                    params = count_params(cfg, task_obj.info)
                else:
                    params = count_params(cfg, task_obj.info)  # builds it: every build-time check runs
                check_device(cfg.train.device)
                check_precision(cfg.train.precision, cfg.train.dtype, cfg.train.device)
                check_fits(cfg, task_obj.info)
                # A Perceiver's family is its architecture's: its mixer only fills the latent stack.
                family = (model_family(cfg.model) if cfg.model.arch == "metaformer"
                          else get("model", cfg.model.arch).family)
            except TrevoError as e:
                problems.append(f"variant {variant.label!r} on task {task.label!r}: {e}")
                continue
            for lr, wd in ((x, y) for x in sweep.lrs or [cfg.train.lr]
                           for y in sweep.weight_decays or [cfg.train.weight_decay]):
                for seed in sweep.seeds:
                    run_cfg = cfg.replace({"train.lr": lr, "train.weight_decay": wd, "train.seed": seed})
                    runs.append(PlannedRun(variant.label, family, task.label, seed, lr, run_cfg, run_cfg.hash(),
                                           params, task_obj.info.seq_len, wd))
    keys = [r.key for r in runs]
    if not problems and len(set(keys)) != len(keys):
        problems.append("two runs of the plan have the same config (an override such as --set model.d_model=… "
                        "made the widths of d_models, or two variants, equal); remove it")
    if problems:
        raise SweepError("the sweep cannot run; nothing was started:\n  - " + "\n  - ".join(problems))
    return runs


def genome_lines(runs: list[PlannedRun]) -> list[str]:
    """``label: one-line genome`` of each metaformer or recipe variant, at its matched width."""
    from trevo.models.genome import Genome
    from trevo.models.recipes import is_recipe

    seen: dict[str, str] = {}
    for r in runs:
        m = r.config.model
        if r.label not in seen and (m.arch == "metaformer" or is_recipe(m.arch)):
            seen[r.label] = Genome.from_config(m).line()
    return [f"  {label:<28} {line}" for label, line in seen.items()]


# The assumptions of the plan's GPU estimate (not a measurement): a sustained matmul rate for float32 runs
# with TF32 matmuls on an A100/H100-class GPU at about a third of its peak, and a floor per training step
# for eager PyTorch (a small model's step is bound by kernel launches, not by FLOPs).
GPU_TFLOPS = 50.0
GPU_STEP_FLOOR_S = 0.015


def gpu_hours(runs: list[PlannedRun], tflops: float = GPU_TFLOPS, step_floor_s: float = GPU_STEP_FLOOR_S) -> float:
    """An estimate of the GPU hours of every step of ``runs`` (no early stop): per run, the larger of
    6 · params · tokens FLOPs at ``tflops`` and ``steps`` × ``step_floor_s``."""
    total = 0.0
    for r in runs:
        tc = r.config.train
        tokens = tc.steps * tc.batch_size * r.seq_len
        total += max(6.0 * r.params * tokens / (tflops * 1e12), tc.steps * step_floor_s)
    return total / 3600


def plan_summary(runs: list[PlannedRun]) -> str:
    lines = [f"{len(runs)} runs:"]
    for r in runs:
        m = r.config.model
        expand = m.channel.options.get("expand", "")
        lines.append(f"  {r.task:<16} {r.label:<28} params={r.params:<9,} d_model={m.d_model:<4} "
                     f"expand={expand!s:<6} lr={r.lr:<8g} wd={r.weight_decay:<5g} seed={r.seed}")
    genomes = genome_lines(runs)
    if genomes:
        lines += ["architectures:", *genomes]
    tokens = sum(r.config.train.steps * r.config.train.batch_size * r.seq_len for r in runs)
    early = any(r.config.train.stop_at is not None for r in runs)
    lines.append(f"{len(runs)} runs, {tokens:,} training tokens in all; estimated {gpu_hours(runs):,.1f} GPU hours "
                 f"(an estimate, not a measurement: 6·params·tokens FLOPs at {GPU_TFLOPS:g} TFLOP/s sustained, "
                 f"at least {GPU_STEP_FLOOR_S * 1000:g} ms per step; every step run"
                 + ("; early stopping ends many runs sooner)" if early else ")"))
    return "\n".join(lines)

