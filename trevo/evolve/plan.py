"""``trevo evolve SPEC --plan``: what a search will do, checked, before it does anything."""

from __future__ import annotations

from trevo.arena.sweep import plan_sweep
from trevo.evolve.spec import Spec


def plan_text(spec: Spec, strategy: str) -> str:
    """The space, the search's size, each stage's runs per genome, and the baseline's matched width."""
    space = spec.space
    names = {kind: ", ".join(c.name + (f"{dict(c.options)}" if c.options else "") for c in space.choices(kind))
             for kind in ("mixer", "channel", "norm", "residual", "position")}
    lines = [f"search {spec.name!r} ({strategy}), spec hash {spec.hash}",
             *(f"  {kind + 's:':<11}{value or '—'}" for kind, value in names.items()),
             f"  depth {space.depth[0]}..{space.depth[1]}, period {space.period[0]}..{space.period[1]}, "
             f"nominal width {space.d_model}; widths matched to {spec.param_budget or 'no'} parameters",
             f"  population {spec.population} × {spec.generations} generations = "
             f"{spec.population * spec.generations} genomes evaluated (duplicates never re-evaluated)",
             f"  objectives: {', '.join(spec.objectives)} (state bytes after {spec.context} tokens)",
             f"  baseline: {spec.baseline.line()}", "stages:"]
    for name, stage in spec.stages.items():
        per_genome = len(stage.tasks) * len(stage.seeds) * max(1, len(stage.lrs))
        who = "every genome" if name == "cheap" else f"the best {stage.top}"
        who += " + baseline" if name == "final" else ""
        lines.append(f"  {name:<8} {who}: {', '.join(t.label for t in stage.tasks)}; {stage.steps} steps, seeds "
                     f"{stage.seeds}, lrs {stage.lrs or [spec.base.train.lr]} → {per_genome} run(s) per genome")
    lines.append("baseline at each stage:")
    for name in spec.stages:
        for run in {r.task: r for r in plan_sweep(spec.sweep(name, [], baseline=True))}.values():
            lines.append(f"  {name:<8} {run.task:<10} d_model {run.config.model.d_model}, {run.params:,} parameters")
    return "\n".join(lines)
