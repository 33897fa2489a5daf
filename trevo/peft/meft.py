"""MEFT, memory-efficient fine-tuning by making the pre-trained model reversible (Liao, Tan, Monz 2023,
"Make Pre-trained Model Reversible: From Parameter to Memory Efficient Fine-Tuning", arXiv:2306.00477,
§3, the MEFT₁ architecture of Fig. 4c).

Every pre-trained block becomes one reversible (RevNet) coupling of two streams::

    y1 = λ·x1 + F(x2),   F = the frozen pre-trained block + an adapter (down, ReLU, up) beside it,
    y2 = β·x2 + G(y1),   G = an adapter,

the next layer reading (x1, x2) ← (y2, y1), both streams starting from the embeddings and the last y1 going
to the final norm and the head. As λ → 0 with the adapters near 0, y1 is the pre-trained block applied to
the previous y1: the pre-trained model's starting point is kept (the paper's key condition), and the
coupling stays exactly invertible, x2 = (y2 − G(y1))/β, x1 = (y1 − F(x2))/λ. Training therefore keeps no
activations of the blocks: the backward pass rebuilds each layer's inputs from its outputs and
recomputes it (``ReversibleStack``), so activation memory does not grow with depth. Only the adapters train;
the pre-trained weights are never changed, so dropping the wrapper gives back the original model exactly.

Defaults: λ = 0.1, β = 1, adapter width ``low_rank_dim`` = 8, adapter weights drawn from N(0, 0.02²) as in
the paper (Fig. 4). Deviations: MEFT₁ only (not MEFT₂/₃); the streams are not averaged at the output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trevo.errors import IncompatibleError, TrevoError
from trevo.peft.base import PEFT
from trevo.registry import Paper, register

MEFT_PAPER = Paper("Make Pre-trained Model Reversible: From Parameter to Memory Efficient Fine-Tuning",
                   "2306.00477", 2023)


class Adapter(nn.Module):
    """A bottleneck adapter x ↦ ReLU(x W_down) W_up, weights from N(0, 0.02²) (MEFT's initialisation)."""

    def __init__(self, d_model: int, low_rank_dim: int) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, low_rank_dim, bias=False)
        self.up = nn.Linear(low_rank_dim, d_model, bias=False)
        for weight in (self.down.weight, self.up.weight):
            nn.init.normal_(weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


class ReversibleLayer(nn.Module):
    """One MEFT₁ coupling around a frozen pre-trained ``block``."""

    def __init__(self, block: nn.Module, d_model: int, low_rank_dim: int, lam: float, beta: float) -> None:
        super().__init__()
        self.block, self.lam, self.beta = block, lam, beta
        self.f_adapter, self.g_adapter = Adapter(d_model, low_rank_dim), Adapter(d_model, low_rank_dim)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, None, (x.shape[1],)) + self.f_adapter(x)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y1 = self.lam * x1 + self.f(x2)
        return y1, self.beta * x2 + self.g_adapter(y1)

    def inverse(self, y1: torch.Tensor, y2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x2 = (y2 - self.g_adapter(y1)) / self.beta
        return (y1 - self.f(x2)) / self.lam, x2


class ReversibleStack(torch.autograd.Function):
    """The layers run forward without keeping activations; backward rebuilds each layer's inputs from its
    outputs (``ReversibleLayer.inverse``), recomputes it and back-propagates through it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layers: nn.ModuleList, *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x1, x2 = x, x
            for layer in layers:
                y1, y2 = layer(x1, x2)
                x1, x2 = y2, y1  # the next layer's F reads the stream that carries the pre-trained model
        ctx.layers = layers
        ctx.save_for_backward(x1, x2)
        return x2

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        layers: nn.ModuleList = ctx.layers
        x1, x2 = ctx.saved_tensors
        params = [p for layer in layers for p in layer.parameters() if p.requires_grad]
        grads = {id(p): torch.zeros_like(p) for p in params}
        g1, g2 = torch.zeros_like(grad_out), grad_out  # the grads of the last (x1, x2) = (y2, y1)
        for layer in reversed(layers):
            y1, y2, gy1, gy2 = x2, x1, g2, g1
            with torch.no_grad():
                x1, x2 = layer.inverse(y1, y2)
            with torch.enable_grad():
                a, b = x1.detach().requires_grad_(), x2.detach().requires_grad_()
                r1, r2 = layer(a, b)
                own = [p for p in layer.parameters() if p.requires_grad]
                found = torch.autograd.grad((r1, r2), (a, b, *own), (gy1, gy2), allow_unused=True)
            g1, g2 = found[0], found[1]
            for p, g in zip(own, found[2:], strict=True):
                if g is not None:
                    grads[id(p)] += g
        return (g1 + g2, None, *(grads[id(p)] for p in params))


@register("peft", "meft", paper=MEFT_PAPER, category="Peft", family="meft")
class MEFT(PEFT):
    """MEFT₁ (Liao et al. 2023, §3, Fig. 4c): every block a reversible coupling y1 = λx1 + F(x2), y2 = βx2 + G(y1)
    with adapters; activations are recomputed from the outputs in backward; only the adapters train."""

    merges = False  # the adapters live in the reversible wrapper; the merged model is the original one

    def __init__(self, model: nn.Module, *, lam: float = 0.1, beta: float = 1.0, low_rank_dim: int = 8) -> None:
        super().__init__(model)
        if not all(hasattr(model, a) for a in ("blocks", "_embed", "_head")):
            raise IncompatibleError("meft wraps a metaformer (its blocks become reversible couplings)")
        if lam <= 0 or beta <= 0 or low_rank_dim < 1:
            raise TrevoError(f"meft needs lam > 0 and beta > 0 (the coupling is inverted by dividing by them) and "
                             f"low_rank_dim ≥ 1; got lam={lam}, beta={beta}, low_rank_dim={low_rank_dim}")
        d = model.cfg.d_model
        dtype = model.embed.weight.dtype
        self.layers = nn.ModuleList(ReversibleLayer(b, d, low_rank_dim, lam, beta) for b in model.blocks).to(dtype)
        self.memory_efficient = True  # False: plain autograd through the couplings (the reference in the tests)

    def parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for a in (layer.f_adapter, layer.g_adapter) for p in a.parameters()]

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final y1 stream ``[B, T, d]`` (before the final norm)."""
        x = self.model._embed(tokens)
        if self.memory_efficient and torch.is_grad_enabled():
            return ReversibleStack.apply(x, self.layers, *[p for p in self.layers.parameters() if p.requires_grad])
        x1, x2 = x, x
        for layer in self.layers:
            y1, y2 = layer(x1, x2)
            x1, x2 = y2, y1
        return x2

    def __call__(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model._head(self.hidden(tokens), padding_mask)

    def train(self, mode: bool = True) -> MEFT:
        self.model.train(mode)
        self.layers.train(mode)
        return self

    def merge(self) -> nn.Module:
        """The original model, unchanged (MEFT never edits the pre-trained weights)."""
        return self.model
