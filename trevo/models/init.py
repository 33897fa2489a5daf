"""Weight initialisation shared by every model: a unit-scale residual stream.

Linear layers are LeCun-normal (std 1/√fan_in, the default of JAX/Haiku and of the Perceiver papers),
so a projection of a normalised input has unit-scale outputs at any width. A fixed std of 0.02
(GPT-2's, chosen for d_model = 768) is six times smaller than 1/√d at d_model = 64: attention scores
start nearly flat, the query-key product (of two such matrices) gets almost no gradient, and
attention sits for thousands of steps on a plateau before it learns to retrieve (MQAR at d_model 64
stayed near the 1/N plateau, 0.17 for N = 8, for 8000 steps).

Token embeddings follow the original Transformer (Vaswani et al. 2017, §3.4): a table E of std
1/√d, read as √d·E[token] (unit scale), and an output head tied to it reads the same E, so tied
logits start at unit scale like an untied LeCun head's, and Adam moves E at the rate it moves any
other 1/√d matrix (a tied N(0, 1) table learns its output role d^½ times slower and stalls MQAR).
Other embeddings and learned position tables are N(0, 1).
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.positions import LearnedPosition


class ScaledEmbedding(nn.Embedding):
    """Token embedding of std 1/√d read as √d·E[token] (Vaswani et al. 2017, §3.4); its ``weight``
    can be shared with the output head."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return super().forward(tokens) * self.embedding_dim ** 0.5


def init_unit_scale(module: nn.Module) -> None:
    """``model.apply(init_unit_scale)``: LeCun-normal linears with zero bias, token embeddings as
    above, other embeddings and learned positions N(0, 1). Components' own parameters (decays,
    filters, gates) keep their papers' initialisations, and so do the modules a component marked with
    ``trevo.components.base.keep_init``."""
    if getattr(module, "keeps_init", False):
        return
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=module.in_features ** -0.5)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, ScaledEmbedding):
        nn.init.normal_(module.weight, std=module.embedding_dim ** -0.5)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=1.0)
    elif isinstance(module, LearnedPosition):
        nn.init.normal_(module.table, std=1.0)
