"""One training run, top to bottom: build, (resume), loop, evaluate, checkpoint, report.

AdamW (decay on matrices only), linear warmup then cosine decay to ``min_lr_ratio``·lr, gradient
clipping, periodic evaluation. Batches are a function of (seed, step) and the RNG state is saved in
every checkpoint, so ``resume`` continues bit for bit. A non-finite loss, or weights that became
non-finite, stop the run before the next checkpoint is written, keeping the last good one.
``train.stop_at`` ends a run early, at the first evaluation whose validation metric passes it
(Zoology's early stopping); the run is checkpointed there, and a resume of it does nothing more.

``train.precision`` runs the forward pass under autocast (``trevo.precision``), ``train.parallel=ddp|fsdp``
splits each global batch between torchrun's processes (``trevo.distributed``), ``train.compile`` compiles
each block; every run writes ``steps.csv`` and ``stamp.json`` beside its checkpoint (``trevo.runlog``).

Time is kept in two sums carried in every checkpoint, so that they survive a resume: ``train_s``,
the seconds of the training steps alone (the throughput ``tokens_per_s`` is computed from it), and
``wall_s``, which adds evaluation and checkpointing. Work redone after a resume (the steps after the
last checkpoint) is counted once.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from trevo import distributed, precision
from trevo.checkpoint import (
    CHECKPOINT,
    CheckpointError,
    NonFiniteStateError,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
    write_state,
)
from trevo.components.base import trace_form_lookup_as_constant
from trevo.config import RunConfig
from trevo.dtypes import DTYPES
from trevo.errors import TrevoError
from trevo.models import build_model
from trevo.objectives.likelihood import Objective, build_objective, model_logits
from trevo.peft.base import build_peft, check_peft, load_run_weights
from trevo.registry import create
from trevo.rundir import RESULT, RunDirError, run_directory, write_config
from trevo.runlog import StepLog, memory_mb, require_tensorboard, stamp, write_stamp
from trevo.segments import check_segments, detach, evaluate_streams, steps_per_stream, train_segments
from trevo.tasks.base import Task, TaskInfo, has_targets
from trevo.validation import ConfigError


class TrainingDiverged(TrevoError, RuntimeError):
    """The loss, the weights or the optimizer moments became NaN or infinite."""


class ResourceError(TrevoError, RuntimeError):
    """A run that this machine cannot hold, or a device it does not have."""


class DeviceError(ResourceError, ConfigError):
    """``train.device`` (or ``--device``) names a device this machine does not have: a config error."""


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


# The model's logits on a batch: a model with ``decodes_subset`` (Perceiver IO) gets the loss mask as
# ``outputs=`` and decodes only the scored positions; the task's loss and score read no others.
logits_of = model_logits


def objective_of(cfg: RunConfig, task: Task, model: torch.nn.Module) -> Objective | None:
    """The objective a run trains with where it is not the task's own loss: the model's (one with weights,
    ELECTRA's generator, is ``model.objective``) or ``train.objective``'s. None: the run minimises
    ``task.loss``, which is what the task's default objective (causal or masked LM) computes."""
    objective = getattr(model, "objective", None)
    if objective is None and cfg.train.objective is not None:
        objective = build_objective(cfg.train.objective, task, model)
    return objective


def auxiliary_loss(model: torch.nn.Module) -> torch.Tensor | None:
    """The sum of the ``auxiliary_loss()`` terms that components define (adaptive span's span penalty),
    added to the task loss in training only; None when no component has one."""
    terms = [m.auxiliary_loss() for m in model.modules()
             if m is not model and callable(getattr(m, "auxiliary_loss", None))]
    return torch.stack(terms).sum() if terms else None


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, split: str, batch_size: int, n_batches: int,
             device: str = "cpu", precision_name: str = "fp32") -> dict[str, float]:
    """The task's metrics on ``n_batches`` of ``split``, the forward pass in the run's precision; a task of
    segmented streams is read whole, segment by segment (``trevo.segments.evaluate_streams``)."""
    if task.info.segments > 1:
        return evaluate_streams(model, task, split, batch_size, n_batches, device)
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    # an objective with its own metrics (ELECTRA's replaced-token detection) adds them to the task's
    objective = getattr(model, "objective", None)
    own = callable(getattr(objective, "score", None))
    for batch in task.eval_batches(split, batch_size, n_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        with precision.autocast(device, precision_name):
            logits = logits_of(model, batch)
            own_sums = objective.score(model, batch) if own else {}
        for key, value in (task.score(precision.widened(logits), batch) | own_sums).items():
            totals[key] = totals.get(key, 0.0) + value
    model.train(was_training)
    return task.finalize(totals) | (objective.finalize(totals) if own else {})


def check_device(device: str, field: str = "train.device") -> None:
    """Refuse a device this machine does not have, naming the ones it has (``field``: how the user set it)."""
    kind, _, index = device.partition(":")
    sep = " " if field.startswith("-") else "="
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"{field}{sep}{device} but torch sees no CUDA device (torch {torch.__version__}); "
                              f"use {field}{sep}cpu, or install a CUDA build of torch")
        if index and int(index) >= count:
            raise DeviceError(f"{field}{sep}{device} but this machine has {count} CUDA device(s): cuda:0 … "
                              f"cuda:{count - 1}")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{field}{sep}mps but torch sees no Apple GPU; use {field}{sep}cpu")


