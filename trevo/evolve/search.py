"""The search loop of ``trevo evolve``: NSGA-II over genomes, or the random-search control, then the
fitness ladder; every evaluation an arena run, the search's own state one JSON file.

- Generation 0 is the spec's ``initial`` genomes and random draws from the space (the same for both
  strategies, so they start level). Each later generation makes ``population`` new genomes — with
  ``evolution``: parents by binary tournament on front rank, one-point crossover with probability
  ``crossover`` else a mutation (trevo.evolve.operators); with ``random``: fresh draws from the space
  (the control: a search that does not beat it has found nothing). A genome whose hash was ever
  evaluated is never evaluated again. Survivors: NSGA-II (trevo.evolve.selection) over the objectives.
- Each generation's genomes are one arena sweep (``trevo.arena.runner.run_sweep``) into the shared
  store ``OUT/arena.sqlite``, run by ``Launch``: worker processes here, or the arena's Ray tasks
  (``--backend ray``, the results returned to this process, which alone writes the store and the state),
  keyed by config hash: a finished run is never redone, an unfinished one
  resumes from its checkpoint. A genome with any failed run, or one whose width cannot be matched,
  gets ``WORST`` in every objective and the search goes on.
- After each generation the state (population, archive with parents and edits, history, generation
  counter) is written to ``OUT/evolve-<strategy>.json`` atomically (a temporary file, then
  ``os.replace``). Each generation's random numbers come from ``(seed, strategy, generation)``, so a
  search killed at any point and re-run with the same command redoes exactly the unfinished
  generation and ends at the same result (with ``tokens_per_s`` as an objective, up to its timing noise).
- The ladder (as the Evolved Transformer's progressive hurdles, So et al. 2019): the cheap stage for
  every genome; the ``promote`` stage for the best ``top`` of the Pareto set; the ``final`` stage for the
  best ``top`` of those and the Transformer++ baseline, with the same learning rates and seeds, compared
  paired by seed (trevo.evolve.ladder).
"""

from __future__ import annotations

import json
import os
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trevo.arena.runner import BACKENDS, DB_NAME, run_sweep
from trevo.arena.store import Run, Store
from trevo.arena.sweep import SweepError, plan_sweep
from trevo.errors import TrevoError
from trevo.evolve.operators import crossover, mutate
from trevo.evolve.selection import WORST, nsga2_select, ranks, tournament
from trevo.evolve.spec import Spec
from trevo.models.genome import Genome, GenomeError

STRATEGIES = ("evolution", "random")
CRASHED = {"crashed": True, "error": None, "quality": None, "state_bytes": None, "tokens_per_s": None, "params": None,
           "runs": []}


@dataclass(frozen=True)
class Launch:
    """How each evaluation's arena sweep runs (``trevo.arena.runner.run_sweep``): ``workers`` processes at
    once here (``local``), or a Ray task per run on the cluster at ``address`` (``ray``; a local one when None)."""

    workers: int = 1
    backend: str = "local"
    address: str | None = None

    def sweep(self, sweep: Any, out: Path, log: Callable[[str], None]) -> Store:
        return run_sweep(sweep, out, workers=self.workers, log=log, backend=self.backend, address=self.address)[0]


def state_path(out: Path, strategy: str) -> Path:
    return out / f"evolve-{strategy}.json"


def load_state(out: Path, spec: Spec, strategy: str) -> dict[str, Any]:
    path = state_path(out, strategy)
    if not path.is_file():
        return {"spec": spec.hash, "name": spec.name, "strategy": strategy, "generation": 0, "population": [],
                "archive": {}, "history": [], "stages": {}}
    state = json.loads(path.read_text())
    if state.get("spec") != spec.hash:
        raise TrevoError(f"{path} belongs to another spec (hash {state.get('spec')}, this one {spec.hash}); "
                         f"use another --out, or delete it to start over")
    return state


