"""MetaFormer: one block with the token mixer as a plug-in (Yu et al., "MetaFormer Is Actually What
You Need for Vision", arXiv:2111.11418), with heads for causal LM, masked LM and classification.

The block is ``x = x + mixer(norm1(x)); x = x + channel(norm2(x))`` with the default ``prenorm``
residual; ``model.residual`` names another placement (postnorm, sandwich, rezero, deepnorm …) and
``model.layers`` gives each layer its own mixer, channel, norm, residual and position (hybrids):
``trevo.models.layers``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.init import ScaledEmbedding, init_unit_scale
from trevo.models.layers import build_blocks, check_model, resolve_max_len, run_profiling
from trevo.models.tokens import apply_head, attach_vocabulary, embed_tokens, output_head
from trevo.registry import Paper, build, create, register
from trevo.tasks.base import TaskInfo


def check_compatible(cfg: ModelConfig, info: TaskInfo) -> bool:
    """Every build-time check, without building (``trevo.models.layers.model_problems``): raises one
    IncompatibleError listing every problem; returns whether the model will be causal."""
    return check_model(cfg, info)


@register("model", "metaformer", paper=Paper("MetaFormer Is Actually What You Need for Vision",
                                              "2111.11418", 2021), category="Arch", family="metaformer")
class MetaFormer(nn.Module):
    """Embedding (+ absolute position) → N blocks → final norm → head (lm, mlm or classify)."""

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        self.cfg, self.info = cfg, info
        self.causal = check_compatible(cfg, info)
        d = cfg.d_model
        self.embed = ScaledEmbedding(info.vocab_size, d)
        max_len = resolve_max_len(cfg, info)
        position = build("position", cfg.position.name, cfg.position.options, d_model=d, max_len=max_len)
        if hasattr(position, "out_width") and position.out_width(d) != d:  # refused here, not at the first forward
            raise IncompatibleError(f"position {cfg.position.name!r} concatenates features, widening the input, "
                                    f"and the metaformer adds its position to the embeddings; set "
                                    f"model.position.combine=add")
        # A relative position acts inside the mixers: each layer builds its own (trevo.models.layers).
        self.position = None if getattr(position, "applies", "absolute") == "relative" else position
        attach_vocabulary(self.position, info.vocab_size)
        self.blocks, self.score_carry = build_blocks(cfg, causal=self.causal, max_len=max_len,
                                                     layout=info.layout or (info.seq_len,), dropout=cfg.dropout)
        # A block that ends in a norm (post-norm and friends) leaves the model no final norm to add.
        ends_in_norm = self.blocks[-1].residual.ends_in_norm if len(self.blocks) else False
        self.norm = nn.Identity() if ends_in_norm else build("norm", cfg.norm.name, cfg.norm.options, d_model=d)
        self.head = output_head(d, info, self.embed, cfg.tie_embeddings)
        self.apply(init_unit_scale)
        for block in self.blocks:
            block.initialize()
        run_profiling(self, self.blocks, info)

    def _reset_scores(self) -> None:
        if self.score_carry is not None:
            self.score_carry.scores = None

    def _embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return embed_tokens(tokens, self.embed, self.position, self.info.vocab_size, offset)

    def _head(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        return apply_head(self.head, self.info, self.norm(x), padding_mask)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` (lm, mlm) or ``[B, n_classes]`` (classify)."""
        self._reset_scores()
        x = self._embed(tokens)
        layout = self.info.layout if self.info.layout and len(self.info.layout) > 1 else (tokens.shape[1],)
        for block in self.blocks:
            x = block(x, padding_mask, layout)
        return self._head(x, padding_mask)

    # Recurrent generation through every block's prefill/step (causal LM only).
    def init_state(self, batch: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        if not self.causal:
            raise IncompatibleError("recurrent generation needs a causal model")
        return {"offset": 0, "layers": [b.init_state(batch, device, dtype) for b in self.blocks]}

    def prefill(self, tokens: torch.Tensor, state: dict[str, Any] | None = None
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device, self.embed.weight.dtype)
        self._reset_scores()
        x = self._embed(tokens, state["offset"])
        layers = []
        for block, layer_state in zip(self.blocks, state["layers"], strict=True):
            x, layer_state = block.prefill(x, layer_state)
            layers.append(layer_state)
        return self._head(x, None), {"offset": state["offset"] + tokens.shape[1], "layers": layers}

    def step(self, token: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """token ``[B]`` → logits ``[B, vocab]`` for the next position."""
        self._reset_scores()
        x = self._embed(token[:, None], state["offset"])[:, 0]
        layers = []
        for block, layer_state in zip(self.blocks, state["layers"], strict=True):
            x, layer_state = block.step(x, layer_state)
            layers.append(layer_state)
        return self._head(x[:, None], None)[:, 0], {"offset": state["offset"] + 1, "layers": layers}

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(cfg: ModelConfig, info: TaskInfo) -> nn.Module:
    """The model named by ``cfg.arch`` for a task described by ``info``."""
    if info.models and cfg.arch not in info.models:
        raise IncompatibleError(f"this task needs model.arch to be one of {', '.join(info.models)}, "
                                f"got {cfg.arch!r}")
    return create("model", cfg.arch, cfg=cfg, info=info)
