"""Complex-valued word embeddings that encode order (Wang et al., "Encoding word order in complex
embeddings", ICLR 2020, arXiv:1912.12333).

A word j at position p is the complex vector f(j, p) = r_j ⊙ exp(i(ω_j p + θ_j)) (§3, eq. 3): a per-word
amplitude r_j, frequency ω_j and initial phase θ_j in every dimension. It is the general solution of the
paper's two properties: bounded, and f(j, p + k) = w(j, k) ⊙ f(j, p) with w(j, k) = exp(i ω_j k) independent
of p (Property 1, the position-free offset transformation: an element-wise phase rotation).

trevo feeds a real-valued model the real and imaginary parts side by side, [Re f ; Im f], the half-split
layout of ``trevo.components.rotary`` (d_model/2 complex dimensions). The complex amplitude at position
0, r_j e^{iθ_j} = a_j + i b_j, is the model's own token embedding e_j = [a_j ; b_j] (polar to Cartesian,
the same function class), so only ω_j is a table of its own and a tied output head reads e_j; at
position p the embedding is e_j with each pair (a, b) rotated by ω_j p.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.positions import AbsolutePosition
from trevo.components.rotary import rotate_by
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import Paper, register


@register("position", "complex_order", category="Pe", family="complex_embeddings", applies="absolute",
          paper=Paper("Encoding word order in complex embeddings", "1912.12333", 2020))
class ComplexOrderEmbedding(AbsolutePosition):
    """f(j, p) = r_j e^{i(ω_j p + θ_j)} per dimension (Wang et al. 2020, eq. 3), as [Re ; Im] of d_model/2
    complex dimensions: the token embedding [a_j ; b_j] = [r_j cos θ_j ; r_j sin θ_j] rotated pairwise by
    the per-word angle ω_j p. ω_j starts at the sinusoidal frequencies base^(−2i/d) for every word and is
    learned per word. The model calls ``attach(vocab_size=)`` once (ω is a table over the vocabulary)."""

    acts_on_words = True

    def __init__(self, d_model: int, base: float = 10000.0) -> None:
        super().__init__()
        if d_model % 2:
            raise IncompatibleError(f"complex_order pairs real and imaginary parts, so d_model must be even; "
                                    f"got {d_model}")
        self.d_model, self.base = d_model, base
        self.frequency: nn.Parameter | None = None

    def attach(self, *, vocab_size: int) -> None:
        half = self.d_model // 2
        start = self.base ** (-torch.arange(half, dtype=torch.float64) * 2 / self.d_model)
        # a Parameter, not an nn.Embedding: the model's init redraws embeddings, and ω keeps this start
        self.frequency = nn.Parameter(start.expand(vocab_size, half).to(torch.get_default_dtype()).clone())

    def embed_words(self, embedded: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The embeddings ``[B, T, d]`` of ``tokens`` at ``positions`` ``[T]``, from their position-0
        embeddings ``embedded`` (the token embedding)."""
        if self.frequency is None:
            raise TrevoError("complex_order learns a frequency per word and is attached to the vocabulary by the "
                             "model that embeds the tokens; this model did not attach it: use it as "
                             "model.position of a metaformer")
        # ω p in float64: the angle of a long context keeps its precision before the cast
        omega = nn.functional.embedding(tokens, self.frequency).to(torch.float64)
        angles = omega * positions.to(torch.float64)[:, None]
        return rotate_by(embedded, angles.to(embedded.dtype))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        raise TrevoError("complex_order is a function of the word and its position, not of the position alone; "
                         "the model applies it to the token embeddings (embed_words)")