def device_memory(device: str) -> int:
    """Bytes of memory of ``device`` (physical memory for the CPU)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(cfg: RunConfig, info: TaskInfo) -> None:
    """Refuse a run that cannot fit in memory at all. The bound is a floor, never a guess: every
    model holds a token embedding table (vocab_size × d_model values), embeds each token of the batch
    (batch × seq_len × d_model values) and holds the token ids (8 bytes each), so it needs at least
    that much, whatever the mixer."""
    tc, d = cfg.train, cfg.model.d_model
    width = torch.tensor([], dtype=DTYPES[tc.dtype]).element_size()
    need = tc.batch_size * info.seq_len * (d * width + 8) + info.vocab_size * d * width
    have = device_memory(tc.device)
    if need > have:
        raise ResourceError(
            f"this run needs at least {need / 2**30:,.1f} GiB (the embedded batch, train.batch_size={tc.batch_size} "
            f"× seq_len={info.seq_len} × model.d_model={d} × {width} bytes, and the {info.vocab_size:,}-token "
            f"embedding table) and {tc.device} has {have / 2**30:,.1f} GiB; lower train.batch_size, task.seq_len "
            f"or model.d_model")


def build(cfg: RunConfig, device: str | None = None) -> tuple[Task, torch.nn.Module]:
    """The task and the model of a run (seeded: the same config gives the same initial weights), on
    ``device`` (default ``train.device``; a torchrun process's own GPU)."""
    device = device or cfg.train.device
    check_device(device)
    precision.check_precision(cfg.train.precision, cfg.train.dtype, device)
    torch.manual_seed(cfg.train.seed)
    task = create("task", cfg.task.name, **cfg.task.options)
    check_fits(cfg, task.info)
    model = build_model(cfg.model, task.info).to(device, DTYPES[cfg.train.dtype])
    if getattr(task, "tokenizer", None) is not None:
        model.tokenizer = task.tokenizer  # generation encodes prompts and decodes tokens with it
    objective = build_objective(cfg.train.objective, task, model)  # an incompatible objective fails here
    own_metric = callable(getattr(objective, "score", None))
    if objective is not None and (own_metric or any(True for _ in objective.parameters())):
        # its weights (ELECTRA's generator) train, checkpoint and resume with the model's; its own metric
        # (ELECTRA's, XLNet's permutation LM, Transcormer's sliding LM) is evaluated beside the task's
        model.objective = objective.to(device, DTYPES[cfg.train.dtype])
    return task, model


def compile_blocks(model: torch.nn.Module) -> None:
    """``torch.compile`` each block in place (``Module.compile``: the weights' names, and so checkpoints, are
    unchanged), or the whole model where it has no ``blocks``. Per block, so that a graph break in one
    block's mixer splits that block's graph only. (``TokenMixer.form_for``'s reading of the form table is
    made a constant of the trace, not a graph break.)"""
    trace_form_lookup_as_constant()
    blocks = getattr(model, "blocks", None)
    for module in blocks if isinstance(blocks, torch.nn.ModuleList) else [model]:
        module.compile()


def check_one_process(cfg: RunConfig, task: Task, model: torch.nn.Module, world: distributed.World) -> None:
    """Refuse what the loop cannot run yet: a task of segmented streams, or an objective other than the
    task's own loss, trains in one float32 process (no torchrun DDP, no mixed precision); a PEFT fine-tune
    in one process."""
    tc = cfg.train
    check_segments(task, tc.bptt_segments, tc.objective)
    segmented = task.info.segments > 1
    if (segmented or objective_of(cfg, task, model) is not None) and (world.size > 1 or tc.precision != "fp32"):
        what = "a task of segmented streams" if segmented else f"train.objective={tc.objective.name}"
        raise ConfigError(f"{what} trains in one process in float32 for now (train.parallel=none, "
                          f"train.precision=fp32); got train.parallel={tc.parallel}, train.precision={tc.precision}")
    if tc.peft is not None and world.size > 1:
        raise ConfigError(f"train.peft={tc.peft.name} fine-tunes in one process for now (train.parallel=none); got "
                          f"train.parallel={tc.parallel} under torchrun")


def train(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the run ``cfg`` into ``out_dir``; returns (and writes ``result.json``) its result.
    ``log`` receives notes for the user (e.g. that ``resume`` found no checkpoint). Under torchrun with
    ``train.parallel=ddp`` or ``fsdp``, every process calls this; rank 0 alone writes ``out_dir``."""
    tc = cfg.train
    world = distributed.setup(tc.parallel, tc.device, tc.batch_size)
    try:
        device = world.device(tc.device)
        task, model = build(cfg, device)  # a config that cannot build fails before anything is written
        check_one_process(cfg, task, model, world)
        check_peft(tc.peft, tc.init_from)
        if tc.init_from and not (Path(tc.init_from) / CHECKPOINT).is_file():
            raise CheckpointError(f"train.init_from={tc.init_from}: no {CHECKPOINT} there; give a run directory "
                                  f"written by `trevo train` or `trevo import`")
        if tc.log == "tensorboard" and world.main:
            require_tensorboard()  # fails here, before anything is written, when tensorboard is missing
        note = log or (lambda _: None)
        if not world.main:  # rank 0 alone owns (locks, writes) the run directory; the others read its checkpoint
            return _train(cfg, Path(out_dir), task, model, world, device, resume=resume, progress=False, log=note)
        with run_directory(out_dir, cfg) as out:
            return _train(cfg, out, task, model, world, device, resume=resume, progress=progress, log=note)
    finally:
        # the sharded model's DTensors hold the process group's pending work: released (and collected) before
        # the group is destroyed, or gloo's worker threads were seen to abort the process at exit
        task = model = None  # noqa: F841
        distributed.teardown(world)


def _train(cfg: RunConfig, out: Path, task: Task, model: torch.nn.Module, world: distributed.World, device: str, *,
           resume: bool, progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    ckpt_path = out / CHECKPOINT
    tc = cfg.train
    # fine-tuning: the weights of another run, a fresh optimizer; under train.peft they are loaded on a resume
    # too, since the wrapper's mask (PaFi) and frozen values are those of the pre-trained weights
    if tc.init_from and (not ckpt_path.exists() or tc.peft is not None):
        load_run_weights(tc.init_from, model)
    peft = None if tc.peft is None else build_peft(tc.peft, model)  # before the optimizer: it trains peft's alone
    optimizer = make_optimizer(model, tc)
    scaler = precision.grad_scaler(device, tc.precision)
    segmented = task.info.segments > 1
    objective = objective_of(cfg, task, model)

    start, history, losses, train_s, wall_s = 0, [], [], 0.0, 0.0
    memory = None  # what a segment-level run carries into its next step
    if ckpt_path.exists():
        if not resume:
            raise CheckpointError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        meta = load_checkpoint(ckpt_path, model, optimizer)
        if meta["config_hash"] != cfg.hash():
            raise CheckpointError(f"the checkpoint in {out} was written by another config; "
                                  f"resume with the same config (see {out / 'config.yaml'})")
        start, history, losses = meta["step"], meta["history"], meta["losses"]
        train_s, wall_s = meta.get("train_s", 0.0), meta.get("wall_s", 0.0)
        memory = {k: v.to(device) for k, v in meta["memory"].items()} if segmented else None
        if scaler is not None and meta.get("grad_scaler"):
            scaler.load_state_dict(meta["grad_scaler"])
    else:
        if (out / RESULT).exists():
            raise RunDirError(f"{out} holds a {RESULT} but no checkpoint, so it cannot be continued; choose "
                              f"another --out, or remove {out / RESULT}")
        if resume:
            log(f"no checkpoint in {out}: starting the run from step 0")
    run_stamp = stamp(cfg, task, device, world.size)
    steps_log = None
    if world.main:
        write_config(out, cfg)
        write_stamp(out, run_stamp)
        steps_log = StepLog(out, tc.log, start)
    if tc.compile:
        compile_blocks(model)
    sharded = tc.parallel == "fsdp" and world.size > 1
    if sharded:  # after the resume, which every rank read whole: each keeps its shards
        distributed.shard_fully(model, optimizer, world, device)
    trained = distributed.wrap(model, world, device, tc.parallel)  # after the resume: DDP broadcasts rank 0's weights

    session_start = time.perf_counter()

    def checkpoint(step: int) -> None:
        state = distributed.full_state(model, optimizer) if sharded else None  # every rank gathers
        if not world.main:
            return
        meta = {"step": step, "config_hash": cfg.hash(), "history": history, "losses": losses,
                "train_s": train_s, "wall_s": wall_s + time.perf_counter() - session_start,
                "grad_scaler": precision.scaler_state(scaler)}
        try:
            if state is None:
                save_checkpoint(ckpt_path, model, optimizer, meta, memory)
            else:
                write_state(ckpt_path, *state, meta, memory)
        except NonFiniteStateError as e:
            raise TrainingDiverged(
                f"the update of step {step - 1} made the model non-finite ({e}); the last good checkpoint is "
                f"kept in {ckpt_path if ckpt_path.exists() else '(none yet)'}. Lower train.lr or train.grad_clip, "
                f"or use float32") from None

    def passed(m: dict[str, Any]) -> bool:
        if tc.stop_at is None or task.info.metric not in m:
            return False
        value = m[task.info.metric]
        return value > tc.stop_at if task.info.higher_is_better else value < tc.stop_at

    stopped = bool(history) and passed(history[-1])  # a run that stopped early, resumed: nothing to do
    segments_per_step = task.info.segments / steps_per_stream(task, tc.bptt_segments) if segmented else 1
    tokens_per_step = round(tc.batch_size * task.info.seq_len * segments_per_step)
    bar = tqdm(range(start, start if stopped else tc.steps), initial=start, total=tc.steps, disable=not progress,
               dynamic_ncols=True, mininterval=1.0, desc=cfg.model.label)
    model.train()
    metrics = history[-1] if history else {}
    try:
        for step in bar:
            t0 = time.perf_counter()
            lr = lr_at(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if segmented:
                logits, batch, memory = train_segments(model, task, step, tc.batch_size, tc.seed,
                                                       tc.bptt_segments, memory, device)
                loss = task.loss(logits, batch)
            elif objective is not None:
                loss = objective.loss(model, {k: v.to(device) for k, v in
                                              task.train_batch(step, tc.batch_size, tc.seed).items()})
            else:
                batch = task.train_batch(step, tc.batch_size, tc.seed)
                batch = {k: v.to(device) for k, v in distributed.shard(batch, world).items()}
                with precision.autocast(device, tc.precision):
                    logits = logits_of(trained, batch)
                loss = precision.task_loss_fp32(task, logits, batch)
            # a window of a stream with no scored position (passkey's segments before the question) carries
            # the memory on and takes no optimizer step: no moment, weight-decay or AdamW-count update
            updates = not segmented or has_targets(batch)
            shown_loss = distributed.mean(loss.detach(), world)
            if updates and not torch.isfinite(shown_loss):
                raise TrainingDiverged(
                    f"the loss became {shown_loss.item()} at step {step}; the last good checkpoint is kept in "
                    f"{ckpt_path if ckpt_path.exists() else '(none yet)'}. Lower train.lr or train.grad_clip, "
                    f"or use float32")
            aux = auxiliary_loss(model)  # read even when no step is taken: it empties the components' terms
            optimizer.zero_grad(set_to_none=True)
            grad_norm = None
            if updates:
                total = loss if aux is None else loss + aux
                (total if scaler is None else scaler.scale(total)).backward()
                if scaler is not None:
                    scaler.unscale_(optimizer)  # clipping and the logged norm see the true gradients
                # under FSDP the norm is a DTensor, gathered here (every rank updates: segmented runs are refused)
                grad_norm = float(distributed.full(torch.nn.utils.clip_grad_norm_(
                    model.parameters(), tc.grad_clip if tc.grad_clip > 0 else math.inf)))
                if scaler is None:
                    optimizer.step()
                else:
                    scaler.step(optimizer)  # skipped when the scaled gradients overflowed; the scale is then lowered
                    scaler.update()
                if peft is not None:
                    peft.after_step()
            if memory is not None:
                memory = detach(memory)  # the stop-gradient between steps
            # None: a window with no targets (no loss); .item() waits for the step's kernels, so the time
            # below is the step's own
            losses.append(shown_loss.item() if updates else None)
            step_s = time.perf_counter() - t0
            train_s += step_s
            done = step + 1
            if steps_log is not None:
                steps_log.write(done, loss=losses[-1], lr=lr, grad_norm=grad_norm,
                                tokens_per_s=tokens_per_step / max(step_s, 1e-9), memory_mb=memory_mb(device))
            if done % tc.eval_every == 0 or done == tc.steps:
                metrics = {"step": done, **evaluate(model, task, "val", tc.batch_size, tc.eval_batches, device,
                                                    tc.precision)}
                history.append(metrics)
                stopped = passed(metrics)
                if steps_log is not None:
                    steps_log.write_eval(done, metrics)
            if done % tc.checkpoint_every == 0 or done == tc.steps or stopped:
                checkpoint(done)
            shown = f"{metrics[task.info.metric]:.3f}" if task.info.metric in metrics else "—"
            bar.set_postfix(loss="—" if losses[-1] is None else f"{losses[-1]:.3f}", **{task.info.metric: shown},
                            tok_s=f"{done * tokens_per_step / max(train_s, 1e-9):.0f}")
            if stopped:
                break
    finally:
        if steps_log is not None:
            steps_log.close()
    steps_run = len(losses)  # every step taken, in this session and before the resume
    wall_s += time.perf_counter() - session_start
    result = {
        "config_hash": cfg.hash(),
        "metric": task.info.metric,
        "higher_is_better": task.info.higher_is_better,
        "final": history[-1] if history else {},
        "history": history,
        "losses": losses,
        "params": sum(p.numel() for p in model.parameters()),
        "tokens": steps_run * tokens_per_step,
        "steps_run": steps_run,
        "stopped_early": steps_run < tc.steps,
        "train_s": train_s,
        "wall_s": wall_s,
        "tokens_per_s": steps_run * tokens_per_step / train_s if train_s > 0 else 0.0,
        "versions": run_stamp,
    }
    if world.main:
        atomic_write_text(out / RESULT, json.dumps(result, indent=1))
    return result
