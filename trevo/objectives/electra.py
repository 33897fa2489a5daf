"""ELECTRA's replaced-token detection (Clark, Luong, Le, Manning 2020, "ELECTRA: Pre-training Text
Encoders as Discriminators Rather Than Generators", arXiv:2003.10555, §2).

A small generator G, a masked LM, fills the masked positions M of the task's corrupted input x̃ with
samples x̂_t ~ p_G(· | x̃) (t ∈ M); the corrupted sequence x^c is x with x_t replaced by x̂_t at M. The
model being trained is the discriminator D: at every position it predicts whether x^c_t is replaced,
D(x^c, t) = σ(wᵀ h_D(x^c)_t) (§2). A sample equal to the original counts as original.
The loss (§2, the combined objective)::

    L = L_MLM(x, θ_G) + λ · L_Disc(x, θ_D),
    L_Disc = −(1/T) Σ_t [1(x^c_t = x_t) log(1 − D(x^c, t)) + 1(x^c_t ≠ x_t) log D(x^c, t)].

No gradient flows from the discriminator into the generator through the sampling (the paper does not
back-propagate through it). Paper defaults kept: λ = 50, 15% of the positions masked (the task's
``mask_rate``), a generator 1/4 of the discriminator's width (1/4–1/2 of it worked best),
sampling at temperature 1. Deviations: the generator has its own embeddings (the paper shares the token
and position embeddings) and the task's BERT corruption (80/10/10) is the generator's input; the
discriminator's own masked-LM head (``model.head``) is not trained, so the task's metric (read from that
head) is not ELECTRA's quality: evaluation adds ``rtd_accuracy`` (the discriminator's) and ``generator_bpb``
(the generator's masked LM); fine-tune the discriminator (``train.init_from``) to measure it downstream.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trevo.errors import IncompatibleError
from trevo.objectives.likelihood import Objective
from trevo.registry import Paper, create, register
from trevo.tasks.base import Batch, Task, cross_entropy

ELECTRA = Paper("ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators", "2003.10555", 2020)


def generator_width(d_model: int, size: float, n_heads: int) -> int:
    """The generator's width: ``size`` × ``d_model``, rounded to a multiple of the heads (at least one per head)."""
    return max(n_heads, round(d_model * size / n_heads) * n_heads)


@register("objective", "electra", paper=ELECTRA, category="Pretrain", family="electra")
class ELECTRA(Objective):
    """Replaced-token detection (Clark et al. 2020, §2): L = L_MLM(G) + λ·L_Disc(D), the discriminator
    (the trained model) classifying each token of the generator-corrupted input as original or replaced."""

    heads = ("mlm",)

    def __init__(self, task: Task, model: nn.Module, *, disc_weight: float = 50.0, generator_size: float = 0.25,
                 generator_layers: int | None = None) -> None:
        super().__init__(task, model)
        cfg = getattr(model, "cfg", None)
        if not isinstance(getattr(model, "head", None), nn.Linear) or cfg is None:
            raise IncompatibleError("objective 'electra' reads the discriminator's final hidden states at its output "
                                    "layer `head`: use model.arch=metaformer (or another model with a linear head)")
        if not 0 < generator_size <= 1 or disc_weight < 0:
            raise IncompatibleError(f"objective 'electra': generator_size must lie in (0, 1] and disc_weight be ≥ 0; "
                                    f"got generator_size={generator_size}, disc_weight={disc_weight}")
        n_heads = getattr(model.blocks[0].mixer, "n_heads", 1) if hasattr(model, "blocks") else 1
        width = generator_width(cfg.d_model, generator_size, n_heads)
        gen_cfg = dataclasses.replace(cfg, d_model=width, n_layers=generator_layers or cfg.n_layers)
        self.generator = create("model", cfg.arch, cfg=gen_cfg, info=task.info)
        self.detector = nn.Linear(cfg.d_model, 1)  # w of D(x, t) = σ(wᵀ h_D(x)_t)
        self.disc_weight = disc_weight
        self.mask_id = getattr(task, "mask_id", None)

    def sample_replacements(self, gen_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """x^c: the original tokens, with a sample of p_G (never the mask token) at the masked positions."""
        logits = gen_logits.detach().float()
        if self.mask_id is not None and self.mask_id < logits.shape[-1]:
            logits[..., self.mask_id] = float("-inf")
        sampled = torch.distributions.Categorical(logits=logits).sample()
        return torch.where(batch["loss_mask"].bool(), sampled, batch["target"])

    def discriminate(self, model: nn.Module, tokens: torch.Tensor, padding_mask: torch.Tensor | None
                     ) -> torch.Tensor:
        """The logits wᵀ h_D(x)_t ``[B, T]`` of 'replaced' (h_D: the input of the model's output layer)."""
        seen: list[torch.Tensor] = []
        hook = model.head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
        try:
            model(tokens, padding_mask)
        finally:
            hook.remove()
        return self.detector(seen[0]).squeeze(-1)

    def terms(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        """The generator's MLM loss, the discriminator's loss and what they were computed from."""
        padding_mask = batch.get("padding_mask")
        gen_logits = self.generator(batch["input"], padding_mask)
        corrupted = self.sample_replacements(gen_logits, batch)
        replaced = corrupted != batch["target"]
        scores = self.discriminate(model, corrupted, padding_mask)
        real = torch.ones_like(replaced) if padding_mask is None else padding_mask.bool()
        bce = F.binary_cross_entropy_with_logits(scores.float(), replaced.float(), reduction="none")
        return {"gen_loss": cross_entropy(gen_logits, batch), "disc_loss": (bce * real).sum() / real.sum().clamp_min(1),
                "corrupted": corrupted, "replaced": replaced, "scores": scores}

    @torch.no_grad()
    def score(self, model: nn.Module, batch: Batch) -> dict[str, float]:
        """Evaluation sums: replaced-token detection hits (D > 0.5 where replaced) and the generator's NLL, from
        replacements drawn with a fixed seed (evaluation leaves the training RNG untouched)."""
        devices = [batch["target"].device] if batch["target"].is_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            terms = self.terms(model, batch)
        real = torch.ones_like(terms["replaced"]) if "padding_mask" not in batch else batch["padding_mask"].bool()
        hits = ((terms["scores"] > 0) == terms["replaced"]) & real
        masked = batch["loss_mask"].bool().sum()
        return {"rtd_correct": float(hits.sum()), "rtd_count": float(real.sum()),
                "generator_nll": float(terms["gen_loss"] * masked), "generator_count": float(masked)}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        """rtd_accuracy (the discriminator's) and generator_bpb (the generator's masked-LM bits per token)."""
        return {"rtd_accuracy": totals["rtd_correct"] / max(totals["rtd_count"], 1),
                "generator_bpb": totals["generator_nll"] / max(totals["generator_count"], 1) / math.log(2)}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        terms = self.terms(model, batch)
        return terms["gen_loss"] + self.disc_weight * terms["disc_loss"]
