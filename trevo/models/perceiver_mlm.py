"""The Perceiver IO masked language model in the layout of the published language Perceiver
(Jaegle et al., "Perceiver IO: A General Architecture for Structured Inputs & Outputs",
arXiv:2107.14795, §4.1 and Appendix F; Hugging Face's ``PerceiverForMaskedLM``), so that its
checkpoints import exactly (``trevo import hf``).

    x = E[tokens] + P_in[positions]                                  (inputs, width embed_dim)
    z = CrossAttend(latents, x)                                      (latents N × d_model)
    z = [latent blocks] × n_blocks, one set of blocks shared by every repeat
    y = CrossAttend(P_out[positions], z)                             (one query per output position)
    logits = y Eᵀ + b                                               (the input embedding, transposed)

Each ``CrossAttend(q, kv)``: a = W_o·softmax(Q Kᵀ/√d_h) V with Q = W_q LN(q) + b, K = W_k LN(kv) + b,
V = W_v LN(kv) + b (widths ``qk_dim``, ``v_dim``; biases throughout), ``z = a (+ q)``, then
``z + MLP(LN(z))``. The latent blocks are trevo MetaFormer blocks (``model.mixer``, ``model.channel``,
``model.norm``), bidirectional. The decoder of each output position reads the latents only, so logits
at a position do not depend on which other positions are decoded or on the input length.
``model.options`` holds the rest (``OPTIONS``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trevo.components.multihead import merge_heads, split_heads
from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import model_options, resolve_max_len
from trevo.models.perceiver import latent_blocks
from trevo.models.tokens import attach_vocabulary, embed_tokens
from trevo.ops.cross_attention import cross_attention, cross_attention_weights
from trevo.registry import Paper, build, get, register
from trevo.tasks.base import TaskInfo

OPTIONS: dict[str, Any] = {
    "n_latents": 256, "embed_dim": None, "n_blocks": 1,
    "cross_heads": 8, "cross_qk_dim": None, "cross_v_dim": None, "cross_expand": 1.0, "cross_query_residual": True,
    "decoder_heads": 8, "decoder_qk_dim": 256, "decoder_v_dim": None, "decoder_expand": 1.0,
    "activation": "gelu",
}


class CrossAttentionLayer(nn.Module):
    """``z = W_o attn(LN(q), LN(kv)) (+ q); z + MLP(LN(z))`` with biased projections of their own widths."""

    def __init__(self, q_dim: int, kv_dim: int, *, qk_dim: int, v_dim: int, n_heads: int, expand: float,
                 activation: str, query_residual: bool, norm: ComponentSpec) -> None:
        super().__init__()
        for name, width in (("qk_dim", qk_dim), ("v_dim", v_dim)):
            if width % n_heads:
                raise IncompatibleError(f"perceiver_mlm: {name}={width} is not divisible by {n_heads} heads")
        self.n_heads, self.query_residual = n_heads, query_residual
        self.q_norm = build("norm", norm.name, norm.options, d_model=q_dim)
        self.kv_norm = build("norm", norm.name, norm.options, d_model=kv_dim)
        self.query, self.key = nn.Linear(q_dim, qk_dim), nn.Linear(kv_dim, qk_dim)
        self.value, self.out = nn.Linear(kv_dim, v_dim), nn.Linear(v_dim, q_dim)
        self.mlp_norm = build("norm", norm.name, norm.options, d_model=q_dim)
        self.mlp = build("channel", "mlp", {"expand": expand, "activation": activation, "bias": True}, d_model=q_dim)

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_weights(q_in, kv_in, key_padding_mask, with_weights=False)[0]

    def forward_with_weights(self, q_in: torch.Tensor, kv_in: torch.Tensor,
                             key_padding_mask: torch.Tensor | None = None, *, with_weights: bool = True
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output, computed from explicit attention weights ``[B, H, Nq, Nk]`` (returned) when asked."""
        kv = self.kv_norm(kv_in)
        q = split_heads(self.query(self.q_norm(q_in)), self.n_heads)
        k, v = split_heads(self.key(kv), self.n_heads), split_heads(self.value(kv), self.n_heads)
        weights = cross_attention_weights(q, k, key_padding_mask=key_padding_mask) if with_weights else None
        o = weights @ v if with_weights else cross_attention(q, k, v, key_padding_mask=key_padding_mask)
        z = self.out(merge_heads(o))
        if self.query_residual:
            z = z + q_in
        return z + self.mlp(self.mlp_norm(z)), weights


