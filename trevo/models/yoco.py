"""YOCO, "You Only Cache Once" (Sun et al., arXiv:2405.05254): a decoder-decoder language model.

A self-decoder of L₁ ordinary blocks built from ``model.mixer`` (meant to be an efficient causal
mixer with a constant-size state: sliding-window attention, RetNet's gated retention, GLA …) turns
the embeddings into X; one global key/value cache is made from it once, K̂ = LN(X) W_K, V̂ = LN(X) W_V;
then L − L₁ cross-decoder blocks each attend causally from their own queries to that one shared
cache, Y ← Y + W_O·softmax(LN(Y) W_Q K̂ᵀ/√d) V̂, then their channel mixer. Generation therefore keeps
the self-decoder's states plus a single KV cache, instead of one KV cache per layer.

YOCO is a model (an architecture over layers), not a mixer: ``model.arch=yoco``; ``model.mixer`` is
the self-decoder's mixer (every self-decoder layer the same one), ``model.options.self_layers``
(default L // 2) and ``n_heads`` / ``n_kv_heads`` of the cross-decoder. Blocks are pre-norm.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trevo.components.multihead import head_dim_of, kv_heads_of, merge_heads, repeat_kv_heads, split_heads
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.init import ScaledEmbedding, init_unit_scale
from trevo.models.layers import model_options, refuse_reused_attention
from trevo.models.metaformer import resolve_max_len
from trevo.models.tokens import attach_vocabulary, embed_tokens, output_head
from trevo.ops.attention import chunked_softmax_attention, sdpa_attention
from trevo.registry import Paper, build, get, register
from trevo.tasks.base import TaskInfo

OPTIONS: dict[str, Any] = {"self_layers": None, "n_heads": 4, "n_kv_heads": None, "chunk_size": None}


def _options(cfg: ModelConfig) -> dict[str, Any]:
    opts = model_options("yoco", OPTIONS, cfg.options)
    if opts["self_layers"] is None:
        opts["self_layers"] = cfg.n_layers // 2
    if not 0 <= opts["self_layers"] < cfg.n_layers:
        raise IncompatibleError(f"model.options.self_layers must be in 0 … n_layers − 1 = {cfg.n_layers - 1} (at "
                                f"least one cross-decoder layer), got {opts['self_layers']}")
    return opts


class SelfDecoderBlock(nn.Module):
    """x + mixer(norm(x)), then x + channel(norm(x)), with the generation contract."""

    def __init__(self, mixer: nn.Module, channel: nn.Module, norm1: nn.Module, norm2: nn.Module) -> None:
        super().__init__()
        self.mixer, self.channel, self.norm1, self.norm2 = mixer, channel, norm1, norm2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.channel(self.norm2(x))

    def prefill(self, x: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        y, mixer_state = self.mixer.prefill(self.norm1(x), state["mixer"])
        x = x + y
        y, channel_state = self.channel.prefill(self.norm2(x), state["channel"])
        return x + y, {"mixer": mixer_state, "channel": channel_state}


class CrossDecoderBlock(nn.Module):
    """y + W_O·CausalAttention(norm(y) W_Q, K̂, V̂) with the shared cache, then y + channel(norm(y))."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int, channel: nn.Module,
                 norm1: nn.Module, norm2: nn.Module, position: nn.Module | None, chunk_size: int | None) -> None:
        super().__init__()
        self.n_heads, self.groups, self.chunk_size, self.position = n_heads, n_heads // n_kv_heads, chunk_size, position
        self.q_proj = nn.Linear(d_model, n_heads * head_dim, bias=False)
        self.out_proj = nn.Linear(n_heads * head_dim, d_model, bias=False)
        self.channel, self.norm1, self.norm2 = channel, norm1, norm2

    def attend(self, y: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int) -> torch.Tensor:
        """Outputs for the queries of ``y`` (positions offset …) over the shared k, v ``[B, Hkv, Tk, d]``."""
        q = split_heads(self.q_proj(self.norm1(y)), self.n_heads)
        if self.position is not None:
            q = self.position.rotate(q, offset)
        k, v = repeat_kv_heads(k, self.groups), repeat_kv_heads(v, self.groups)
        if self.chunk_size is None:
            o = sdpa_attention(q, k, v, causal=True)
        else:
            o = chunked_softmax_attention(q, k, v, causal=True, chunk_size=self.chunk_size)
        return y + self.out_proj(merge_heads(o))


@register("model", "yoco", paper=Paper("You Only Cache Once: Decoder-Decoder Architectures for Language Models",
                                        "2405.05254", 2024),
          category="Arch", family="yoco", causal=True, bidirectional=False,
          time="self-decoder's + O(T²·d) per cross-decoder layer",
          memory="generation: the self-decoder's states + one shared KV cache O(T·d) for all cross-decoder layers")
