"""A run's output directory: made usable or refused with a clear message, locked against a second
writer, and never used to overwrite what a user wrote.

- ``--out`` that is a file, that cannot be created or written: a ``RunDirError`` naming the path.
- One writer at a time: ``.trevo.lock`` is held with ``flock`` for the whole run (the kernel releases
  it when the process ends, however it ends, so a killed run never leaves a stale lock).
- ``config.yaml`` is written only where there is none; one that holds the same config (a user's
  commented file given back as ``--config``) is left as it is; one with another config is refused.
- Temporary files of saves killed mid-write are removed on entry (``clean_stale_temps``).
- A directory this run created is removed again if the run fails before its first checkpoint.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trevo.checkpoint import CHECKPOINT, atomic_write_text, clean_stale_temps
from trevo.config import COMPONENTS, ConfigError, RunConfig
from trevo.errors import TrevoError

LOCK = ".trevo.lock"
CONFIG = "config.yaml"
RESULT = "result.json"
# What trevo.runlog writes beside the checkpoint: the per-step scalars, the reproducibility stamp, TensorBoard's.
STEPS_CSV = "steps.csv"
STAMP = "stamp.json"
TENSORBOARD = "tensorboard"
COMPONENT_PATHS = {path for _, path in COMPONENTS}


class RunDirError(TrevoError, OSError):
    """An output directory that cannot be used for this run."""


def _why(e: OSError) -> str:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "it is not writable"
    return e.strerror or str(e)


@contextmanager
def run_directory(out: str | Path, cfg: RunConfig) -> Iterator[Path]:
    """``out`` made ready for ``cfg`` and locked for as long as the ``with`` block runs."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a directory; choose a directory for the run")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / LOCK, "a+")  # noqa: SIM115  (held open for the whole run)
    except OSError as e:
        raise RunDirError(f"cannot use {out} as the run directory: {_why(e)}; choose another --out") from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunDirError(f"{out} is in use by another trevo run (pid {holder}); wait for it to finish or "
                              f"choose another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        clean_stale_temps(out)
        try:
            yield out
        except BaseException:
            if created and not (out / CHECKPOINT).exists():
                _remove_created(out)
            raise
    finally:
        lock.close()


def _remove_created(out: Path) -> None:
    """Remove a run directory this run made, when it holds only what this run wrote."""
    ours = {LOCK, CONFIG, STEPS_CSV, STAMP, TENSORBOARD}
    if all(p.name in ours for p in out.iterdir()):
        shutil.rmtree(out, ignore_errors=True)


def write_config(out: Path, cfg: RunConfig) -> None:
    """``out/config.yaml`` for ``cfg``: written if absent, kept if it holds the same config, refused
    (RunDirError) if it holds another."""
    path = out / CONFIG
    if path.exists():
        try:
            existing = RunConfig.load(path)
        except ConfigError as e:
            raise RunDirError(f"{path} exists and is not this run's config ({str(e).splitlines()[0]}); trevo does "
                              f"not overwrite it: choose another --out, or move the file away") from None
        if existing.hash() != cfg.hash():
            raise RunDirError(f"{path} holds another config ({differences(existing, cfg)}); trevo does not "
                              f"overwrite it: run it with --config {path}, or choose another --out")
        return
    try:
        atomic_write_text(path, cfg.to_yaml())
    except OSError as e:
        raise RunDirError(f"cannot write {path}: {_why(e)}; choose another --out") from None


def differences(a: RunConfig, b: RunConfig, limit: int = 3) -> str:
    """The first fields in which two configs differ, as ``key: a → b``."""
    flat_a, flat_b = _flatten(a.to_dict()), _flatten(b.to_dict())
    keys = [k for k in dict.fromkeys([*flat_a, *flat_b]) if flat_a.get(k) != flat_b.get(k)]
    shown = ", ".join(f"{k}: {flat_a.get(k)!r} in the file, {flat_b.get(k)!r} here" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """Dotted keys to leaf values; a component given by name alone counts as ``{name: ...}``."""
    out: dict[str, object] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, str) and key in COMPONENT_PATHS:
            v = {"name": v}
        out.update(_flatten(v, f"{key}.") if isinstance(v, dict) else {key: v})
    return out
