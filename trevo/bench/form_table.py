"""The measured choice of form behind ``form="auto"``: a small table per device kind, mixer, direction,
mode (``fwdbwd`` when gradients are on, ``fwd`` otherwise) and length, written by
``trevo bench calibrate`` (``trevo.bench.calibrate``).

A table measured on trevo's reference CPU may ship beside this file (``form_table_cpu.json``); it is
read last. A table of one's own — another CPU, a GPU — is written by ``trevo bench calibrate --device cuda`` to
``~/.cache/trevo/form_table_<device>.json`` (or ``--table PATH``) and read from there first; the
environment variable ``TREVO_FORM_TABLE`` names a table that overrides both. Where no table covers
a mixer, ``auto`` keeps the mixer's declared order (the training default first).

A length between two calibrated lengths takes the choice of the nearer one on a log scale; a shorter
one the choice at the shortest. A length more than twice the longest calibrated one is not
extrapolated to (a form fastest at 4096 tokens may be quadratic): ``auto`` keeps the declared order
there, whose first form is the mixer's scalable training form.

Calibrated with chunk sizes, an entry also records the fastest chunk size of the ``chunk`` form
(whichever form won); a mixer built with ``chunk_size=None`` runs its chunk form at that size.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).with_name("form_table_cpu.json")


def user_table_path(device: str) -> Path:
    """Where ``trevo bench calibrate`` writes the table of ``device`` (cpu, cuda) by default."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trevo" / f"form_table_{device}.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("choices", {}) if isinstance(data, dict) else {}


@lru_cache(maxsize=8)
def _tables(override: str | None, device: str) -> tuple[dict[str, Any], ...]:
    """The tables consulted for ``device``, first match wins."""
    paths = [Path(override)] if override else []
    paths.append(user_table_path(device))
    if device == "cpu":
        paths.append(SHIPPED)
    return tuple(t for t in (_read(p).get(device, {}) for p in paths) if t)


def reload() -> None:
    """Forget the tables read so far (after a calibration wrote a new one)."""
    _tables.cache_clear()


def _nearest(mixer: str, causal: bool, seq_len: int, device: str, training: bool) -> tuple[dict[str, Any], bool]:
    """The table entry of ``mixer`` at the calibrated length nearest ``seq_len`` ({} where none), and
    whether ``seq_len`` is within twice the longest calibrated length."""
    direction, mode = ("causal" if causal else "bidirectional"), ("fwdbwd" if training else "fwd")
    for table in _tables(os.environ.get("TREVO_FORM_TABLE"), device):
        choices = table.get(mixer, {}).get(direction, {}).get(mode)
        if choices:
            target = math.log(max(seq_len, 1))
            nearest = min(choices, key=lambda c: abs(math.log(c["length"]) - target))
            return nearest, seq_len <= 2 * max(c["length"] for c in choices)
    return {}, False


def measured(mixer: str, causal: bool, seq_len: int, *, device: str = "cpu",
             training: bool = True) -> tuple[str | None, int | None]:
    """(the fastest form, the fastest chunk size of the chunk form) measured for ``mixer`` at the
    calibrated length nearest ``seq_len``, each None where none was. The chunk size (calibrated with
    ``--chunk-sizes``) holds past twice the longest calibrated length, unlike the form: every chunk size
    gives the same numbers, and the cost per chunk does not depend on the length."""
    entry, covered = _nearest(mixer, causal, seq_len, device, training)
    return (entry["form"] if covered else None), entry.get("chunk_size")


def measured_form(mixer: str, causal: bool, seq_len: int, *, device: str = "cpu", training: bool = True) -> str | None:
    """The fastest form measured for ``mixer`` at the calibrated length nearest ``seq_len``, or None."""
    return measured(mixer, causal, seq_len, device=device, training=training)[0]
