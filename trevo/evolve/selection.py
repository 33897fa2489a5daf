"""Multi-objective selection for ``trevo evolve``: NSGA-II (Deb, Pratap, Agarwal & Meyarivan 2002,
"A fast and elitist multiobjective genetic algorithm: NSGA-II") over quality and cost.

The non-dominated sorting, the crowding distance and the truncation of a population to its best ``k``
are DEAP's (``deap.tools.selNSGA2`` / ``sortNondominated``): the genome and its operators are
trevo's, and only the objective vectors go through DEAP, as lightweight individuals made here. Every
objective is minimised (quality as a loss, state bytes, seconds per token); a crashed evaluation
carries ``WORST`` in every objective, so it is dominated by every evaluation that finished.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from trevo.errors import TrevoError

WORST = 1e30  # the objectives of a crashed evaluation: dominated by anything that ran


def _deap():
    try:
        from deap import base, tools
    except ImportError:
        raise TrevoError("trevo evolve selects with DEAP's NSGA-II: pip install 'trevo[evolve]' "
                         "(or pip install deap)") from None
    return base, tools


class _Individual:
    """The part of a DEAP individual NSGA-II reads: a fitness; ``key`` names the genome."""

    def __init__(self, key: str, objectives: Sequence[float], fitness_class: type) -> None:
        self.key = key
        self.fitness = fitness_class(tuple(float(v) for v in objectives))


def _individuals(scored: Sequence[tuple[str, Sequence[float]]]) -> list[_Individual]:
    base, _ = _deap()
    widths = {len(objs) for _, objs in scored}
    if len(widths) > 1:
        raise TrevoError(f"every genome needs the same number of objectives, got {sorted(widths)}")
    n = widths.pop() if widths else 1
    fitness_class = type("Minimise", (base.Fitness,), {"weights": (-1.0,) * n})
    return [_Individual(key, objs, fitness_class) for key, objs in scored]


def fronts(scored: Sequence[tuple[str, Sequence[float]]]) -> list[list[str]]:
    """The keys sorted into non-dominated fronts: the first is the Pareto set, each later one is
    non-dominated once the earlier ones are removed. Keys within a front keep their input order."""
    _, tools = _deap()
    people = _individuals(scored)
    if not people:
        return []
    order = {p.key: i for i, p in enumerate(people)}
    return [sorted((p.key for p in front), key=order.__getitem__)
            for front in tools.sortNondominated(people, len(people))]


def pareto_set(scored: Sequence[tuple[str, Sequence[float]]]) -> list[str]:
    """The keys no other key dominates (no worse in every objective, better in one)."""
    found = fronts(scored)
    return found[0] if found else []


def nsga2_select(scored: Sequence[tuple[str, Sequence[float]]], k: int) -> list[str]:
    """NSGA-II's survivors: whole fronts in rank order, the last one cut by crowding distance (the
    most isolated kept, extremes first), ``k`` keys in all."""
    _, tools = _deap()
    return [p.key for p in tools.selNSGA2(_individuals(scored), k)]


def ranks(scored: Sequence[tuple[str, Sequence[float]]]) -> dict[str, int]:
    """The front index of each key (0: the Pareto set)."""
    return {key: r for r, front in enumerate(fronts(scored)) for key in front}


def tournament(population: Sequence[str], rank: dict[str, int], rng: random.Random) -> str:
    """Binary tournament on front rank (NSGA-II's mating selection; a tie goes to the first drawn)."""
    a, b = rng.choice(population), rng.choice(population)
    return b if rank[b] < rank[a] else a
