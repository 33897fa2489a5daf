"""The Python API, beside the CLI: build a model, load a run, train, run a sweep.

    import trevo

    model = trevo.create_model("rwkv4", d_model=64, n_layers=2)        # a registry mixer name …
    model = trevo.create_model({"mixer": "mamba", "channel": "swiglu"})  # … or a genome / ModelConfig
    result = trevo.train({"model": {"mixer": "rwkv4"}, "train": {"steps": 50}}, "runs/mine")
    model, config, task = trevo.load("runs/mine")
    runs = trevo.arena.run("quick", "runs/arena", workers=2)

``trevo.train`` is this function; the training module stays importable as ``from trevo.train import …``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trevo.config import ConfigError, ModelConfig, RunConfig
from trevo.registry import create, names

__all__ = ["create_model", "load", "train", "run_config"]


def run_config(config: RunConfig | ModelConfig | dict[str, Any] | str | Path | None = None) -> RunConfig:
    """A ``RunConfig`` from a RunConfig, a ModelConfig, a mapping (a whole run config with model/task/train
    sections, or a model section alone), a YAML file path, or None (the defaults)."""
    if config is None:
        return RunConfig()
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, ModelConfig):
        return RunConfig(model=config)
    if isinstance(config, (str, Path)):
        return RunConfig.load(config)
    if isinstance(config, dict):
        if set(config) & {"model", "task", "train"}:
            return RunConfig.from_dict(config)
        return RunConfig.from_dict({"model": config})
    raise ConfigError(f"expected a RunConfig, ModelConfig, mapping or YAML path, got {type(config).__name__}")


def create_model(spec: str | RunConfig | ModelConfig | dict[str, Any] | None = None, *,
                 task: str | dict[str, Any] | None = None, seed: int = 0, **fields: Any) -> torch.nn.Module:
    """A freshly initialised model. ``spec``: a registered mixer name (``"rwkv4"``: the default backbone
    with that mixer), or a genome (a ``ModelConfig``, a model mapping or a whole run config).
    ``task``: a task name or ``{name: ..., <options>}`` (default: the config's, the byte LM);
    ``fields`` set model fields (``d_model=64, n_layers=2``). The model's ``info`` is its task's."""
    if isinstance(spec, str) and spec in names("mixer"):
        cfg = RunConfig().replace({"model.mixer": spec})
    elif isinstance(spec, str):
        raise ConfigError(f"{spec!r} is not a registered mixer; `trevo list --kind mixer` lists them, or give a "
                          f"ModelConfig / mapping")
    else:
        cfg = run_config(spec)
    if fields:
        cfg = cfg.replace({f"model.{k}": v for k, v in fields.items()})
    if task is not None:
        cfg = cfg.replace({"task": task})
    from trevo.models import build_model

    torch.manual_seed(seed)
    info = create("task", cfg.task.name, **cfg.task.options).info
    return build_model(cfg.model, info)


def load(run_dir: str | Path) -> tuple[torch.nn.Module, RunConfig, Any]:
    """The trained (or imported) model of a run directory, in eval mode, with its config and task."""
    from trevo.peft.base import load_run_weights
    from trevo.train import build

    run = Path(run_dir)
    cfg = RunConfig.load(run / "config.yaml")
    task, model = build(cfg)
    model = load_run_weights(run, model)  # a run fine-tuned with train.peft: merged into a plain model
    return model.eval(), cfg, task


def train(config: RunConfig | ModelConfig | dict[str, Any] | str | Path | None, out: str | Path, *,
          resume: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train the run ``config`` into the directory ``out``; returns its result (also ``out/result.json``)."""
    from trevo.train import train as train_run

    return train_run(run_config(config), out, resume=resume, progress=progress)
