"""Data parallelism under ``torchrun``: one process per device, the gradients averaged across processes
by ``torch.nn.parallel.DistributedDataParallel`` (``train.parallel=ddp``; Li et al. 2020, "PyTorch
Distributed: Experiences on Accelerating Data Parallel Training", arXiv 2006.15704), or the weights,
gradients and optimizer moments sharded between them by FSDP2's ``fully_shard`` (``train.parallel=fsdp``;
Zhao et al. 2023, "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel", arXiv 2304.11277),
each block a unit of its own, then the root.

The data order is the single-process run's: ``train.batch_size`` is the global batch, every process
draws the same global batch of the step (a batch is a function of (seed, step)) and keeps its own
contiguous slice of ``batch_size / world_size`` sequences. A task loss that is a mean over equally many
scored tokens per sequence (the language models) then averages to the single-process loss, so the
curves agree to rounding. Two things differ from one process by design: random draws inside the model
(dropout) come from each process's own generator, and a loss over a varying number of scored tokens
(a masked LM's masks) is averaged per process before it is averaged over processes. Only rank 0
writes the run directory (config, checkpoints, logs, result); every rank reads the checkpoint to resume.

An FSDP checkpoint is the single-process one: every rank gathers the full weights and moments
(``full_state``) and rank 0 writes them with ``trevo.checkpoint``'s atomic, checksummed safetensors file,
rather than ``torch.distributed.checkpoint``'s folder of per-rank shards. One format for every run means a
run checkpointed under FSDP resumes, evaluates, generates and exports like any other (and on another
number of processes); gathering is exact, so resume stays bitwise. The cost, a full copy in rank 0's
memory at each checkpoint, is what DCP exists to avoid on models far larger than trevo's.

CUDA uses the NCCL backend, one device per process (``cuda:LOCAL_RANK``); the CPU uses gloo.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, distribute_tensor

from trevo.validation import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """The device of this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process)."""
        if self.size > 1 and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


def setup(parallel: str, device: str, batch_size: int) -> World:
    """The world of this run, with the process group started when there is more than one process."""
    size = _env_int("WORLD_SIZE", 1)
    if parallel == "none":
        if size > 1:
            raise ConfigError(f"this process is one of {size} (torchrun, WORLD_SIZE={size}) but train.parallel=none, "
                              f"so each would train the whole run alone; set train.parallel=ddp or fsdp")
        return World()
    world = World(_env_int("RANK", 0), size, _env_int("LOCAL_RANK", 0))
    if size == 1:
        return world  # `trevo train` without torchrun: one process, nothing to average
    if batch_size % size:
        raise ConfigError(f"train.batch_size={batch_size} is the global batch, split between {size} processes; "
                          f"choose a multiple of {size}")
    if device.startswith("cuda") and device != "cuda":
        raise ConfigError(f"train.device={device} under torchrun: each process takes its own GPU (cuda:LOCAL_RANK); "
                          f"write train.device=cuda, and choose the GPUs with CUDA_VISIBLE_DEVICES")
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return world


def teardown(world: World) -> None:
    """Destroy the process group once nothing holds its work: the caller drops its sharded model, whose
    DTensors and mesh are collected here first (gloo aborts a process whose group dies with work still held,
    "terminate called without an active exception")."""
    if world.size > 1 and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, world: World, device: str, parallel: str = "ddp") -> torch.nn.Module:
    """The model that trains: ``model`` under DistributedDataParallel when there are several processes
    (under fsdp, ``shard_fully`` has already made ``model`` itself the model that trains)."""
    if world.size == 1 or parallel == "fsdp":
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    # find_unused_parameters: some components leave parameters out of a step (a gate on a path not taken,
    # a memory a batch does not read); without it DDP waits for their gradients forever and fails the run
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def shard_fully(model: torch.nn.Module, optimizer: torch.optim.Optimizer, world: World, device: str) -> None:
    """FSDP2: ``fully_shard`` each of ``model.blocks``, then the root, in place (the parameters become
    DTensors sharded along dim 0, under the same names); ``optimizer`` is pointed at the shards, its state
    (a resumed run's, loaded whole into every rank) sharded the same way."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    names = {id(p): n for n, p in model.named_parameters()}
    state = optimizer.state_dict()
    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (world.size,))
    blocks = getattr(model, "blocks", None)
    for block in blocks if isinstance(blocks, torch.nn.ModuleList) else []:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    params = dict(model.named_parameters())
    for group in optimizer.param_groups:
        group["params"] = [params[names[id(p)]] for p in group["params"]]
    flat = [p for group in optimizer.param_groups for p in group["params"]]  # optimizer.state_dict's numbering
    state["state"] = {i: {k: _like(v, flat[i]) for k, v in moments.items()} for i, moments in state["state"].items()}
    optimizer.load_state_dict(state)  # keyed by the new parameters; the old ones' state is dropped


def _like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """An optimizer moment of ``param``'s full shape, sharded as ``param`` is (a step count stays whole)."""
    if isinstance(param, DTensor) and value.shape == param.shape:
        return distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
    return value


def full(value: Any) -> Any:
    """``value`` whole on every rank: a DTensor's shards gathered (a collective: every rank calls it, in the
    same order); anything else as it is."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor],
                                                                                  dict[str, Any]]:
    """The model's and the optimizer's state dicts with every shard gathered: the single-process run's
    checkpoint, tensor for tensor (every rank calls it; rank 0 writes it)."""
    weights = {k: full(v) for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    opt_state["state"] = {i: {k: full(v) for k, v in s.items()} for i, s in opt_state["state"].items()}
    return weights, opt_state


def shard(batch: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """This process's contiguous slice of the global batch (every tensor of a batch is batch-first)."""
    if world.size == 1:
        return batch
    per = next(iter(batch.values())).shape[0] // world.size
    return {k: v[world.rank * per:(world.rank + 1) * per] for k, v in batch.items()}


def mean(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a scalar over the processes (every rank gets it: the same loss is logged and
    checked for divergence everywhere, so that all stop together)."""
    if world.size == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world.size

