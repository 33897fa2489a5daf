"""Genome operators of ``trevo evolve``: mutations and one-point crossover that only produce members of
the search space.

STAR (Thomas et al. 2024, arXiv 2411.17800) evolves a hierarchical genome with point mutations and
crossover; here the genome is trevo's (``trevo.models.genome``): a repeating unit of genes and a depth.
Every operator edits the unit (``genome.pattern``) and says what it did in an ``Edit``:

- ``mixer`` / ``channel`` / ``norm`` / ``residual`` / ``position``: one gene's field set to another part
  the space offers (``mixer_options``: one option of the mixer set to another offered value);
- ``insert`` / ``delete``: a gene added to or removed from the unit (the number of repeats kept, so the
  depth changes by that many layers);
- ``depth``: the number of repeats of the unit changed;
- ``period``: the unit cut to its first p genes, or extended cyclically (``[a,b] → [a,b,a]``), with the
  depth kept as close as the depth range allows;
- ``crossover``: one-point crossover of two units, ``a[:i] + b[j:]``.

The child is ``Genome.of(unit, width, depth)``; an edit whose child the space does not admit
(``SearchSpace.admits``: the space's limits and the genome's validity check for every task) is drawn
again, so nothing invalid ever leaves this module.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from trevo.evolve.space import SearchSpace
from trevo.models.genome import Gene, Genome, GenomeError, Part
from trevo.registry import get

FIELD_KINDS = ("mixer", "channel", "norm", "residual", "position")
MUTATIONS = (*FIELD_KINDS, "mixer_options", "insert", "delete", "depth", "period")


@dataclass(frozen=True)
class Edit:
    """What an operator did: ``kind`` (one of MUTATIONS or ``crossover``), the unit index it acted at,
    and the values before and after (parts' one-line forms, counts, or for crossover the cut points)."""

    kind: str
    index: int
    before: Any
    after: Any

    def describe(self) -> str:
        if self.kind == "crossover":
            return f"crossover a[:{self.before}] + b[{self.after}:]"
        where = f" at layer {self.index}" if self.kind in (*FIELD_KINDS, "mixer_options", "insert", "delete") else ""
        return f"{self.kind}{where}: {self.before} → {self.after}"


def _text(part: Part) -> str:
    opts = ",".join(f"{k}={v}" for k, v in part.options)
    return part.name + (f"({opts})" if opts else "")


def _unit_and_repeats(genome: Genome) -> tuple[list[Gene], int]:
    unit = list(genome.pattern)
    return unit, genome.n_layers // len(unit)


def _child(parent: Genome, unit: list[Gene], depth: int) -> Genome:
    return Genome.of(unit, parent.d_model, depth, position=parent.position, tie_embeddings=parent.tie_embeddings)


def _mutate_once(genome: Genome, space: SearchSpace, rng: random.Random, kind: str) -> tuple[Genome, Edit] | None:
    """One attempt at an edit of ``kind``; None where it cannot change this genome."""
    unit, repeats = _unit_and_repeats(genome)
    i = rng.randrange(len(unit))
    gene = unit[i]
    if kind in FIELD_KINDS:
        part = space.random_part(kind, rng, gene.mixer.name if kind == "position" else None)
        if part == getattr(gene, kind):
            return None
        if kind == "mixer":  # a new mixer keeps no position it does not accept
            keep = gene.position.name in ("none", *get("mixer", part.name).relative_positions)
            unit[i] = gene.replace(mixer=part, position=gene.position if keep else Part("none"))
        else:
            unit[i] = gene.replace(**{kind: part})
        return _child(genome, unit, genome.n_layers), Edit(kind, i, _text(getattr(gene, kind)), _text(part))
    if kind == "mixer_options":
        choice = next((c for c in space.mixers if c.name == gene.mixer.name), None)
        if choice is None or not choice.options:
            return None
        key, values = rng.choice(choice.options)
        current = dict(gene.mixer.options).get(key, "default")
        value = rng.choice(values)
        mixer = Part.of("mixer", {"name": gene.mixer.name, **{k: v for k, v in gene.mixer.options}, key: value})
        if mixer == gene.mixer:
            return None
        unit[i] = gene.replace(mixer=mixer)
        return _child(genome, unit, genome.n_layers), Edit(kind, i, f"{key}={current}", f"{key}={value}")
    if kind == "insert":
        new = space.random_gene(rng)
        at = rng.randint(0, len(unit))
        unit.insert(at, new)
        return _child(genome, unit, len(unit) * repeats), Edit(kind, at, len(unit) - 1, len(unit))
    if kind == "delete":
        if len(unit) < 2:
            return None
        del unit[i]
        return _child(genome, unit, len(unit) * repeats), Edit(kind, i, len(unit) + 1, len(unit))
    if kind == "depth":
        options = [r for r in range(1, space.depth[1] // len(unit) + 1)
                   if r != repeats and r * len(unit) >= space.depth[0]]
        if not options:
            return None
        r = rng.choice(options)
        return _child(genome, unit, r * len(unit)), Edit(kind, 0, genome.n_layers, r * len(unit))
    if kind == "period":
        periods = [p for p in range(space.period[0], space.period[1] + 1) if p != len(unit)]
        if not periods:
            return None
        p = rng.choice(periods)
        new_unit = [unit[k % len(unit)] for k in range(p)]
        depths = [d for d in range(space.depth[0], space.depth[1] + 1) if d % p == 0]
        if not depths:
            return None
        depth = min(depths, key=lambda d: (abs(d - genome.n_layers), d))
        return _child(genome, new_unit, depth), Edit(kind, 0, len(unit), p)
    raise GenomeError(f"unknown mutation {kind!r}; one of {', '.join(MUTATIONS)}")


def mutate(genome: Genome, space: SearchSpace, rng: random.Random, kinds: tuple[str, ...] = MUTATIONS,
           tries: int = 100) -> tuple[Genome, Edit]:
    """A child of ``genome`` one edit away (its kind drawn from ``kinds``), different from it and
    admitted by the space; a GenomeError if ``tries`` attempts found none."""
    for _ in range(tries):
        made = _mutate_once(genome, space, rng, rng.choice(kinds))
        if made is not None and made[0] != genome and space.admits(made[0]):
            return made
    raise GenomeError(f"no valid mutation of {genome.line()} found in {tries} tries: widen the search space")


def crossover(a: Genome, b: Genome, space: SearchSpace, rng: random.Random,
              tries: int = 100) -> tuple[Genome, Edit]:
    """One-point crossover of two units: ``a.pattern[:i] + b.pattern[j:]`` (at least one gene of each),
    repeated as often as ``a``'s unit is (within the depth range); admitted by the space, and different
    from both parents. A GenomeError if ``tries`` cut points found none."""
    ua, ra = _unit_and_repeats(a)
    ub, _ = _unit_and_repeats(b)
    for _ in range(tries):
        i, j = rng.randint(1, len(ua)), rng.randrange(len(ub))
        unit = ua[:i] + ub[j:]
        depths = [d for d in range(space.depth[0], space.depth[1] + 1) if d % len(unit) == 0]
        if not depths:
            continue
        depth = min(depths, key=lambda d: (abs(d - len(unit) * ra), d))
        child = _child(a, unit, depth)
        if child not in (a, b) and space.admits(child):
            return child, Edit("crossover", i, i, j)
    raise GenomeError(f"no valid crossover of {a.line()} and {b.line()} in {tries} tries")
