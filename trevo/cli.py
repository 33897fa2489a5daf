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
import threading
import time
from pathlib import Path

from trevo.errors import TrevoError
from trevo.registry import KINDS
from trevo.validation import cli_number

# After SIGTERM, the seconds a run is given to stop on its own (it stops at the next Python
# instruction) before the process is ended from a watcher thread: a single long torch op would
# otherwise hold the signal for minutes.
TERM_GRACE_S = 10.0

PLUGINS = {
    "arena": "trevo.arena.cli",
    "report": "trevo.arena.cli",
    "bench": "trevo.bench.cli",
    "evolve": "trevo.evolve.cli",
    "tasks": "trevo.tasks.cli",
    "import": "trevo.interop.cli",
    "export": "trevo.interop.cli",
    "eval": "trevo.interop.cli",
    "docs": "trevo.interop.cli",
    "knn": "trevo.tools.cli",
    "inspect": "trevo.tools.cli",
    "context": "trevo.tools.cli",
}


def _list(args: argparse.Namespace) -> None:
    from trevo.registry import entries
    from trevo.tables import Table, text

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
    body = [(e.kind, e.name, e.family, ",".join(e.capabilities()) if e.kind == "mixer" else "",
             ",".join(e.forms), e.time, e.paper.cite() if e.paper else "") for e in rows]
    print(text(Table(header, body, left=set(range(len(header))), max_width=48)))
    print(f"\n{len(rows)} components. Filter with --kind, --family, --capability; --json for machines.")


def _where(name: str, kind: str | None, as_json: bool) -> None:
    """Where the component ``name`` lives: its module and file, the op modules it calls, its tests."""
    from trevo.errors import UnknownComponentError
    from trevo.registry import KINDS, entries, get

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

    cfg = RunConfig.load(run_preset_path(args.config)) if args.config else RunConfig()
    return cfg.override(args.set or [])


def run_preset_path(source: str):
    """The file of ``--config``: a path, or a named run preset (``trevo/objectives/presets``: cramming)."""
    import importlib.resources

    from trevo.presets import preset_names

    if Path(source).is_file() or source not in preset_names("trevo.objectives"):
        return source
    return str(importlib.resources.files("trevo.objectives") / "presets" / f"{source}.yaml")


def _note(message: str) -> None:
    print(f"trevo: {message}", file=sys.stderr)


def _train(args: argparse.Namespace) -> None:
    from trevo.train import train

    cfg = _config(args)
    out = Path(args.out or f"runs/{cfg.model.label}-{cfg.hash()[:8]}")
    result = train(cfg, out, resume=args.resume, progress=not args.quiet, log=_note)
    if os.environ.get("RANK", "0") != "0":
        return  # one of torchrun's processes, not the first: the first reports the run
    final = result["final"]
    print(f"{cfg.model.label}: {result['metric']} {final.get(result['metric'], float('nan')):.4f} "
          f"after {result['tokens']:,} tokens ({result['params']:,} parameters, "
          f"{result['tokens_per_s']:,.0f} tokens/s). Run written to {out}/")


def _prompt(args: argparse.Namespace) -> bytes:
    """The prompt's bytes: a file's, or the argument's as the shell passed them (any bytes, not
    only UTF-8: the model reads bytes)."""
    if args.prompt_file is None:
        return os.fsencode(args.prompt)
    try:
        return Path(args.prompt_file).read_bytes()
    except OSError as e:
        raise TrevoError(f"cannot read --prompt-file {args.prompt_file}: {e.strerror}") from None


def _generate(args: argparse.Namespace) -> None:
    from trevo.checkpoint import CHECKPOINT, load_checkpoint
    from trevo.config import RunConfig
    from trevo.generate import check_generates_text, generate
    from trevo.train import build

    run = Path(args.run_dir)
    cfg = RunConfig.load(run / "config.yaml")
    prompt = _prompt(args)
    task, model = build(cfg)
    check_generates_text(cfg.task.name, task.info, model)
    load_checkpoint(run / CHECKPOINT, model)
    text, state = generate(model, prompt, args.tokens, mode=args.mode, temperature=args.temperature,
                           seed=args.seed)
    sys.stdout.flush()
    sys.stdout.buffer.write(prompt + text + b"\n")  # the bytes as generated, whatever their encoding
    sys.stdout.buffer.flush()
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
    s.add_argument("--config", help="a YAML run config (model/task/train sections), or a run preset: cramming")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a field, e.g. --set model.mixer.name=rwkv4 --set train.steps=500")
    s.add_argument("--out", help="run directory (default runs/<mixer>-<config hash>)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_train)

    s = sub.add_parser("generate", help="generate bytes from a trained causal LM run")
    s.add_argument("--run", dest="run_dir", required=True, help="a run directory written by `trevo train`")
    prompt = s.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="def ", help="the text to continue (default: 'def ')")
    prompt.add_argument("--prompt-file", help="continue the bytes of this file (any bytes, not only text)")
    s.add_argument("--tokens", type=cli_number(int, ge=0), default=200, help="how many bytes to generate")
    s.add_argument("--mode", choices=("parallel", "recurrent"), default="recurrent")
    s.add_argument("--temperature", type=cli_number(float, ge=0), default=0.0, help="0 = greedy")
    s.add_argument("--seed", type=cli_number(int, ge=0, le=2**63 - 1), default=0)
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


_watching = False


def _handle_sigterm() -> None:
    """SIGTERM stops trevo like Ctrl-C. Python runs a signal handler only between two bytecodes, so
    inside one long torch op the stop would wait for minutes: the signal also wakes a watcher thread
    (through ``signal.set_wakeup_fd``, written by the C-level handler at once), which ends the process
    if it is still running ``TERM_GRACE_S`` later. Checkpoints and the results store are written
    atomically, so ending at any instant loses at most the steps since the last checkpoint."""
    global _watching
    signal.signal(signal.SIGTERM, _terminate)
    if _watching or threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd,), name="trevo-sigterm", daemon=True).start()
    _watching = True


def _watch(read_fd: int) -> None:
    while signal.SIGTERM not in os.read(read_fd, 64):
        pass
    time.sleep(TERM_GRACE_S)
    os.write(2, f"trevo: still running {TERM_GRACE_S:g} s after SIGTERM (inside a long operation); "
                f"ending now{_after_interrupt}\n".encode())
    os._exit(128 + signal.SIGTERM)


# What an interrupted command leaves, by command (the others keep nothing worth naming).
AFTER_INTERRUPT = {"train": "; `--resume` continues from the last checkpoint",
                   "arena": "; the same command continues where it stopped (finished runs are kept)",
                   "evolve": "; the same command continues where it stopped (finished runs are kept)",
                   "bench": "; nothing was written (results are written when every point is measured)"}
_after_interrupt = ""


def main(argv: list[str] | None = None) -> int:
    global _after_interrupt
    _handle_sigterm()
    args = parser().parse_args(argv)
    _after_interrupt = AFTER_INTERRUPT.get(args.command, "")
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
        print(f"trevo: interrupted{_after_interrupt}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
