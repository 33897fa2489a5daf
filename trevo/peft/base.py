"""The fine-tuning loop the PEFT wrappers share: Adam on the wrapper's trainable parameters only, the
task's loss, batches from (seed, step) as in ``trevo.train``. No weight decay: decoupled decay would move
frozen entries that receive no gradient (PaFi's unmasked weights)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import create, get
from trevo.tasks.base import Task

if TYPE_CHECKING:
    from trevo.config import ComponentSpec


class PEFT:
    """Base class: ``parameters()`` are what fine-tuning trains; ``merge()`` returns the plain model.
    ``merges``: whether that model holds what fine-tuning learnt (PaFi, HiWi), so that a run trained with
    ``train.peft`` saves it and loads as a plain model of its config."""

    merges: ClassVar[bool] = True

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TrevoError("a PEFT wrapper takes a trevo model (an nn.Module, e.g. trevo.load(RUN)[0])")
        self.model = model

    def parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def __call__(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The logits of the model being fine-tuned."""
        return self.model(tokens, padding_mask)

    def train(self, mode: bool = True) -> PEFT:
        self.model.train(mode)
        return self

    def eval(self) -> PEFT:
        return self.train(False)

    def after_step(self) -> None:
        """Called after every optimizer step (PaFi keeps its unmasked entries fixed there)."""

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_same_vocabulary(model: nn.Module, task: Task) -> None:
    info = getattr(model, "info", None)
    if info is not None and (info.vocab_size != task.info.vocab_size or info.head != task.info.head):
        raise TrevoError(f"fine-tuning keeps the model's embeddings and head: its vocabulary ({info.vocab_size}, "
                         f"head {info.head!r}) must be the new task's ({task.info.vocab_size}, head "
                         f"{task.info.head!r})")


def fine_tune(peft: PEFT, task: Task, *, steps: int, batch_size: int = 8, lr: float = 1e-3, seed: int = 0
              ) -> list[float]:
    """Train ``peft``'s parameters on ``task`` for ``steps`` Adam steps; the losses, one per step."""
    check_same_vocabulary(peft.model, task)
    peft.train()
    for p in peft.model.parameters():
        p.requires_grad_(False)
    params = peft.parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    losses = []
    for step in range(steps):
        batch = task.train_batch(step, batch_size, seed)
        loss = task.loss(peft(batch["input"], batch.get("padding_mask")), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        peft.after_step()
        losses.append(loss.item())
    peft.eval()
    return losses


def build_peft(spec: ComponentSpec, model: nn.Module) -> PEFT:
    """``train.peft``: the wrapper ``spec`` names around ``model`` (checked by ``check_peft``), every parameter
    frozen but the wrapper's."""
    peft = create("peft", spec.name, model=model, **spec.options)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in peft.parameters():
        p.requires_grad_(True)
    return peft


def check_peft(spec: ComponentSpec | None, init_from: str | None) -> None:
    """Refuse, before a run directory is made, a ``train.peft`` without a model to fine-tune or one whose
    fine-tuned model a run cannot save."""
    if spec is None:
        return
    if not init_from:
        raise IncompatibleError(f"train.peft={spec.name} fine-tunes a trained model: set train.init_from to the run "
                                f"directory to fine-tune")
    if not get("peft", spec.name).factory.merges:
        raise IncompatibleError(f"train.peft={spec.name}: its fine-tuned model is the wrapper, not a trevo model of "
                                f"the run's config, so a run cannot save it; fine-tune it from Python "
                                f"(trevo.peft.base.fine_tune), or choose a peft that merges (pafi, hiwi)")


def load_run_weights(run_dir: str | Path, model: nn.Module) -> nn.Module:
    """The weights of the run ``run_dir`` into ``model`` (built from a config of the same model), merged when
    that run fine-tuned with ``train.peft``: its checkpoint holds the wrapper's state (HiWi's adapters beside
    the pre-trained weights), so the wrapper is rebuilt around ``model``, loaded and merged."""
    from trevo.checkpoint import CHECKPOINT, load_checkpoint
    from trevo.config import RunConfig

    config = Path(run_dir) / "config.yaml"
    spec = RunConfig.load(config).train.peft if config.is_file() else None
    peft = None if spec is None else create("peft", spec.name, model=model, **spec.options)
    load_checkpoint(Path(run_dir) / CHECKPOINT, model)
    return model if peft is None else peft.merge()
