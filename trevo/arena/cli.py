"""`trevo arena` and `trevo report`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trevo.validation import cli_number


def _print(message: str) -> None:
    """Print, and keep going when stdout is gone (piped into `head`): the sweep is the work, its
    log only a view of it; the results are in the store whatever happens to the terminal."""
    try:
        print(message, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # later writes (and the final flush) go nowhere, quietly
        os.close(devnull)


def _plots_note(plots: bool) -> None:
    from trevo import plotting

    if plots and not plotting.available():
        print(f"trevo: the report has no plots: matplotlib is not installed ({plotting.INSTALL})", file=sys.stderr)


def _arena(args: argparse.Namespace) -> None:
    from trevo.arena.report import leaderboard_text, write_report
    from trevo.arena.runner import DB_NAME, run_sweep
    from trevo.arena.sweep import load_sweep, plan_summary, plan_sweep

    sweep = load_sweep(args.sweep, args.set or [])
    out = Path(args.out or f"runs/arena-{sweep.name}")
    if args.plan:
        print(plan_summary(plan_sweep(sweep)))
        return
    run_sweep(sweep, out, workers=args.workers, log=_print, backend=args.backend, address=args.address,
              redo=args.redo)
    db = out / DB_NAME
    _print("\n" + leaderboard_text(db, sweep.baseline, sweep.name))
    if not args.no_report:
        _plots_note(not args.no_plots)
        paths = write_report(db, out, sweep.baseline, sweep.name, plots=not args.no_plots)
        _print(f"\nReport: {paths['html']} (and {paths['md'].name}, {paths['csv'].name}, {paths['json'].name})")


def _report(args: argparse.Namespace) -> None:
    from trevo.arena.report import write_report
    from trevo.arena.runner import DB_NAME
    from trevo.errors import TrevoError

    db = Path(args.db)
    if db.is_dir():  # the arena's --out folder
        db = db / DB_NAME
    if not db.is_file():
        raise TrevoError(f"no results database at {db}; run `trevo arena` first (it writes OUT/{DB_NAME})")
    _plots_note(not args.no_plots)
    paths = write_report(db, args.out, args.baseline, args.sweep, plots=not args.no_plots)
    for kind, path in paths.items():
        print(f"{kind}: {path}")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    if name == "arena":
        from trevo.arena.sweep import preset_names

        s = sub.add_parser("arena", help="compare components fairly: a sweep of variants × tasks × seeds",
                           description="Run a sweep (a preset or a YAML file): same backbone, data, token budget "
                                       "and optimizer for every variant, widths matched to a parameter budget, "
                                       "several seeds. Re-running skips finished runs and resumes unfinished ones.")
        s.add_argument("sweep", nargs="?", default="quick",
                       help=f"a preset ({', '.join(preset_names())}) or a sweep YAML file (default: quick)")
        s.add_argument("--out", help="output directory (default runs/arena-<sweep name>)")
        s.add_argument("--workers", type=cli_number(int, ge=1), default=1,
                       help="runs at once, each in its own process")
        s.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local: worker processes on this machine; ray: a Ray task per run (pip install "
                            "'trevo[ray]'), the results written here")
        s.add_argument("--address", help="with --backend ray: the cluster to join (e.g. auto, ray://head:10001); "
                                         "default: a Ray cluster started on this machine")
        s.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a field of every run, over the sweep's own values, e.g. --set train.device=cuda "
                            "--set train.steps=50; or take a subset of the sweep: --set sweep.d_models=64,128 "
                            "(also sweep.lrs, sweep.weight_decays, sweep.seeds) --set sweep.tasks=LABEL,LABEL (a "
                            "label or a task's group; also sweep.variants); or match widths to another budget: "
                            "--set sweep.state_budget=BYTES (also sweep.param_budget, sweep.flop_budget)")
        s.add_argument("--plan", action="store_true", help="validate and print the plan, run nothing")
        s.add_argument("--redo", type=lambda text: [label for label in text.split(",") if label], metavar="LABEL,…",
                       help="train these variants' finished runs again (after a fix to their component); the old "
                            "run directories are kept as runs/<key>.superseded-N")
        s.add_argument("--no-report", action="store_true", help="skip writing the HTML/Markdown report")
        s.add_argument("--no-plots", action="store_true", help="a report without plots (no matplotlib needed)")
        s.set_defaults(run=_arena)
    else:
        s = sub.add_parser("report", help="write the HTML + Markdown report of an arena results database")
        s.add_argument("db", help="the arena.sqlite written by `trevo arena`, or the folder (its --out) that holds it")
        s.add_argument("--out", help="output directory (default: beside the database)")
        s.add_argument("--sweep", help="the sweep to report (default: the one run last); a report shows one sweep's "
                                       "latest plan")
        s.add_argument("--baseline", help="the variant to compare against (default: the sweep's baseline)")
        s.add_argument("--no-plots", action="store_true", help="a report without plots (no matplotlib needed)")
        s.set_defaults(run=_report)
