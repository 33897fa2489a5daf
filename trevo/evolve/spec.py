"""The search spec of ``trevo evolve``: a YAML file (read with ``yaml.safe_load``) or a preset in
``trevo/evolve/presets/``::

    name: tiny
    seed: 0
    base:                            # a RunConfig shared by every evaluation (not the genome's fields)
      train: {batch_size: 8, lr: 3.0e-3, warmup_steps: 4, eval_every: 20, eval_batches: 2}
    param_budget: 40000              # widths matched to it, as in the arena
    space:                           # trevo.evolve.space
      mixers: [softmax_attention, gla, {name: sliding_window_attention, options: {window: [8, 16]}}]
      channels: [swiglu, none]
      positions: [rope]
      depth: [2, 4]
      period: [1, 2]
    search: {population: 4, generations: 2, crossover: 0.5}
    objectives: [quality, state_bytes]   # quality first; also tokens_per_s
    context: 1024                    # state bytes measured after prefilling this many tokens
    baseline: "4×d64 [attn+rope] swiglu rmsnorm pre"   # Transformer++ (the default)
    stages:                          # the ladder: every genome gets `cheap`; the Pareto front `promote`;
      cheap:   {tasks: [...], steps: 40, seeds: [0]}  # the best `final`, beside the baseline
      promote: {top: 3, steps: 80, seeds: [0, 1]}
      final:   {top: 1, steps: 120, seeds: [0, 1, 2], lrs: [1.0e-3, 3.0e-3]}

A stage's ``tasks`` are arena task variants (a name, or ``{label, set}``); a later stage inherits the
previous one's tasks, seeds and lrs unless it sets them. ``load_spec`` checks everything — fields,
components, tasks, ranges, and whether the parameter budget can be met — and raises one SpecError
listing every problem before anything runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trevo import presets
from trevo.arena.sweep import Sweep, SweepError, Variant, _variants, plan_sweep
from trevo.config import ConfigError, RunConfig
from trevo.errors import TrevoError
from trevo.evolve.space import SearchSpace, parse_space
from trevo.models.genome import Genome
from trevo.registry import create

SPEC_FIELDS = {"name", "description", "seed", "base", "param_budget", "space", "search", "objectives", "context",
               "baseline", "stages", "initial"}
STAGES = ("cheap", "promote", "final")
STAGE_FIELDS = {"tasks", "steps", "seeds", "lrs", "top", "set", "ablate"}
OBJECTIVES = ("quality", "state_bytes", "tokens_per_s")
TRANSFORMER_PP = "4×d64 [attn+rope] swiglu rmsnorm pre"
BUDGET_TOLERANCE = 0.25  # a baseline further than this from the budget at its best width: impossible


class SpecError(TrevoError, ValueError):
    """A search spec that cannot run; the message lists every problem found."""


@dataclass
class Stage:
    """One rung of the fitness ladder: its tasks, training steps, seeds, learning rates (the best on
    validation is kept, as the arena chooses), extra config overrides, and how many genomes reach it."""

    name: str
    tasks: list[Variant]
    steps: int
    seeds: list[int]
    lrs: list[float]
    top: int | None = None
    set: dict[str, Any] = field(default_factory=dict)
    ablate: bool = True  # final stage only: train the winner's ablation (trevo.evolve.ablation)


@dataclass
class Spec:
    name: str
    base: RunConfig
    space: SearchSpace
    stages: dict[str, Stage]
    baseline: Genome
    param_budget: int | None = None
    population: int = 8
    generations: int = 4
    crossover: float = 0.5
    objectives: tuple[str, ...] = ("quality", "state_bytes")
    context: int = 1024
    seed: int = 0
    initial: list[Genome] = field(default_factory=list)
    description: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """Of the spec as written, less its description (prose, which changes no evaluation): a state file of
        another spec is never resumed, and a state stays resumable when the description is reworded."""
        searched = {k: v for k, v in self.data.items() if k != "description"}
        return hashlib.sha256(json.dumps(searched, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def sweep(self, stage: str, genomes: list[Genome], baseline: bool = False) -> Sweep:
        """The arena sweep that evaluates ``genomes`` at ``stage`` (one variant per genome, labelled by its
        one-line form; the baseline labelled ``baseline``)."""
        s = self.stages[stage]
        variants = [_genome_values(g, g.line()) for g in genomes]
        if baseline:
            variants.append(_genome_values(self.baseline, "baseline"))
        base = self.base.replace({"train.steps": s.steps, **s.set})
        return Sweep(name=f"{self.name}/{stage}", base=base, variants=variants, tasks=s.tasks, seeds=s.seeds,
                     lrs=s.lrs, param_budget=self.param_budget, baseline="baseline" if baseline else None,
                     description=self.description, spec=self.data,
                     budget_tolerance=None)  # budget_problems checks the baseline; a genome runs at its nearest width


def _genome_values(genome: Genome, label: str) -> Variant:
    return Variant(label, {"model.arch": "metaformer", "model.options": {},
                           **{f"model.{k}": v for k, v in genome.to_dict().items()}})


def preset_names() -> list[str]:
    return presets.preset_names("trevo.evolve")


def load_spec(source: str) -> Spec:
    """A preset name (``default``, ``tiny``) or a spec YAML file, checked whole."""
    data, where = presets.load_yaml("trevo.evolve", source, "spec", SpecError)
    return parse_spec(data, where)


def _int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _stage(name: str, data: Any, previous: Stage | None, problems: list[str]) -> Stage | None:
    where = f"stages.{name}"
    if not isinstance(data, dict):
        problems.append(f"{where}: a mapping of {', '.join(sorted(STAGE_FIELDS))}")
        return None
    problems += [f"{where}: unknown field {k!r} (fields: {', '.join(sorted(STAGE_FIELDS))})"
                 for k in sorted(set(data) - STAGE_FIELDS)]
    tasks = previous.tasks if previous and "tasks" not in data else None
    if tasks is None:
        try:
            tasks = _variants(data.get("tasks"), where, "tasks")
        except SweepError as e:
            problems.append(str(e))
            tasks = []
    steps = data.get("steps")
    if not _int(steps, 1):
        problems.append(f"{where}.steps: a positive number of training steps, got {steps!r}")
    seeds = data.get("seeds", previous.seeds if previous else [0])
    if not isinstance(seeds, list) or not seeds or not all(_int(s, 0) for s in seeds):
        problems.append(f"{where}.seeds: a non-empty list of integers, got {seeds!r}")
    lrs = data.get("lrs", previous.lrs if previous else [])
    if not isinstance(lrs, list) or not all(isinstance(x, (int, float)) and x > 0 for x in lrs):
        problems.append(f"{where}.lrs: a list of positive learning rates, got {lrs!r}")
        lrs = []
    top = data.get("top")
    if name != "cheap" and not _int(top, 1):
        problems.append(f"{where}.top: how many genomes reach this stage (≥ 1), got {top!r}")
    sets = data.get("set", {})
    if not isinstance(sets, dict):
        problems.append(f"{where}.set: a mapping of dotted config keys, got {sets!r}")
        sets = {}
    ablate = data.get("ablate", True)
    if not isinstance(ablate, bool):
        problems.append(f"{where}.ablate: true or false, got {ablate!r}")
    return Stage(name, tasks, steps if _int(steps, 1) else 1, seeds, [float(x) for x in lrs], top, sets,
                 ablate is not False)


def parse_spec(data: Any, where: str = "spec") -> Spec:
    """Check a spec whole and build it; one SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a spec is a mapping with name, space, stages …")
    problems = [f"unknown field {k!r} (fields: {', '.join(sorted(SPEC_FIELDS))})"
                for k in sorted(set(data) - SPEC_FIELDS)]
    try:
        base = RunConfig.from_dict(data.get("base") or {})
    except ConfigError as e:
        problems.append(f"base: {e}")
        base = RunConfig()
    stages_data = data.get("stages")
    stages: dict[str, Stage] = {}
    if not isinstance(stages_data, dict) or "cheap" not in stages_data:
        problems.append("stages: a mapping with at least `cheap` (and optionally `promote`, `final`)")
        stages_data = {}
    problems += [f"stages: unknown stage {k!r} (stages: {', '.join(STAGES)})" for k in stages_data if k not in STAGES]
    previous = None
    for name in STAGES:
        if name in stages_data:
            stage = _stage(name, stages_data[name], previous, problems)
            if stage is not None:
                stages[name] = previous = stage
    infos = []
    for task in stages.get("cheap", Stage("cheap", [], 1, [0], [])).tasks:
        try:
            cfg = base.replace(task.values)
            infos.append(create("task", cfg.task.name, **cfg.task.options).info)
        except TrevoError as e:
            problems.append(f"task {task.label!r}: {e}")
    space, found = parse_space(data.get("space"), infos)
    problems += found
    search = data.get("search", {}) or {}
    if not isinstance(search, dict) or set(search) - {"population", "generations", "crossover"}:
        problems.append(f"search: a mapping of population, generations, crossover, got {search!r}")
        search = {}
    population, generations = search.get("population", 8), search.get("generations", 4)
    crossover = search.get("crossover", 0.5)
    if not _int(population, 2):
        problems.append(f"search.population: at least 2, got {population!r}")
    if not _int(generations, 1):
        problems.append(f"search.generations: at least 1, got {generations!r}")
    if not isinstance(crossover, (int, float)) or not 0 <= crossover <= 1:
        problems.append(f"search.crossover: a probability in [0, 1], got {crossover!r}")
    objectives = data.get("objectives", ["quality", "state_bytes"])
    if not isinstance(objectives, list) or not objectives or objectives[0] != "quality" \
            or any(o not in OBJECTIVES for o in objectives) or len(set(objectives)) != len(objectives):
        problems.append(f"objectives: quality first, then any of state_bytes, tokens_per_s; got {objectives!r}")
    context = data.get("context", 1024)
    if not _int(context, 1):
        problems.append(f"context: the prefill length state bytes are measured at (≥ 1), got {context!r}")
    if not _int(data.get("seed", 0), 0):
        problems.append(f"seed: a non-negative integer, got {data.get('seed')!r}")
        data = {**data, "seed": 0}
    budget = data.get("param_budget")
    if budget is not None and not _int(budget, 1):
        problems.append(f"param_budget: a positive integer, got {budget!r}")
        budget = None
    genomes = {}
    for key, value in [("baseline", data.get("baseline", TRANSFORMER_PP)),
                       *((f"initial[{i}]", v) for i, v in enumerate(data.get("initial") or []))]:
        try:
            genomes[key] = Genome.from_any(value)
        except TrevoError as e:
            problems.append(f"{key}: {e}")
    if space is not None:
        for key, g in genomes.items():
            if key != "baseline":
                problems += [f"{key}: {p}" for p in space.problems(g)]
    spec = Spec(name=str(data.get("name") or Path(where).stem), base=base, space=space, stages=stages,
                baseline=genomes.get("baseline") or Genome.parse(TRANSFORMER_PP), param_budget=budget,
                population=population, generations=generations, crossover=float(crossover) if isinstance(
                    crossover, (int, float)) else 0.5, objectives=tuple(objectives or ()), context=context,
                seed=int(data.get("seed", 0)), initial=[g for k, g in genomes.items() if k != "baseline"],
                description=str(data.get("description", "")), data=data)
    broken = any(p.startswith(("base", "stages", "task ")) for p in problems)
    if "cheap" in stages and "baseline" in genomes and not broken:
        problems += budget_problems(spec)  # the tasks and the budget, checked beside the space's problems
    if problems:
        raise SpecError(f"{where}: the search cannot run; nothing was started:\n  - " + "\n  - ".join(problems))
    return spec


def budget_problems(spec: Spec) -> list[str]:
    """Plan the baseline at every stage (tasks, components, widths): the arena's own checks, and whether
    the parameter budget can be met (the baseline within BUDGET_TOLERANCE of it)."""
    problems = []
    for name in spec.stages:
        try:
            plan = plan_sweep(spec.sweep(name, [], baseline=True))
        except SweepError as e:
            problems.append(f"stage {name}: {e}")
            continue
        if spec.param_budget:
            for run in plan:
                if abs(run.params - spec.param_budget) > BUDGET_TOLERANCE * spec.param_budget:
                    problems.append(f"param_budget {spec.param_budget:,} cannot be met on task {run.task!r}: the "
                                    f"baseline's nearest width (d_model {run.config.model.d_model}) has "
                                    f"{run.params:,} parameters; raise the budget or change the depth")
                    break
    return sorted(set(problems), key=problems.index)
