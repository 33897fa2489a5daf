"""`trevo evolve SPEC --out DIR`: search, or continue a search, and write its report."""

from __future__ import annotations

import argparse
from pathlib import Path


def _evolve(args: argparse.Namespace) -> None:
    from trevo.errors import TrevoError
    from trevo.evolve.plan import plan_text
    from trevo.evolve.search import search
    from trevo.evolve.spec import load_spec

    spec = load_spec(args.spec)  # every problem is reported here, before anything runs
    if args.workers < 1:
        raise TrevoError(f"--workers must be at least 1, got {args.workers}")
    if args.address and args.backend != "ray":
        raise TrevoError(f"--address {args.address} joins a Ray cluster; add --backend ray")
    out = Path(args.out or f"runs/evolve-{spec.name}")
    if args.plan:
        print(plan_text(spec, args.strategy))
        return
    search(spec, out, strategy=args.strategy, workers=args.workers, backend=args.backend, address=args.address)
    if not args.no_report:
        from trevo.evolve.report import write_report

        paths = write_report(out, spec)
        print(f"\nReport: {paths['html']} (and {paths['md'].name})")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from trevo.evolve.search import STRATEGIES
    from trevo.evolve.spec import preset_names

    s = sub.add_parser("evolve", help="search compositions of components for a better Transformer",
                       description="A multi-objective (quality vs inference state, tokens/s) search over genomes "
                                   "of registered components: NSGA-II or the random-search control, each "
                                   "evaluation an arena run, then a ladder of longer budgets ending in a paired "
                                   "comparison with Transformer++. Re-running the same command continues.")
    s.add_argument("spec", help=f"a preset ({', '.join(preset_names())}) or a search spec YAML file")
    s.add_argument("--out", help="output directory (default runs/evolve-<spec name>)")
    s.add_argument("--workers", type=int, default=1, help="evaluations at once, each in its own process")
    s.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine; ray: a Ray task per run (pip install "
                        "'trevo[ray]'), the results, the store and the search state written here")
    s.add_argument("--address", help="with --backend ray: the cluster to join (e.g. auto, ray://head:10001); "
                                     "default: a Ray started on this machine")
    s.add_argument("--strategy", choices=STRATEGIES, default="evolution",
                   help="evolution (NSGA-II) or random (the control at the same number of evaluations)")
    s.add_argument("--plan", action="store_true", help="check the spec and print the search's plan, run nothing")
    s.add_argument("--no-report", action="store_true", help="skip writing report.html and report.md")
    s.set_defaults(run=_evolve)