def _options(cfg: ModelConfig) -> dict[str, Any]:
    return model_options("perceiver_mlm", OPTIONS, cfg.options)


@register("model", "perceiver_mlm", paper=Paper("Perceiver IO: A General Architecture for Structured Inputs & "
                                                 "Outputs", "2107.14795", 2021), category="Arch",
          family="perceiver", causal=False, time="O(T·N + L·N² + T·N)", memory="O(T·N + N²)")
class PerceiverMLM(nn.Module):
    """Perceiver IO masked LM (the language Perceiver's layout): biased cross-attends in and out, shared latent
    blocks repeated ``n_blocks`` times, one learned query per output position, logits through the embedding."""

    causal = False

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        self.cfg, self.info = cfg, info
        opts = self.opts = _options(cfg)
        if info.head != "mlm":
            raise IncompatibleError(f"perceiver_mlm is a masked language model; a task with head {info.head!r} "
                                    f"needs model.arch=perceiver_io (or perceiver, perceiver_ar)")
        if cfg.causal == "true" or info.causal == "required":
            raise IncompatibleError("perceiver_mlm is bidirectional; use a masked-LM task and model.causal=auto")
        mixer = get("mixer", cfg.mixer.name)
        if not mixer.bidirectional:
            raise IncompatibleError(f"perceiver_mlm's latent blocks are bidirectional; mixer {mixer.name!r} is causal "
                                    f"only")
        d, embed_dim, n = cfg.d_model, opts["embed_dim"] or cfg.d_model, opts["n_latents"]
        max_len = resolve_max_len(cfg, info)
        if info.seq_len > max_len:
            raise IncompatibleError(f"perceiver_mlm holds {max_len} output positions but the task's sequences have "
                                    f"{info.seq_len}; raise model.max_len")
        self.embed = nn.Embedding(info.vocab_size, embed_dim)
        self.position = build("position", cfg.position.name, cfg.position.options, d_model=embed_dim, max_len=max_len)
        attach_vocabulary(self.position, info.vocab_size)
        self.latents = nn.Parameter(torch.randn(n, d) * 0.02)
        cross_qk = opts["cross_qk_dim"] or embed_dim
        self.encoder = CrossAttentionLayer(d, embed_dim, qk_dim=cross_qk, v_dim=opts["cross_v_dim"] or cross_qk,
                                           n_heads=opts["cross_heads"], expand=opts["cross_expand"],
                                           activation=opts["activation"], query_residual=opts["cross_query_residual"],
                                           norm=cfg.norm)
        self.blocks = latent_blocks(cfg, d, n, causal=False)
        for block in self.blocks:
            block.initialize()
        self.queries = nn.Parameter(torch.randn(max_len, embed_dim) * 0.02)
        self.decoder = CrossAttentionLayer(embed_dim, d, qk_dim=opts["decoder_qk_dim"],
                                           v_dim=opts["decoder_v_dim"] or embed_dim, n_heads=opts["decoder_heads"],
                                           expand=opts["decoder_expand"], activation=opts["activation"],
                                           query_residual=False, norm=cfg.norm)
        self.head_bias = nn.Parameter(torch.zeros(info.vocab_size))

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` at every position; padded positions (mask False) are not read."""
        return self.forward_with_weights(tokens, padding_mask, with_weights=False)[0]

    def forward_with_weights(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None, *,
                             with_weights: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward``'s logits computed from the encoder's explicit attention weights ``[B, H, N, T]``, and
        those weights (one cross-attend: a list of one)."""
        b, t = tokens.shape
        x = embed_tokens(tokens, self.embed, self.position, self.info.vocab_size)
        z, weights = self.encoder.forward_with_weights(self.latents.expand(b, -1, -1), x, padding_mask,
                                                       with_weights=with_weights)
        for _ in range(self.opts["n_blocks"]):
            for block in self.blocks:
                z = block(z, None, (z.shape[1],))
        y = self.decoder(self.queries[:t].expand(b, -1, -1), z)
        return y @ self.embed.weight.t() + self.head_bias, [weights] if with_weights else []

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
