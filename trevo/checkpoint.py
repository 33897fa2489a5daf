"""Checkpoints: one safetensors file (weights, optimizer moments, RNG state) whose metadata holds
the JSON of the run's progress; written to a temporary file and renamed, so a crash never leaves a
torn checkpoint. Loading reads tensors only — no pickled code is ever executed."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trevo.registry import TrevoError

CHECKPOINT = "checkpoint.safetensors"


class CheckpointError(TrevoError, ValueError):
    """A checkpoint that is missing, corrupt or from another configuration."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and rename the result over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    meta: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for idx, state in opt_state["state"].items():
        for name, value in state.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {**meta, "param_groups": opt_state["param_groups"]}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"trevo": json.dumps(meta)}))


def load_checkpoint(path: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Restore ``model`` (and ``optimizer`` and the RNG) in place; returns the saved metadata."""
    if not Path(path).is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first (trevo train --out DIR)")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["trevo"])
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({e}); delete it to start the "
                              f"run over, or point to another checkpoint") from None
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
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
    return meta
