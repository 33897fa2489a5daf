"""The fine-tuning loop the PEFT wrappers share: Adam on the wrapper's trainable parameters only, the
task's loss, batches from (seed, step) as in ``trevo.train``. No weight decay: decoupled decay would move
frozen entries that receive no gradient (PaFi's unmasked weights)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.errors import TrevoError
from trevo.tasks.base import Task


class PEFT:
    """Base class: ``parameters()`` are what fine-tuning trains; ``merge()`` returns the plain model."""

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
