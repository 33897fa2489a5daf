"""What a run records beside its checkpoint: the per-step scalars and the reproducibility stamp.

- ``steps.csv`` (always): one row per training step — step, loss, lr, grad_norm (before clipping),
  tokens_per_s (the step's own time: evaluation and checkpointing excluded), memory_mb (peak CUDA memory
  allocated on a GPU, the process's peak resident memory on the CPU). After a resume the rows past the
  checkpoint are dropped and written again by the redone steps, so each step has one row.
- TensorBoard event files in ``tensorboard/`` as well, with ``train.log=tensorboard`` (the optional
  ``tensorboard`` package, read by ``torch.utils.tensorboard``).
- ``stamp.json``: what the numbers depend on besides the config — trevo's version and git commit, Python,
  torch, CUDA/cuDNN, the device's name, the corpus's fingerprint (the default corpus is the standard
  library's source, which changes with the Python version) and the resolved defaults of every component
  and the task (the constructor defaults a config did not set, which an upgrade of trevo may change).
"""

from __future__ import annotations

import csv
import functools
import inspect
import json
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

import torch

from trevo import __version__
from trevo.checkpoint import atomic_write_text
from trevo.registry import CONTEXT, get
from trevo.rundir import STAMP, STEPS_CSV, TENSORBOARD
from trevo.validation import ConfigError

COLUMNS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "memory_mb")


def memory_mb(device: str) -> float:
    """Peak memory so far: CUDA memory allocated on ``device``, else the process's peak resident set."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def require_tensorboard() -> type:
    """TensorBoard's ``SummaryWriter``, or a ConfigError naming the package to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.log=tensorboard needs the tensorboard package (pip install tensorboard); "
                          "or use train.log=csv (steps.csv is always written)") from None
    return SummaryWriter


class StepLog:
    """The per-step scalars of a run, from step ``start`` on (the rows before it are kept)."""

    def __init__(self, out: Path, kind: str, start: int) -> None:
        self.path = out / STEPS_CSV
        kept: list[list[str]] = []
        if self.path.is_file() and start > 0:
            with open(self.path, newline="") as f:
                kept = [row for row in list(csv.reader(f))[1:] if row and int(row[0]) <= start]
        self.file = open(self.path, "w", newline="", buffering=1)  # noqa: SIM115  (open for the run)
        self.csv = csv.writer(self.file)
        self.csv.writerows([list(COLUMNS), *kept])
        self.tensorboard = require_tensorboard()(log_dir=str(out / TENSORBOARD)) if kind == "tensorboard" else None

    def write(self, step: int, **scalars: float | None) -> None:
        """One row: ``step`` (1-based: the steps done) and the scalars named in ``COLUMNS``; None (the loss
        and gradient norm of a window with no targets) is left empty."""
        self.csv.writerow([step, *("" if scalars[c] is None else f"{scalars[c]:.6g}" for c in COLUMNS[1:])])
        if self.tensorboard is not None:
            for name, value in scalars.items():
                if value is not None:
                    self.tensorboard.add_scalar(f"train/{name}", value, step)

    def write_eval(self, step: int, metrics: dict[str, float]) -> None:
        if self.tensorboard is not None:
            for name, value in metrics.items():
                if name != "step":
                    self.tensorboard.add_scalar(f"val/{name}", value, step)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the git checkout trevo runs from (``+dirty`` with uncommitted changes), or None."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "trevo"],
                               capture_output=True, timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def _plain(value: Any) -> Any:
    """A JSON value: numbers, strings, booleans, None and lists of them as they are; anything else repr()."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def resolved_options(kind: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every constructor argument of ``kind``/``name`` with a default, as this trevo resolves it: the
    config's value where it sets one, else the default (context arguments, set by the model, excluded)."""
    try:
        params = inspect.signature(get(kind, name).factory).parameters.values()
    except (TypeError, ValueError):
        return {k: _plain(v) for k, v in sorted(options.items())}
    resolved = {p.name: p.default for p in params
                if p.default is not inspect.Parameter.empty and p.name not in CONTEXT}
    resolved.update(options)
    return {k: _plain(v) for k, v in sorted(resolved.items())}


def resolved_defaults(cfg: Any) -> dict[str, Any]:
    """The resolved options of the run's model architecture, components (each ``model.layers`` entry's
    too) and task, keyed by where they sit in the config."""
    from trevo.config import COMPONENTS, LAYER_FIELDS

    m = cfg.model
    out: dict[str, Any] = {"model": {"name": m.arch, "options": resolved_options("model", m.arch, m.options)}}
    for kind, path in COMPONENTS:
        spec = cfg.task if kind == "task" else getattr(m, kind)
        out[path] = {"name": spec.name, "options": resolved_options(kind, spec.name, spec.options)}
    for i, layer in enumerate(m.layers):
        for kind in LAYER_FIELDS:
            spec = getattr(layer, kind)
            if spec is not None:
                out[f"model.layers[{i}].{kind}"] = {"name": spec.name,
                                                    "options": resolved_options(kind, spec.name, spec.options)}
    return out


# Fingerprints of the corpora seen in this process, by object: hashing the default corpus (~28 MB) takes
# ~0.15 s, and load_corpus hands every run of a process the same (cached, never mutated) object.
_FINGERPRINTS: dict[int, tuple[Any, str]] = {}


def corpus_fingerprint(task: Any) -> str | None:
    """The SHA-256 of the task's text corpus (its splits' bytes), for a task that reads one."""
    corpus = getattr(task, "corpus", None)
    if corpus is None or not hasattr(corpus, "train"):
        return None
    from trevo.tasks.tokenizer import corpus_fingerprint as fingerprint

    known = _FINGERPRINTS.get(id(corpus))
    if known is None or known[0] is not corpus:
        if len(_FINGERPRINTS) >= 8:  # as many as load_corpus keeps, and a few more: never a growing store
            _FINGERPRINTS.clear()
        known = _FINGERPRINTS[id(corpus)] = (corpus, fingerprint(corpus))
    return known[1]


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model name (from /proc/cpuinfo on Linux)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stamp(cfg: Any, task: Any, device: str, world_size: int = 1) -> dict[str, Any]:
    """The reproducibility stamp of a run (see the module's docstring)."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"trevo": __version__, "git_commit": git_commit(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn, "device": device,
            "device_name": device_name(device), "processes": world_size, "corpus_sha256": corpus_fingerprint(task),
            "defaults": resolved_defaults(cfg)}


def write_stamp(out: Path, data: dict[str, Any]) -> None:
    atomic_write_text(out / STAMP, json.dumps(data, indent=1))