def save_state(out: Path, state: dict[str, Any]) -> None:
    """Write the state atomically: a kill leaves the previous whole file or the new one, never half."""
    path = state_path(out, state["strategy"])
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def objectives(entry: dict[str, Any], names: tuple[str, ...]) -> list[float]:
    """An archive entry's objective vector, every one minimised (tokens/s as seconds per token)."""
    if entry["crashed"]:
        return [WORST] * len(names)
    values = {"quality": entry["quality"], "state_bytes": entry["state_bytes"],
              "tokens_per_s": 1.0 / entry["tokens_per_s"] if entry["tokens_per_s"] else WORST}
    return [float(values[n]) for n in names]


def quality_of(runs: list[Run]) -> float:
    """The stage's score as a loss: per task the mean over seeds of the chosen runs' validation metric
    (1 − metric where higher is better, e.g. accuracy; bits per byte as it is), then the mean over tasks."""
    by_task: dict[str, list[float]] = {}
    for r in runs:
        v = r.val[r.metric]
        by_task.setdefault(r.task, []).append(1.0 - v if r.higher_is_better else v)
    return statistics.fmean(statistics.fmean(vs) for vs in by_task.values())


def state_bytes(spec: Spec, config: dict[str, Any]) -> int:
    """Generation state after prefilling ``spec.context`` tokens, for the model of a run's config."""
    import torch

    from trevo.config import RunConfig
    from trevo.generate import state_bytes_at
    from trevo.train import build

    _, model = build(RunConfig.from_dict(config))
    with torch.no_grad():
        return state_bytes_at(model.eval(), spec.context)


def evaluate(spec: Spec, stage: str, genomes: list[Genome], out: Path, launch: Launch, log: Callable[[str], None],
             baseline: bool = False) -> dict[str, dict[str, Any]]:
    """Train ``genomes`` (and the baseline) at ``stage`` as one arena sweep; per label, the fitness:
    quality, state bytes, tokens/s, params, the chosen runs' keys, and ``crashed``."""
    from trevo.arena.runner import choose

    keys: dict[str, list[str]] = {}
    results: dict[str, dict[str, Any]] = {}
    labelled = [(g.line(), [g], False) for g in genomes] + ([("baseline", [], True)] if baseline else [])
    planned = []
    for label, one, is_baseline in labelled:  # a genome whose width cannot be matched: a crashed evaluation
        try:
            keys[label] = [p.key for p in plan_sweep(spec.sweep(stage, one, is_baseline))]
            planned.extend(one)
        except SweepError as e:
            log(f"  {label}: cannot be planned ({str(e).splitlines()[-1].strip()}); worst fitness")
            results[label] = {**CRASHED, "error": str(e)}
    if not keys:
        return results
    store = launch.sweep(spec.sweep(stage, planned, baseline and "baseline" in keys), out, log)
    for label, run_keys in keys.items():
        mine = [store.get(k) for k in run_keys]
        picked = choose(mine)
        failed = [r for r in mine if r.status != "done"]
        if failed or not picked:
            error = (failed[0].error or "failed").splitlines()[0] if failed else "no finished run"
            results[label] = {**CRASHED, "error": error, "runs": run_keys}
            continue
        try:  # at the first task's matched width
            state = state_bytes(spec, picked[0].config)
        except TrevoError:  # a model with no recurrent generation
            state = WORST
        results[label] = {"crashed": False, "error": None, "quality": quality_of(picked), "state_bytes": state,
                          "tokens_per_s": statistics.fmean(r.tokens_per_s for r in picked),
                          "params": picked[0].params, "runs": [r.key for r in picked]}
    return results


