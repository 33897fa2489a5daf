"""One training run, top to bottom: build, (resume), loop, evaluate, checkpoint, report.

AdamW (decay on matrices only), linear warmup then cosine decay to ``min_lr_ratio``·lr, gradient
clipping, periodic evaluation. Batches are a function of (seed, step) and the RNG state is saved in
every checkpoint, so ``resume`` continues bit for bit. A non-finite loss stops the run, keeping the
last good checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from trevo import __version__
from trevo.checkpoint import CHECKPOINT, CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from trevo.config import RunConfig
from trevo.models import build_model
from trevo.registry import TrevoError, create
from trevo.tasks.base import Task

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


class TrainingDiverged(TrevoError, RuntimeError):
    """The loss became NaN or infinite."""


def lr_at(step: int, cfg) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio``·lr at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def logits_of(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's logits on ``batch``. A model with ``decodes_subset`` (Perceiver IO) gets the loss mask
    as ``outputs=`` and decodes only the scored positions; the task's loss and score read no others."""
    if getattr(model, "decodes_subset", False) and "loss_mask" in batch:
        return model(batch["input"], batch.get("padding_mask"), outputs=batch["loss_mask"].bool())
    return model(batch["input"], batch.get("padding_mask"))


def auxiliary_loss(model: torch.nn.Module) -> torch.Tensor | None:
    """The sum of the ``auxiliary_loss()`` terms that components define (adaptive span's span penalty),
    added to the task loss in training only; None when no component has one."""
    terms = [m.auxiliary_loss() for m in model.modules()
             if m is not model and callable(getattr(m, "auxiliary_loss", None))]
    return torch.stack(terms).sum() if terms else None


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, split: str, batch_size: int, n_batches: int,
             device: str = "cpu") -> dict[str, float]:
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for batch in task.eval_batches(split, batch_size, n_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = logits_of(model, batch)
        for key, value in task.score(logits, batch).items():
            totals[key] = totals.get(key, 0.0) + value
    model.train(was_training)
    return task.finalize(totals)


def build(cfg: RunConfig) -> tuple[Task, torch.nn.Module]:
    """The task and the model of a run (seeded: the same config gives the same initial weights)."""
    torch.manual_seed(cfg.train.seed)
    task = create("task", cfg.task.name, **cfg.task.options)
    if cfg.train.dtype not in DTYPES:
        raise TrevoError(f"train.dtype must be one of {', '.join(DTYPES)}, got {cfg.train.dtype!r}")
    model = build_model(cfg.model, task.info).to(cfg.train.device, DTYPES[cfg.train.dtype])
    if getattr(task, "tokenizer", None) is not None:
        model.tokenizer = task.tokenizer  # generation encodes prompts and decodes tokens with it
    return task, model


def train(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the run ``cfg`` into ``out_dir``; returns (and writes ``result.json``) its result."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    tc = cfg.train
    task, model = build(cfg)
    optimizer = make_optimizer(model, tc)

    start, history, losses = 0, [], []
    if tc.init_from and not ckpt_path.exists():  # fine-tuning: the weights of another run, a fresh optimizer
        load_checkpoint(Path(tc.init_from) / CHECKPOINT, model)
    if ckpt_path.exists():
        if not resume:
            raise CheckpointError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        meta = load_checkpoint(ckpt_path, model, optimizer)
        if meta["config_hash"] != cfg.hash():
            raise CheckpointError(f"the checkpoint in {out} was written by another config; "
                                  f"resume with the same config (see {out / 'config.yaml'})")
        start, history, losses = meta["step"], meta["history"], meta["losses"]
    atomic_write_text(out / "config.yaml", cfg.to_yaml())

    def checkpoint(step: int) -> None:
        meta = {"step": step, "config_hash": cfg.hash(), "history": history, "losses": losses}
        save_checkpoint(ckpt_path, model, optimizer, meta)

    tokens_per_step = tc.batch_size * task.info.seq_len
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, disable=not progress,
               dynamic_ncols=True, mininterval=1.0, desc=f"{cfg.model.mixer.name}")
    model.train()
    t0, metrics = time.perf_counter(), history[-1] if history else {}
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, tc)
        batch = {k: v.to(tc.device) for k, v in task.train_batch(step, tc.batch_size, tc.seed).items()}
        loss = task.loss(logits_of(model, batch), batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at step {step}; the last good checkpoint is kept in "
                f"{ckpt_path if ckpt_path.exists() else '(none yet)'}. Lower train.lr or train.grad_clip, "
                f"or use float32")
        aux = auxiliary_loss(model)
        optimizer.zero_grad(set_to_none=True)
        (loss if aux is None else loss + aux).backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        done = step + 1
        if done % tc.eval_every == 0 or done == tc.steps:
            metrics = {"step": done, **evaluate(model, task, "val", tc.batch_size, tc.eval_batches, tc.device)}
            history.append(metrics)
        if done % tc.checkpoint_every == 0 or done == tc.steps:
            checkpoint(done)
        elapsed = time.perf_counter() - t0
        shown = f"{metrics[task.info.metric]:.3f}" if task.info.metric in metrics else "—"
        bar.set_postfix(loss=f"{losses[-1]:.3f}", **{task.info.metric: shown},
                        tok_s=f"{(done - start) * tokens_per_step / elapsed:.0f}")
    wall = time.perf_counter() - t0
    result = {
        "config_hash": cfg.hash(),
        "metric": task.info.metric,
        "higher_is_better": task.info.higher_is_better,
        "final": history[-1] if history else {},
        "history": history,
        "losses": losses,
        "params": sum(p.numel() for p in model.parameters()),
        "tokens": tc.steps * tokens_per_step,
        "wall_s": wall,
        "tokens_per_s": (tc.steps - start) * tokens_per_step / wall if wall > 0 else 0.0,
        "versions": {"trevo": __version__, "torch": torch.__version__, "device": tc.device},
    }
    atomic_write_text(out / "result.json", json.dumps(result, indent=1))
    return result
