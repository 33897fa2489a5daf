"""The search space of ``trevo evolve``: which parts may appear in a genome, and its shape limits.

A genome in the search is its repeating unit (``genome.pattern``: the layers one group holds) repeated
to the depth, as STAR's hierarchical genome (Thomas et al. 2024, arXiv 2411.17800) repeats its
backbone: an operator edits the unit, so a change to "layer i" changes every i-th layer of the stack.
The space says which mixers (each with the option values the search may pick), channels, norms,
residuals and per-layer relative positions may appear, the depth range, and the period (unit length)
range. ``SearchSpace.admits`` is the validity check the operators use: inside these limits and
``Genome.problems`` empty for every task of the search (the registry's capabilities, then a trial build).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from trevo.models.genome import NONE, Gene, Genome, GenomeError, Part
from trevo.registry import get, names
from trevo.tasks.base import TaskInfo

SPACE_FIELDS = {"mixers", "channels", "norms", "residuals", "positions", "depth", "period", "d_model"}
KIND_OF = {"mixers": "mixer", "channels": "channel", "norms": "norm", "residuals": "residual", "positions": "position"}


@dataclass(frozen=True)
class Choice:
    """A component the search may use, and for each of its options the values it may take (the first
    is the one a fresh gene gets)."""

    name: str
    options: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def part(self, kind: str, rng: random.Random | None = None) -> Part:
        picked = {k: (rng.choice(vs) if rng else vs[0]) for k, vs in self.options}
        return Part.of(kind, {"name": self.name, **picked})


@dataclass
class SearchSpace:
    """What genomes the search may produce (see the module docstring). ``infos``: the tasks every genome
    must build for; ``d_model``: the nominal width genomes carry (the arena matches the real one to the
    parameter budget, so two genomes that differ only in width are one architecture)."""

    mixers: list[Choice]
    channels: list[Choice]
    norms: list[Choice]
    residuals: list[Choice]
    positions: list[Choice]
    depth: tuple[int, int]
    period: tuple[int, int]
    d_model: int = 64
    infos: list[TaskInfo] = field(default_factory=list)
    _verdicts: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def choices(self, kind: str) -> list[Choice]:
        return {"mixer": self.mixers, "channel": self.channels, "norm": self.norms, "residual": self.residuals,
                "position": self.positions}[kind]

    def _allowed(self, kind: str, part: Part) -> bool:
        """Whether a part is one of the choices, each option one of its offered values (an option at its
        default is absent from a canonical part)."""
        for c in self.choices(kind):
            if c.name == part.name:
                offered = dict(c.options)
                return all(key in offered and value in offered[key] for key, value in part.options)
        return part == NONE and kind == "position"

    def limits(self, genome: Genome) -> list[str]:
        """What in ``genome`` lies outside the space (names, depth, period); [] if nothing."""
        problems = []
        if not self.depth[0] <= genome.n_layers <= self.depth[1]:
            problems.append(f"depth {genome.n_layers} outside {self.depth[0]}..{self.depth[1]}")
        if not self.period[0] <= len(genome.pattern) <= self.period[1]:
            problems.append(f"period {len(genome.pattern)} outside {self.period[0]}..{self.period[1]}")
        for i, gene in enumerate(genome.pattern):
            for kind in ("mixer", "channel", "norm", "residual", "position"):
                part = getattr(gene, kind)
                if not self._allowed(kind, part):
                    problems.append(f"layer {i} {kind} {part.name} {dict(part.options)} is not in the space")
        return problems

    def problems(self, genome: Genome) -> list[str]:
        """Every reason ``genome`` is not a member of the search: the space's limits, then the genome's own
        validity check for each task (cached by hash: a search asks about the same genome many times)."""
        if genome.hash not in self._verdicts:
            problems = self.limits(genome)
            if not problems:
                for info in self.infos:
                    problems += genome.problems(info)
            self._verdicts[genome.hash] = problems
        return self._verdicts[genome.hash]

    def admits(self, genome: Genome) -> bool:
        return not self.problems(genome)

    # Sampling -----------------------------------------------------------------------------------------
    def random_part(self, kind: str, rng: random.Random, mixer: str | None = None) -> Part:
        options = self.choices(kind)
        if kind == "position":
            allowed = set(get("mixer", mixer).relative_positions) if mixer else set()
            options = [c for c in options if c.name in allowed]
            if not options or rng.random() < 1 / (len(options) + 1):
                return NONE
        return rng.choice(options).part(kind, rng)

    def random_gene(self, rng: random.Random) -> Gene:
        mixer = self.random_part("mixer", rng)
        return Gene(mixer=mixer, channel=self.random_part("channel", rng), norm=self.random_part("norm", rng),
                    residual=self.random_part("residual", rng),
                    position=self.random_part("position", rng, mixer.name))

    def random_genome(self, rng: random.Random, tries: int = 200) -> Genome:
        """A genome drawn uniformly over period, unit genes and depth (a multiple of the period), that the
        space admits; a GenomeError if ``tries`` draws found none (a space with no valid member)."""
        for _ in range(tries):
            period = rng.randint(*self.period)
            depths = [d for d in range(self.depth[0], self.depth[1] + 1) if d % period == 0]
            if not depths:
                continue
            genome = Genome.of([self.random_gene(rng) for _ in range(period)], self.d_model, rng.choice(depths))
            if self.admits(genome):
                return genome
        raise GenomeError(f"no valid genome found in {tries} random draws from the search space: widen it")


def parse_choices(kind: str, items: Any, where: str) -> tuple[list[Choice], list[str]]:
    """The choices of one kind from a spec list (each a name or ``{name: N, options: {key: [values]}}``),
    and every problem found (unknown names, malformed entries)."""
    problems: list[str] = []
    if not isinstance(items, list) or (not items and kind != "position"):
        return [], [f"{where}: a non-empty list of {kind} names"]
    out = []
    known = names(kind)
    for item in items:
        if isinstance(item, str):
            name, options = item, {}
        elif isinstance(item, dict) and set(item) <= {"name", "options"} and isinstance(item.get("name"), str) \
                and isinstance(item.get("options", {}), dict):
            name, options = item["name"], item.get("options", {})
        else:
            problems.append(f"{where}: each entry is a name or {{name: ..., options: {{key: [values]}}}}, "
                            f"got {item!r}")
            continue
        if name not in known:
            problems.append(f"{where}: unknown {kind} {name!r} (trevo list --kind {kind} shows them)")
            continue
        bad = [k for k, v in options.items() if not isinstance(v, list) or not v]
        if bad:
            problems.append(f"{where}: {name}: each option lists its values, e.g. {{{bad[0]}: [1, 2]}}")
            continue
        out.append(Choice(name, tuple(sorted((k, tuple(v)) for k, v in options.items()))))
    return out, problems


def parse_range(value: Any, where: str, low: int = 1) -> tuple[tuple[int, int], list[str]]:
    """``[lo, hi]`` or one integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int) for v in value)
            or not low <= value[0] <= value[1]):
        return (low, low), [f"{where}: a range [lo, hi] of integers with {low} ≤ lo ≤ hi, got {value!r}"]
    return (value[0], value[1]), []