class YOCO(nn.Module):
    """The decoder-decoder causal LM of YOCO (Sun et al. 2024, eq. 1-4; see the module docstring)."""

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        self.cfg, self.info = cfg, info
        opts = _options(cfg)
        if info.head != "lm" or info.causal == "forbidden":
            raise IncompatibleError(f"yoco is a causal language model; a task with head {info.head!r} needs "
                                    f"model.arch=metaformer")
        if cfg.causal == "false":
            raise IncompatibleError("yoco is causal; set model.causal=auto or true")
        if cfg.residual.name != "prenorm":
            raise IncompatibleError(f"yoco's blocks are pre-norm; model.residual={cfg.residual.name!r} is not "
                                    f"supported (set model.residual=prenorm)")
        if cfg.layers:
            raise IncompatibleError("yoco's self-decoder repeats model.mixer; per-layer specs (model.layers) are "
                                    "not supported: remove model.layers or use model.arch=metaformer")
        mixer = get("mixer", cfg.mixer.name)
        if not mixer.causal:
            raise IncompatibleError(f"yoco's self-decoder needs a causal mixer; {mixer.name!r} is bidirectional only")
        self.causal = True
        d, max_len = cfg.d_model, resolve_max_len(cfg, info)
        position = build("position", cfg.position.name, cfg.position.options, d_model=d, max_len=max_len)
        relative = getattr(position, "applies", "absolute") == "relative"
        if relative and (cfg.position.name not in mixer.relative_positions or not hasattr(position, "rotate")):
            raise IncompatibleError(f"position {cfg.position.name!r} acts inside the mixers: yoco's cross-decoder "
                                    f"takes rope only and {mixer.name!r} accepts "
                                    f"{', '.join(mixer.relative_positions) or 'no relative position'}")
        self.position = None if relative else position
        attach_vocabulary(self.position, info.vocab_size)
        n_heads = opts["n_heads"]
        n_kv_heads = kv_heads_of(n_heads, opts["n_kv_heads"], "model.options.")
        head_dim = head_dim_of(d, n_heads)
        self.n_kv_heads, self.head_dim = n_kv_heads, head_dim
        self.embed = ScaledEmbedding(info.vocab_size, d)

        def norm() -> nn.Module:
            return build("norm", cfg.norm.name, cfg.norm.options, d_model=d)

        def context(i: int) -> dict[str, Any]:
            return {"d_model": d, "causal": True, "layer_idx": i, "n_layers": cfg.n_layers, "max_len": max_len,
                    "layout": (info.seq_len,), "position": position if relative else None}

        def channel(i: int) -> nn.Module:
            return build("channel", cfg.channel.name, cfg.channel.options, **context(i))

        refuse_reused_attention(cfg.mixer.name, "YOCO's self-decoder")
        self.self_decoder = nn.ModuleList(
            SelfDecoderBlock(build("mixer", cfg.mixer.name, cfg.mixer.options, **context(i)), channel(i), norm(),
                             norm()) for i in range(opts["self_layers"]))
        self.kv_norm = norm()
        self.kv_proj = nn.Linear(d, 2 * n_kv_heads * head_dim, bias=False)
        self.cross_decoder = nn.ModuleList(
            CrossDecoderBlock(d, n_heads, n_kv_heads, head_dim, channel(i), norm(), norm(),
                              position if relative else None, opts["chunk_size"])
            for i in range(opts["self_layers"], cfg.n_layers))
        self.norm = norm()
        self.head = output_head(d, info, self.embed, cfg.tie_embeddings)  # info.head is lm (checked above)
        self.apply(init_unit_scale)

    def _embed(self, tokens: torch.Tensor, offset: int) -> torch.Tensor:
        return embed_tokens(tokens, self.embed, self.position, self.info.vocab_size, offset)

    def shared_kv(self, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K̂, V̂ ``[B, Hkv, T, d]`` of the self-decoder's output x (positions offset …)."""
        k, v = (split_heads(t, self.n_kv_heads) for t in self.kv_proj(self.kv_norm(x)).chunk(2, dim=-1))
        rope = self.cross_decoder[0].position
        return (k if rope is None else rope.rotate(k, offset)), v

    def _cross(self, y: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int,
               channel_states: list | None) -> tuple[torch.Tensor, list]:
        new_states = []
        for i, block in enumerate(self.cross_decoder):
            y = block.attend(y, k, v, offset)
            if channel_states is None:
                y = y + block.channel(block.norm2(y))
            else:
                out, cs = block.channel.prefill(block.norm2(y), channel_states[i])
                y = y + out
                new_states.append(cs)
        return y, new_states

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``[B, T, vocab]`` (right padding is never seen by earlier positions)."""
        x = self._embed(tokens, 0)
        for block in self.self_decoder:
            x = block(x)
        y, _ = self._cross(x, *self.shared_kv(x, 0), 0, None)
        return self.head(self.norm(y))

    def init_state(self, batch: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        kv = torch.zeros(batch, self.n_kv_heads, 0, self.head_dim, device=device, dtype=dtype)
        layers = {"self": [{"mixer": b.mixer.init_state(batch, device, dtype),
                            "channel": b.channel.init_state(batch, device, dtype)} for b in self.self_decoder],
                  "shared_kv": {"k": kv, "v": kv.clone()},
                  "cross": [b.channel.init_state(batch, device, dtype) for b in self.cross_decoder]}
        return {"offset": 0, "layers": layers}

    def prefill(self, tokens: torch.Tensor, state: dict[str, Any] | None = None
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device, self.embed.weight.dtype)
        offset, layers = state["offset"], state["layers"]
        x = self._embed(tokens, offset)
        self_states = []
        for block, block_state in zip(self.self_decoder, layers["self"], strict=True):
            x, block_state = block.prefill(x, block_state)
            self_states.append(block_state)
        k_new, v_new = self.shared_kv(x, offset)
        k = torch.cat([layers["shared_kv"]["k"], k_new], dim=2)
        v = torch.cat([layers["shared_kv"]["v"], v_new], dim=2)
        y, cross_states = self._cross(x, k, v, offset, layers["cross"])
        new = {"self": self_states, "shared_kv": {"k": k, "v": v}, "cross": cross_states}
        return self.head(self.norm(y)), {"offset": offset + tokens.shape[1], "layers": new}

    def step(self, token: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """token ``[B]`` → logits ``[B, vocab]`` for the next position."""
        logits, state = self.prefill(token[:, None], state)
        return logits[:, 0], state

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
