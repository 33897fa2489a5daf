"""The arena: sweeps of components × tasks × seeds (× learning rates) under controlled variables,
an embedded SQLite results store, and a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run(sweep: Any, out: str | Path | None = None, *, workers: int = 1, report: bool = True) -> list[Any]:
    """Run a sweep (a preset name, a YAML path, a mapping or a ``Sweep``) into ``out`` (default
    ``runs/arena-<name>``); returns the chosen runs (``trevo.arena.store.Run``, one per variant × task × seed at its
    chosen learning rate) and writes the report."""
    from trevo.arena.report import write_report
    from trevo.arena.runner import DB_NAME, run_sweep
    from trevo.arena.sweep import Sweep, load_sweep, parse_sweep

    if isinstance(sweep, dict):
        sweep = parse_sweep(sweep)
    elif not isinstance(sweep, Sweep):
        sweep = load_sweep(str(sweep))
    out = Path(out or f"runs/arena-{sweep.name}")
    _, runs = run_sweep(sweep, out, workers=workers)
    if report:
        write_report(out / DB_NAME, out, sweep.baseline)
    return runs
