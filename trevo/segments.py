"""Segment-level training and evaluation: a long stream cut into consecutive segments, with a memory
carried from segment to segment (Transformer-XL, RMT, Memorizing Transformer, Block-Recurrent …).

A task whose ``info.segments`` is S > 1 yields streams: every batch row is S·``seq_len`` tokens long,
and ``seq_len`` is the length of one segment. ``trevo train`` then takes ``train.bptt_segments`` = k
consecutive segments per optimizer step: step ``s`` reads stream ``s // ⌈S/k⌉`` (``task.train_batch``
of that index, so batches stay a function of (seed, index)) and its segments ``(s mod ⌈S/k⌉)·k …``;
the gradient flows through the memory across those k segments (truncated back-propagation through
time, as RMT trains) and the memory is detached between steps (Transformer-XL's stop-gradient). The
memory left at the end of a step is saved in the checkpoint, so a resumed run continues bit for bit.
Evaluation runs every stream whole, segment by segment, from an empty memory.

The memory contract (a model's own): ``init_memory(batch, device, dtype) -> Memory`` and
``forward_memory(tokens, memory) -> (logits, memory)``, a Memory being a flat ``dict[str, Tensor]``
(what a checkpoint stores). A metaformer whose every mixer has a constant-size state (``recurrent``
in the registry: RetNet, Mamba, GLA …) carries its generation state; any other model has no memory
and sees each segment alone (the "no memory" baseline).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from trevo.models.layers import resolve_layers
from trevo.models.metaformer import MetaFormer
from trevo.registry import get
from trevo.tasks.base import Batch, Task
from trevo.validation import ConfigError

Memory = dict[str, torch.Tensor]


def _carries_state(model: nn.Module) -> bool:
    if type(model) is not MetaFormer or not model.causal:
        return False
    return all(get("mixer", layer.mixer.name).recurrent for layer in resolve_layers(model.cfg))


def memory_kind(model: nn.Module) -> str:
    """``model`` (its own ``forward_memory``), ``state`` (a recurrent metaformer's generation state) or ``none``."""
    if callable(getattr(model, "forward_memory", None)):
        return "model"
    return "state" if _carries_state(model) else "none"


def flatten(tree: Any, prefix: str = "") -> Memory:
    """The tensors of a nested dict / list (ints become 0-d int64 tensors), keyed by their dotted path."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    elif isinstance(tree, int):
        return {prefix: torch.tensor(tree, dtype=torch.int64)}
    else:
        return {prefix: tree}
    out: Memory = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def unflatten(flat: Memory, template: Any, prefix: str = "") -> Any:
    """The nested structure of ``template`` filled from ``flat`` (the inverse of ``flatten``)."""
    if isinstance(template, dict):
        return {k: unflatten(flat, v, f"{prefix}.{k}" if prefix else str(k)) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return [unflatten(flat, v, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(template)]
    if isinstance(template, int):
        return int(flat[prefix])
    return flat[prefix]


def init_memory(model: nn.Module, batch: int, device: torch.device | str, dtype: torch.dtype) -> Memory:
    kind = memory_kind(model)
    if kind == "model":
        return model.init_memory(batch, device, dtype)
    if kind == "state":
        return flatten(model.init_state(batch, device, dtype))
    return {}


def forward_segment(model: nn.Module, tokens: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, Memory]:
    """The logits of one segment after the context held in ``memory``, and the memory after it."""
    kind = memory_kind(model)
    if kind == "model":
        return model.forward_memory(tokens, memory)
    if kind == "state":
        template = model.init_state(tokens.shape[0], tokens.device, model.embed.weight.dtype)
        logits, state = model.prefill(tokens, unflatten(memory, template))
        return logits, flatten(state)
    return model(tokens), memory


def detach(memory: Memory) -> Memory:
    """The stop-gradient between optimizer steps: the same values, no graph behind them."""
    return {k: v.detach() for k, v in memory.items()}


def segment_of(batch: Batch, seg_len: int, lo: int, hi: int) -> Batch:
    """Segments ``lo … hi − 1`` of a stream batch (every tensor sliced along time)."""
    return {k: v[:, lo * seg_len:hi * seg_len] for k, v in batch.items()}


def steps_per_stream(task: Task, bptt_segments: int) -> int:
    return math.ceil(task.info.segments / bptt_segments)


def check_segments(task: Task, bptt_segments: int, objective: object = None) -> None:
    """Refuse a segment-level setting the task cannot take: more BPTT segments than its streams have, or
    an objective of its own (segmented streams train on the task's loss, segment by segment)."""
    if task.info.segments > 1 and objective is not None:
        raise ConfigError(f"train.objective={getattr(objective, 'name', objective)!r} on a task of segmented "
                          f"streams ({task.info.segments} segments): these train on the task's own loss; "
                          f"leave train.objective unset")
    if bptt_segments > task.info.segments:
        raise ConfigError(f"train.bptt_segments={bptt_segments} but the task's streams have "
                          f"{task.info.segments} segment(s); use train.bptt_segments <= {task.info.segments}")


def run_stream(model: nn.Module, batch: Batch, seg_len: int, lo: int, hi: int, memory: Memory
               ) -> tuple[torch.Tensor, Memory]:
    """The logits of segments ``lo … hi − 1`` of ``batch`` (concatenated along time) and the memory after."""
    logits = []
    for s in range(lo, hi):
        out, memory = forward_segment(model, batch["input"][:, s * seg_len:(s + 1) * seg_len], memory)
        logits.append(out)
    return torch.cat(logits, dim=1), memory


def train_segments(model: nn.Module, task: Task, step: int, batch_size: int, seed: int, bptt_segments: int,
                   memory: Memory | None, device: str) -> tuple[torch.Tensor, Batch, Memory]:
    """The logits of training step ``step``, its batch (those segments of the stream) and the memory
    after them; ``memory`` None (or the first step of a stream) starts from an empty memory."""
    per_stream = steps_per_stream(task, bptt_segments)
    stream, part = divmod(step, per_stream)
    batch = {k: v.to(device) for k, v in task.train_batch(stream, batch_size, seed).items()}
    if part == 0 or memory is None:
        memory = init_memory(model, batch_size, device, model_dtype(model))
    seg_len, lo = task.info.seq_len, part * bptt_segments
    hi = min(task.info.segments, lo + bptt_segments)
    logits, memory = run_stream(model, batch, seg_len, lo, hi, memory)
    return logits, segment_of(batch, seg_len, lo, hi), memory


def model_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


@torch.no_grad()
def evaluate_streams(model: nn.Module, task: Task, split: str, batch_size: int, n_batches: int,
                     device: str = "cpu") -> dict[str, float]:
    """``task``'s metrics over whole streams, each run segment by segment from an empty memory."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for batch in task.eval_batches(split, batch_size, n_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        memory = init_memory(model, batch["input"].shape[0], device, model_dtype(model))
        logits, _ = run_stream(model, batch, task.info.seq_len, 0, task.info.segments, memory)
        for key, value in task.score(logits, batch).items():
            totals[key] = totals.get(key, 0.0) + value
    model.train(was_training)
    return task.finalize(totals)
