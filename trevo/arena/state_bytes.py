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
from trevo.train import build


def state_table(sweep_source: str, context: int, db: str | None = None) -> list[dict]:
    """One row per (task, variant): params, one-line genome, state bytes after ``context`` tokens."""
    from trevo.arena.runner import choose

    if db and not Path(db).is_file():
        raise TrevoError(f"no results database at {db}; run `trevo arena` first (it writes OUT/arena.sqlite)")
    plan = plan_sweep(load_sweep(sweep_source))
    chosen = choose(Store(db).runs()) if db else []
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


def markdown(rows: list[dict], context: int) -> str:
    header = ["task", "variant", "params", f"state at {context} tokens", "test", "tokens/s", "genome"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        state = "—" if r["state_bytes"] is None else f"{r['state_bytes'] / 2**20:.2f} MiB"
        test = "—" if r["test"] is None else f"{r['metric']} {r['test']:.4f}"
        speed = "—" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}"
        lines.append(f"| {r['task']} | {r['variant']} | {r['params']:,} | {state} | {test} | {speed} | "
                     f"`{r['genome']}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trevo.arena.state_bytes", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", help="a preset name or a sweep YAML file")
    parser.add_argument("--context", type=int, default=4096, help="tokens prefilled before measuring (default 4096)")
    parser.add_argument("--db", help="the arena's results store (OUT/arena.sqlite), for the metric and tokens/s")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        if args.context < 1:
            raise TrevoError(f"--context must be at least 1, got {args.context}")
        print(markdown(state_table(args.sweep, args.context, args.db), args.context))
    except TrevoError as e:
        print(f"trevo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
