"""The ``trevo`` command: list, train, generate (and arena, bench, report where present). Every verb
takes ``--import MODULE_OR_FILE`` to load components of one's own first (``trevo.plugins``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path

from trevo.registry import KINDS, TrevoError

PLUGINS = {
    "arena": "trevo.arena.cli",
    "report": "trevo.arena.cli",
    "bench": "trevo.bench.cli",
    "tasks": "trevo.tasks.cli",
    "import": "trevo.interop.cli",
    "export": "trevo.interop.cli",
    "eval": "trevo.interop.cli",
    "docs": "trevo.interop.cli",
    "knn": "trevo.tools.cli",
}


def _list(args: argparse.Namespace) -> None:
    from trevo.registry import entries

    if args.where:
        _where(args.where, args.kind, args.json)
        return
    rows = [e for e in entries(args.kind)
            if (not args.family or e.family == args.family)
            and (not args.capability or args.capability in e.capabilities())]
    if args.json:
        print(json.dumps([e.to_dict() for e in rows], indent=1))
        return
    header = ("kind", "name", "family", "capabilities", "forms", "time", "paper")
    table = [header] + [(e.kind, e.name, e.family, ",".join(e.capabilities()) if e.kind == "mixer" else "",
                         ",".join(e.forms), e.time, e.paper.cite() if e.paper else "") for e in rows]
    widths = [min(max(len(r[i]) for r in table), 48) for i in range(len(header) - 1)]
    for r in table:
        print("  ".join(c[:w].ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    print(f"\n{len(rows)} components. Filter with --kind, --family, --capability; --json for machines.")


def _where(name: str, kind: str | None, as_json: bool) -> None:
    """Where the component ``name`` lives: its module and file, the op modules it calls, its tests."""
    from trevo.registry import KINDS, UnknownComponentError, entries, get

    found = [e for e in entries(kind) if e.name == name]
    if not found:  # let the registry name the closest matches
        get(kind or "mixer", name)
        raise UnknownComponentError(f"no component named {name!r} in any kind ({', '.join(KINDS)})")
    for e in found:
        where = e.where()
        if as_json:
            print(json.dumps({"kind": e.kind, "name": e.name, "family": e.family, **where}, indent=1))
            continue
        print(f"{e.kind} {e.name} (family {e.family or '—'})\n  module: {where['module']}\n  file:   {where['file']}\n"
              f"  ops:    {', '.join(where['ops']) or '—'}\n  tests:  {where['tests'] or '—'}")


def _config(args: argparse.Namespace):
    from trevo.config import RunConfig

    cfg = RunConfig.load(args.config) if args.config else RunConfig()
    return cfg.override(args.set or [])


def _train(args: argparse.Namespace) -> None:
    from trevo.train import train

    cfg = _config(args)
    out = Path(args.out or f"runs/{cfg.model.mixer.name}-{cfg.hash()[:8]}")
    result = train(cfg, out, resume=args.resume, progress=not args.quiet)
    final = result["final"]
    print(f"{cfg.model.mixer.name}: {result['metric']} {final.get(result['metric'], float('nan')):.4f} "
          f"after {result['tokens']:,} tokens ({result['params']:,} parameters, "
          f"{result['tokens_per_s']:,.0f} tokens/s). Run written to {out}/")


def _generate(args: argparse.Namespace) -> None:
    from trevo.checkpoint import CHECKPOINT, load_checkpoint
    from trevo.config import RunConfig
    from trevo.generate import generate
    from trevo.train import build

    run = Path(args.run_dir)
    cfg = RunConfig.load(run / "config.yaml")
    _, model = build(cfg)
    load_checkpoint(run / CHECKPOINT, model)
    text, state = generate(model, args.prompt.encode(), args.tokens, mode=args.mode,
                           temperature=args.temperature, seed=args.seed)
    sys.stdout.write(args.prompt + text.decode("utf-8", errors="replace") + "\n")
    if args.mode == "recurrent":
        print(f"[generation state: {state:,} bytes]", file=sys.stderr)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package does not exist
        return False


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trevo", description=(
        "Transformer evolution: every published part of the Transformer block as a tested component, "
        "compared fairly. Start with `trevo list`, then `trevo train --set model.mixer.name=rwkv4`."))
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="the registered components and their metadata")
    s.add_argument("--kind", choices=KINDS)
    s.add_argument("--family", help="e.g. rwkv, softmax_attention, linear_attention")
    s.add_argument("--capability", choices=("causal", "bidirectional", "recurrent", "fixed_length", "needs_2d"))
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--where", metavar="NAME", help="where NAME lives: its module, op modules and test file")
    s.set_defaults(run=_list)

    s = sub.add_parser("train", help="train one model on one task",
                       description="Train one run. Defaults: a 4-layer d_model 256 softmax-attention byte LM "
                                   "on the Python standard library's source.")
    s.add_argument("--config", help="a YAML run config (model/task/train sections)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a field, e.g. --set model.mixer.name=rwkv4 --set train.steps=500")
    s.add_argument("--out", help="run directory (default runs/<mixer>-<config hash>)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_train)

    s = sub.add_parser("generate", help="generate bytes from a trained causal LM run")
    s.add_argument("--run", dest="run_dir", required=True, help="a run directory written by `trevo train`")
    s.add_argument("--prompt", default="def ")
    s.add_argument("--tokens", type=int, default=200, help="how many bytes to generate")
    s.add_argument("--mode", choices=("parallel", "recurrent"), default="recurrent")
    s.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(run=_generate)

    # Verbs that live beside their layer; each module defines add_parser(subparsers, name).
    for name, module in PLUGINS.items():
        if _has_module(module):
            importlib.import_module(module).add_parser(sub, name)
    _add_import_option(p)
    return p


def _add_import_option(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE_OR_FILE`` on every verb (and sub-verb): components of one's own (trevo.plugins)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb in action.choices.values():
                verb.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE_OR_FILE",
                                  help="load your own components first: a module name or a .py file that registers "
                                       "them (repeatable; docs/components.md)")
                _add_import_option(verb)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a polite kill stops like Ctrl-C: workers are ended, checkpoints kept


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = parser().parse_args(argv)
    try:
        from trevo import plugins

        for spec in getattr(args, "imports", []):
            plugins.load(spec)
        args.run(args)
    except TrevoError as e:
        print(f"trevo: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (keeps the interpreter's final flush quiet)
        return 0
    except KeyboardInterrupt:
        print("trevo: interrupted; `--resume` continues from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
