"""NSGA-II selection on hand-built populations: the Pareto set and the fronts are the ones worked out by
hand, and a brute-force dominance check agrees on random populations; crashed evaluations (WORST) are
never kept over finished ones."""

from __future__ import annotations

import random

from trevo.evolve.selection import WORST, fronts, nsga2_select, pareto_set, ranks


def _dominates(a, b):
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


# (quality loss, state bytes): hand-checked. a, b, c trade off; d is beaten by b; e by everything but f;
# f crashed.
POPULATION = [("a", (1.0, 900.0)), ("b", (2.0, 300.0)), ("c", (3.0, 100.0)), ("d", (2.5, 400.0)),
              ("e", (4.0, 950.0)), ("f", (WORST, WORST))]


def test_the_known_pareto_set_and_fronts():
    assert pareto_set(POPULATION) == ["a", "b", "c"]
    assert fronts(POPULATION) == [["a", "b", "c"], ["d"], ["e"], ["f"]]
    assert ranks(POPULATION) == {"a": 0, "b": 0, "c": 0, "d": 1, "e": 2, "f": 3}


def test_nsga2_keeps_whole_fronts_then_the_extremes_of_the_cut_front():
    assert set(nsga2_select(POPULATION, 4)) == {"a", "b", "c", "d"}
    assert "f" not in nsga2_select(POPULATION, 5)
    # Cutting the first front to 2 keeps its extremes (infinite crowding distance): a and c, not b.
    assert set(nsga2_select(POPULATION, 2)) == {"a", "c"}


def test_pareto_set_matches_a_brute_force_dominance_check():
    rng = random.Random(0)
    for _ in range(30):
        pop = [(str(i), (rng.randint(0, 9), rng.randint(0, 9), rng.random())) for i in range(20)]
        expected = [k for k, v in pop if not any(_dominates(w, v) for _, w in pop)]
        assert pareto_set(pop) == expected