def parse_space(data: Any, infos: list[TaskInfo], where: str = "space") -> tuple[SearchSpace | None, list[str]]:
    """The search space of a spec's ``space:`` section, and every problem in it."""
    if not isinstance(data, dict):
        return None, [f"{where}: a mapping of mixers, channels, norms, residuals, positions, depth, period"]
    problems = [f"{where}: unknown field {k!r} (fields: {', '.join(sorted(SPACE_FIELDS))})"
                for k in sorted(set(data) - SPACE_FIELDS)]
    defaults = {"channels": ["swiglu"], "norms": ["rmsnorm"], "residuals": ["prenorm"], "positions": []}
    lists = {}
    for key, kind in KIND_OF.items():
        if key == "mixers" and key not in data:
            problems.append(f"{where}: mixers is required (the token mixers the search may use)")
            continue
        lists[key], found = parse_choices(kind, data.get(key, defaults.get(key)), f"{where}.{key}")
        problems += found
    depth, found = parse_range(data.get("depth", [2, 4]), f"{where}.depth")
    problems += found
    period, found = parse_range(data.get("period", [1, 2]), f"{where}.period")
    problems += found
    if period[0] > depth[1]:
        problems.append(f"{where}: period {period} cannot fit in depth {depth}")
    d_model = data.get("d_model", 64)
    if not isinstance(d_model, int) or d_model < 8:
        problems.append(f"{where}.d_model: a nominal width ≥ 8, got {d_model!r}")
    if problems:
        return None, problems
    return SearchSpace(d_model=d_model, depth=depth, period=period, infos=infos, **lists), []
