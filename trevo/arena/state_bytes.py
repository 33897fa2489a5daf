"""Generation state at a long context for every variant of a sweep: the memory a hybrid saves.

``python -m trevo.arena.state_bytes SWEEP [--context 4096] [--db OUT/arena.sqlite]`` plans the sweep
(widths matched as the arena matches them), builds each variant's model for each task and prefills
``context`` tokens (``trevo.generate.state_bytes_at``): a KV cache grows with the context, a recurrent
state does not. With ``--db`` the table also shows each variant's test metric (mean over the chosen
runs) and training tokens/s from the arena's results store.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from trevo.arena.store import Store
from trevo.arena.sweep import load_sweep, plan_sweep
from trevo.errors import TrevoError
from trevo.generate import state_bytes_at
from trevo.models.genome import Genome
from trevo.tables import Table, markdown
from trevo.train import build
from trevo.validation import cli_number


def state_table(sweep_source: str, context: int, db: str | None = None) -> list[dict]:
    """One row per (task, variant): params, one-line genome, state bytes after ``context`` tokens."""
    from trevo.arena.leaderboard import choose

    if db and not Path(db).is_file():
        raise TrevoError(f"no results database at {db}; run `trevo arena` first (it writes OUT/arena.sqlite)")
    plan = plan_sweep(load_sweep(sweep_source))
    # This plan's own runs (a store may hold earlier plans of the sweep, whose configs differ).
    chosen = choose(Store(db).runs(keys=[p.key for p in plan])) if db else []
    rows, seen = [], set()
    for run in plan:
        if (run.task, run.label) in seen:
            continue
        seen.add((run.task, run.label))
        _, model = build(run.config)
        try:
            state = state_bytes_at(model, context) if getattr(model, "causal", False) else None
            line = Genome.from_config(run.config).line()
        except TrevoError as e:  # a fixed-length model, or one that is not a metaformer stack
            state, line = None, f"({e})"
        runs = [r for r in chosen if r.task == run.task and r.label == run.label and r.test]
        metric = runs[0].metric if runs else ""
        rows.append({"task": run.task, "variant": run.label, "params": run.params, "genome": line,
                     "state_bytes": state, "metric": metric,
                     "test": statistics.fmean(r.test[metric] for r in runs) if runs else None,
                     "tokens_per_s": statistics.fmean(r.tokens_per_s for r in runs) if runs else None})
    return rows


def as_table(rows: list[dict], context: int) -> Table:
    header = ["task", "variant", "params", f"state at {context} tokens", "test", "tokens/s", "genome"]
    body = [[r["task"], r["variant"], f"{r['params']:,}",
             "—" if r["state_bytes"] is None else f"{r['state_bytes'] / 2**20:.2f} MiB",
             "—" if r["test"] is None else f"{r['metric']} {r['test']:.4f}",
             "—" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}", r["genome"]] for r in rows]
    return Table(header, body, left={0, 1, 6})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trevo.arena.state_bytes", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", help="a preset name or a sweep YAML file")
    parser.add_argument("--context", type=cli_number(int, ge=1), default=4096,
                        help="tokens prefilled before measuring (default 4096)")
    parser.add_argument("--db", help="the arena's results store (OUT/arena.sqlite), for the metric and tokens/s")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        print(markdown(as_table(state_table(args.sweep, args.context, args.db), args.context)))
    except TrevoError as e:
        print(f"trevo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
