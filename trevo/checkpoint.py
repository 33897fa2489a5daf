"""Checkpoints: one safetensors file (weights, optimizer moments, RNG state) whose metadata holds
the JSON of the run's progress and a SHA-256 of every tensor's bytes; written to a temporary file and
renamed, so a crash never leaves a torn checkpoint. Loading reads tensors only — no pickled code is
ever executed — and verifies every checksum, so a flipped byte is an error, never silently used.

Temporary files are named ``.trevo-tmp-<pid>-…``: ``clean_stale_temps`` removes those whose
writing process is gone (a save killed mid-write)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trevo.errors import TrevoError

CHECKPOINT = "checkpoint.safetensors"
TEMP_PREFIX = ".trevo-tmp-"
FORMAT = 2  # 2: per-tensor checksums in the metadata
REQUIRED_META = ("format", "step", "config_hash", "history", "losses", "checksums")


class CheckpointError(TrevoError, ValueError):
    """A checkpoint that is missing, corrupt or from another configuration."""


class NonFiniteStateError(CheckpointError):
    """Weights or optimizer moments that are NaN or infinite: never written as a checkpoint."""


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` and rename the result over ``path``. The file gets the usual
    permissions (0666 less the umask), as a file written in place would, whatever ``write`` did
    (safetensors, for one, writes its files 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    mode = os.stat(tmp).st_mode & 0o777  # 0666 less the umask, read back rather than changing the umask
    try:
        write(str(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` left by writers that no longer run; returns them."""
    removed = []
    for tmp in Path(folder).glob(f"{TEMP_PREFIX}*"):
        pid = tmp.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tensor_sha256(t: torch.Tensor) -> str:
    flat = t.detach().contiguous().reshape(-1).cpu()
    return hashlib.sha256(flat.view(torch.uint8).numpy().tobytes()).hexdigest()


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    meta: dict[str, Any], memory: dict[str, torch.Tensor] | None = None) -> None:
    """Write the model, the optimizer and the RNG state (the weights alone when ``optimizer`` is None:
    an imported model, which starts runs but is not resumed), and the memory a segment-level run carries
    into its next step (``trevo.segments``); refuses (NonFiniteStateError) to write a NaN or infinite
    weight or moment, so the checkpoint on disk is always one to resume from."""
    write_state(path, model.state_dict(), optimizer.state_dict() if optimizer is not None else None, meta, memory)


def write_state(path: Path, weights: dict[str, torch.Tensor], opt_state: dict[str, Any] | None,
                meta: dict[str, Any], memory: dict[str, torch.Tensor] | None = None) -> None:
    """``save_checkpoint`` of state dicts (a sharded run's, gathered: ``trevo.distributed.full_state``)."""
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in weights.items()}
    for k, v in (memory or {}).items():
        tensors[f"memory.{k}"] = v.detach().clone().contiguous()
    for idx, state in (opt_state or {"state": {}})["state"].items():
        for name, value in state.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    bad = nonfinite(tensors)
    if bad:
        raise NonFiniteStateError(f"{len(bad)} tensors hold NaN or infinite values ({', '.join(bad[:3])} …)")
    if opt_state is not None:
        tensors.update(rng_tensors())
        meta = {**meta, "param_groups": opt_state["param_groups"]}
    meta = {**meta, "format": FORMAT, "checksums": {k: tensor_sha256(v) for k, v in tensors.items()}}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"trevo": json.dumps(meta)}))


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a checkpoint, every tensor checked against its checksum."""
    if not Path(path).is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first (trevo train --out DIR)")
    fix = "delete it to start the run over, or point to another checkpoint"
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["trevo"])
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({e}); {fix}") from None
    missing = [k for k in REQUIRED_META if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the metadata {', '.join(missing)} (was it written by "
                              f"another program or an older trevo?); {fix}")
    sums = meta["checksums"]
    if set(sums) != set(tensors):
        raise CheckpointError(f"checkpoint {path} holds other tensors than its checksums list; {fix}")
    bad = [k for k, v in tensors.items() if tensor_sha256(v) != sums[k]]
    if bad:
        raise CheckpointError(f"checkpoint {path} is corrupt: {len(bad)} tensors fail their SHA-256 checksum "
                              f"({', '.join(bad[:3])}); {fix}")
    return tensors, meta


def load_checkpoint(path: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Restore ``model`` (and ``optimizer`` and the RNG) in place; returns the saved metadata."""
    tensors, meta = read_checkpoint(path)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing = set(model.state_dict()) - set(weights)
    unexpected = set(weights) - set(model.state_dict())
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match this model (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}); was it written with another config?")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match this model's shapes: {e}") from None
    if optimizer is not None:
        if "param_groups" not in meta:
            raise CheckpointError(f"checkpoint {path} holds weights alone (an imported model?), no optimizer state "
                                  f"to resume; start a run from it with train.init_from={Path(path).parent}")
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        try:
            optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path} holds an optimizer state that does not fit this model "
                                  f"({e}); was it written with another config?") from None
        restore_rng(tensors, path)
    meta["memory"] = {k[len("memory."):]: v for k, v in tensors.items() if k.startswith("memory.")}
    return meta


def rng_tensors() -> dict[str, torch.Tensor]:
    """Every random state that can influence a run: the CPU generator's, and each CUDA device's (a
    dropout mask or a random feature map drawn on cuda:1 uses cuda:1's generator, not the CPU's). The
    data order needs none: a batch is a function of (train.seed, step), both in the checkpoint."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Set the generators from a checkpoint's ``rng.*`` tensors. A checkpoint written on more CUDA
    devices than this machine has cannot be resumed exactly, and says so."""
    if "rng.torch" not in tensors:
        raise CheckpointError(f"checkpoint {path} holds no RNG state (rng.torch); it cannot be resumed")
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(int(k.rsplit(".", 1)[1]) for k in tensors if k.startswith("rng.cuda."))
    if not cuda:
        return
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda[-1] >= have:
        raise CheckpointError(f"checkpoint {path} holds the random state of {cuda[-1] + 1} CUDA device(s) and this "
                              f"machine has {have}; resume it where it was written (train.device=cuda), or start "
                              f"the run over in another --out")
    for index in cuda:
        torch.cuda.set_rng_state(tensors[f"rng.cuda.{index}"], index)
