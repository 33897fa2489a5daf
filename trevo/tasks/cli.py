"""``trevo tasks``: list the registered tasks, or show examples of one (PNG grids for image tasks,
printed examples for sequence tasks)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trevo.errors import TrevoError
from trevo.validation import MAX_SEED, cli_number


def _options(name: str, assignments: list[str]) -> dict[str, Any]:
    """Task options from ``name=value`` pairs (values read as YAML), each checked against the type
    and range the task's constructor declares."""
    import yaml

    from trevo.config import ConfigError
    from trevo.registry import get
    from trevo.validation import option_problems

    options = {}
    for a in assignments:
        key, sep, raw = a.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {a!r} is not of the form name=value")
        try:
            options[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            options[key] = raw
    problems = option_problems(get("task", name), options, name)
    if problems:
        raise ConfigError.of(problems)
    return options


def _list(args: argparse.Namespace) -> None:
    from trevo.registry import entries

    rows = entries("task")
    width = max(len(e.name) for e in rows)
    for e in rows:
        print(f"{e.name.ljust(width)}  {e.family:<16}  {e.summary}")
        if e.paper:
            print(f"{''.ljust(width)}  {'':<16}  {e.paper.cite()}")
    print(f"\n{len(rows)} tasks. `trevo tasks show NAME --out DIR` writes examples; "
          f"`trevo train --set task.name=NAME` trains on one.")


def _text(task: Any, batch: dict, i: int) -> str:
    if hasattr(task, "render"):
        return task.render(batch, i)
    tokens = batch["input"][i]
    if "padding_mask" in batch:
        tokens = tokens[batch["padding_mask"][i]]
    return " ".join(map(str, tokens.tolist())) + f"  =>  {batch['target'][i].tolist()}"


def _image_grid(task: Any, batch: dict, path: Path, label_names: dict[int, str]) -> None:
    from trevo.plotting import pyplot

    plt = pyplot("example images")
    h, w = task.info.layout
    n = batch["input"].shape[0]
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(batch["input"][i].reshape(h, w).numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            label = int(batch["target"][i])
            ax.set_title(label_names.get(label, str(label)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _show(args: argparse.Namespace) -> None:
    from trevo.registry import create

    task = create("task", args.name, **_options(args.name, args.option or []))
    batch = task.train_batch(0, args.n, args.seed)
    out = Path(args.out)
    info = task.info
    drawn = hasattr(task, "draw_examples")  # a task with pictures of its own (optical flow)
    image = drawn or (info.layout is not None and len(info.layout) == 2 and info.head == "classify")
    path = out / f"{args.name}.{'png' if image else 'txt'}"
    text = "\n\n".join(f"[{i}] {_text(task, batch, i)}" for i in range(args.n)) if not image or drawn else ""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if drawn:
            task.draw_examples(batch, path)
        elif image:
            names = {0: "not connected", 1: "connected"} if args.name == "pathfinder" else {}
            _image_grid(task, batch, path, names)
        else:
            path.write_text(text + "\n")
    except OSError as e:
        raise TrevoError(f"cannot write examples into {out}: {e.strerror}; choose another --out") from None
    if text:
        print(text + "\n")
    print(f"{args.name}: {args.n} examples written to {path}")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    s = sub.add_parser(name, help="the task suite: list tasks, show examples of one")
    verbs = s.add_subparsers(dest="tasks_command", required=True)
    v = verbs.add_parser("list", help="the registered tasks with their papers")
    v.set_defaults(run=_list)
    v = verbs.add_parser("show", help="write example images (PNG) or print examples of a task")
    v.add_argument("name", help="a task name (see `trevo tasks list`)")
    v.add_argument("--out", required=True, help="directory for the PNG grid or the text file")
    v.add_argument("--set", dest="option", action="append", metavar="NAME=VALUE",
                   help="a task option, e.g. --set image_size=128 or --set n_pairs=4")
    v.add_argument("-n", type=cli_number(int, ge=1, le=1024), default=8, help="how many examples (default 8)")
    v.add_argument("--seed", type=cli_number(int, ge=0, le=MAX_SEED), default=0)
    v.set_defaults(run=_show)