def _offspring(spec: Spec, state: dict[str, Any], strategy: str, generation: int) -> list[dict[str, Any]]:
    """The new genomes of a generation, with their parents and edits: deterministic in (seed, strategy,
    generation) and the state, never a genome already in the archive."""
    space, archive = spec.space, state["archive"]
    rng = random.Random(f"{spec.seed}:{'init' if generation == 0 else strategy}:{generation}")
    seen = set(archive)
    children: list[dict[str, Any]] = []

    def add(genome: Genome, parents: list[str], edit: str) -> None:
        if genome.hash not in seen:
            seen.add(genome.hash)
            children.append({"genome": genome, "parents": parents, "edit": edit})

    if generation == 0:
        for g in spec.initial:
            add(g, [], "initial")
    population = state["population"]
    rank = ranks([(h, objectives(archive[h], spec.objectives)) for h in population]) if population else {}
    for _ in range(50 * spec.population):
        if len(children) >= spec.population:
            break
        if generation == 0 or strategy == "random":
            add(space.random_genome(rng), [], "random")
            continue
        a = tournament(population, rank, rng)
        parent = Genome.from_dict(archive[a]["genome"])
        try:
            if rng.random() < spec.crossover and len(population) > 1:
                b = tournament([h for h in population if h != a], rank, rng)
                try:
                    child, edit = crossover(parent, Genome.from_dict(archive[b]["genome"]), space, rng)
                    add(child, [a, b], edit.describe())
                    continue
                except GenomeError:  # two parents with no valid child between them: mutate instead
                    pass
            child, edit = mutate(parent, space, rng)
            add(child, [a], edit.describe())
        except GenomeError:  # a parent with no valid neighbour: draw other parents
            continue
    return children


def run_generation(spec: Spec, state: dict[str, Any], out: Path, strategy: str, launch: Launch,
                   log: Callable[[str], None]) -> None:
    g = state["generation"]
    children = _offspring(spec, state, strategy, g)
    log(f"generation {g} ({strategy}): {len(children)} new genome(s)")
    results = evaluate(spec, "cheap", [c["genome"] for c in children], out, launch, log)
    for c in children:
        genome: Genome = c["genome"]
        state["archive"][genome.hash] = {"line": genome.line(), "genome": genome.to_dict(), "generation": g,
                                         "parents": c["parents"], "edit": c["edit"], **results[genome.line()]}
    pool = list(dict.fromkeys(state["population"] + [c["genome"].hash for c in children]))
    archive = state["archive"]
    state["population"] = nsga2_select([(h, objectives(archive[h], spec.objectives)) for h in pool], spec.population)
    new = [archive[c["genome"].hash] for c in children]
    ok = [e["quality"] for e in archive.values() if not e["crashed"]]
    state["history"].append({"generation": g, "evaluations": len(archive),
                             "best": min(ok) if ok else None,
                             "median": statistics.median([e["quality"] for e in new if not e["crashed"]] or [WORST]),
                             "crashed": sum(e["crashed"] for e in new)})
    state["generation"] = g + 1
    save_state(out, state)
    best = state["history"][-1]["best"]
    log(f"generation {g} done: {len(archive)} evaluated, best quality {best if best is None else f'{best:.4f}'}")


def search(spec: Spec, out: str | Path, *, strategy: str = "evolution", workers: int = 1, backend: str = "local",
           address: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the search and its ladder into ``out``; returns the final state. ``backend``:
    ``local`` (``workers`` runs at once) or ``ray`` (a Ray task per run, on the cluster at ``address``)."""
    from trevo.evolve.ladder import run_ladder

    if strategy not in STRATEGIES:
        raise TrevoError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if backend not in BACKENDS:
        raise TrevoError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "ray":
        from trevo.arena.ray_backend import connect

        connect(address)  # Ray missing or the cluster unreachable: one error before anything is written
    launch = Launch(workers, backend, address)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = load_state(out, spec, strategy)
    if state["generation"]:
        log(f"resuming {state_path(out, strategy)}: {state['generation']} of {spec.generations} generations done")
    while state["generation"] < spec.generations:
        run_generation(spec, state, out, strategy, launch, log)
    run_ladder(spec, state, out, launch, log)
    return state


def store_of(out: Path) -> Store:
    return Store(out / DB_NAME)
