"""Softmax multi-head attention with multi-query and grouped-query heads, and its KV cache; QK-norm and
the sigmoid output gate of gated attention as options; the softmax's alternatives (``attention_fn``:
``trevo.components.attention_functions``); relative positions that rotate q and k, bias the scores or
add content-position terms (``trevo.components.positions``, ``trevo.components.position_biases``); the
attention scores exposed to RealFormer's residual attention."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, repeat_kv_heads, split_heads
from trevo.components.rotary import check_rotary_head_dim
from trevo.errors import IncompatibleError
from trevo.ops.attention import chunked_softmax_attention, residual_score_attention, sdpa_attention
from trevo.registry import Paper, create, register

RELATIVE_POSITIONS = ("rope", "alibi", "xpos", "t5_bias", "kerple_log", "kerple_power", "transformer_xl", "deberta",
                      "tupe")


def relative_score_bias(position: nn.Module | None, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
    """A relative position's additive score term for q ``[B,H,Tq,D]`` and the full k (or None): its
    distance bias (ALiBi, T5, KERPLE) or its content term (Transformer-XL)."""
    if position is not None and hasattr(position, "bias"):
        return position.bias(q.shape[1], q.shape[-2], k.shape[-2], device=q.device)
    if position is not None and hasattr(position, "content_bias"):
        return position.content_bias(q, k)
    return None


_META = dict(category="MHA", family="softmax_attention", causal=True, bidirectional=True,
             relative_positions=RELATIVE_POSITIONS,
             time="O(T²·d)", memory="O(T²) sdpa, O(T·C) chunk; KV cache O(T·d)",
             test_options={"chunk_size": 8})


@register("mixer", "softmax_attention", paper=Paper("Attention Is All You Need", "1706.03762", 2017), **_META)
class SoftmaxAttention(TokenMixer):
    """Multi-head softmax attention, softmax(QKᵀ/√d)V (Vaswani et al., eq. 1).

    ``n_kv_heads`` < ``n_heads`` shares each key/value head among a group of query heads (GQA;
    ``n_kv_heads=1`` is multi-query attention). Forms: ``sdpa`` (PyTorch's scaled_dot_product_attention) and ``chunk``
    (online softmax over key chunks, O(T·C) memory). Accepts the relative positions of
    ``relative_positions`` (RoPE, xPos, ALiBi, T5, KERPLE, Transformer-XL) as ``position``.

    ``attention_fn``: the function from scores to weights (kind ``attention_fn``): ``softmax`` (the
    forms above) or an alternative (relu, sigmoid, softpick, stick_breaking, cosine, normalized), which
    computes its weights directly, O(T²), whatever the form.

    ``qk_norm``: an RMSNorm with a learned gain on each query and key head before RoPE (QK-norm as in
    ViT-22B, arXiv:2302.05442, and OLMo 2 / Qwen3), which bounds the attention logits. ``output_gate``:
    gated attention (Qiu et al. 2025, arXiv:2505.06708, the G1 position of Qwen3-Next), Y ⊙ σ(X W_θ)
    — an elementwise, head-specific sigmoid gate of the input on the attention output before W_O.
    A RealFormer layer sets ``score_carry`` (``trevo.components.residuals``): the raw scores of the
    previous attention layer are added to this one's and the sum is handed on.
    """

    forms = ("sdpa", "chunk")
    exposes_scores = True  # RealFormer's residual attention can carry this mixer's scores
    score_carry = None

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, n_kv_heads: int | None = None,
                 head_dim: int | None = None, bias: bool = False, chunk_size: int = 128, qk_norm: bool = False,
                 output_gate: bool = False, attention_fn: str = "softmax", position: nn.Module | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_heads % n_kv_heads:
            raise IncompatibleError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads}")
        head_dim = head_dim_of(d_model, n_heads, head_dim)
        check_rotary_head_dim(head_dim, position)
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.chunk_size = chunk_size
        self.q_proj = nn.Linear(d_model, n_heads * head_dim, bias=bias)
        self.kv_proj = nn.Linear(d_model, 2 * n_kv_heads * head_dim, bias=bias)
        self.out_proj = nn.Linear(n_heads * head_dim, d_model, bias=bias)
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else None
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else None
        self.gate_proj = nn.Linear(d_model, n_heads * head_dim, bias=bias) if output_gate else None
        self.position = position
        if position is not None and hasattr(position, "attach"):
            position.attach(n_heads=n_heads, head_dim=head_dim, causal=causal)
        self.attention_fn = None if attention_fn == "softmax" else create("attention_fn", attention_fn)
        if self.attention_fn is not None:
            self.attention_fn.attach(n_heads=n_heads, head_dim=head_dim, causal=causal)

    def _attend(self, q, k, v, padding_mask, key_bias: torch.Tensor | None = None):
        """q ``[B,H,Tq,D]`` and the full k, v ``[B,Hkv,Tk,D]``; RoPE already applied. ``key_bias`` ``[B, Tk]``:
        a score added per key."""
        groups = self.n_heads // self.n_kv_heads
        k, v = repeat_kv_heads(k, groups), repeat_kv_heads(v, groups)
        bias = self.position_bias(q, k)
        if key_bias is not None:
            key_bias = key_bias[:, None, None, :].to(q.dtype)
            bias = key_bias if bias is None else bias + key_bias
        if self.attention_fn is not None:
            if self.score_carry is not None:
                raise IncompatibleError("realformer carries softmax attention scores; this layer's attention_fn is "
                                        f"{self.attention_fn.registry_entry.name!r}: use softmax or another residual")
            return self.attention_fn(q, k, v, causal=self.causal, bias=bias, key_padding_mask=padding_mask)
        if self.score_carry is not None:
            out, self.score_carry.scores = residual_score_attention(
                q, k, v, self.score_carry.scores, causal=self.causal, bias=bias, key_padding_mask=padding_mask)
            return out
        form = self.form_for(k.shape[-2])
        if form == "chunk":
            return chunked_softmax_attention(q, k, v, causal=self.causal, bias=bias,
                                             key_padding_mask=padding_mask, chunk_size=self.chunk_size)
        return sdpa_attention(q, k, v, causal=self.causal, bias=bias, key_padding_mask=padding_mask)

    def position_bias(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
        return relative_score_bias(self.position, q, k)

    def _project(self, x: torch.Tensor, offset: int):
        q = split_heads(self.q_proj(x), self.n_heads)
        k, v = (split_heads(t, self.n_kv_heads) for t in self.kv_proj(x).chunk(2, dim=-1))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.position is not None and hasattr(self.position, "rotate"):
            q, k = self.position.rotate(q, offset), self.position.rotate(k, offset, key=True)
        return q, k, v

    def _output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        o = merge_heads(o)
        if self.gate_proj is not None:
            o = o * torch.sigmoid(self.gate_proj(x))
        return self.out_proj(o)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._project(x, 0)
        return self._output(self._attend(q, k, v, padding_mask), x)

    def init_state(self, batch: int, device, dtype) -> State:
        return empty_kv_cache((batch, self.n_kv_heads, 0, self.head_dim), device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        # Parallel-context tools (trevo.tools.parallel_context) concatenate caches of windows encoded apart:
        # ``pos``, the position of the next token, then differs from the cache length, and ``key_bias`` adds a
        # score per cached key. A state without them (every other use) is the plain KV cache.
        offset = int(state["pos"]) if "pos" in state else state["k"].shape[2]
        q, k, v = self._project(x, offset)
        k, v = extend_kv_cache(state, k, v, dim=2)
        new = {"k": k, "v": v}
        if "pos" in state:
            new["pos"] = state["pos"] + x.shape[1]
        key_bias = state.get("key_bias")
        if key_bias is None:
            return self._output(self._attend(q, k, v, None), x), new
        new["key_bias"] = torch.cat([key_bias, key_bias.new_zeros(x.shape[0], x.shape[1])], dim=1)
        return self._output(self._attend(q, k, v, None, key_bias=new["key_bias"]), x), new


@register("mixer", "multi_query_attention",
          paper=Paper("Fast Transformer Decoding: One Write-Head is All You Need", "1911.02150", 2019),
          **_META)
class MultiQueryAttention(SoftmaxAttention):
    """Softmax attention with one key/value head shared by all query heads (Shazeer 2019)."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, head_dim: int | None = None,
                 bias: bool = False, chunk_size: int = 128, qk_norm: bool = False, output_gate: bool = False,
                 attention_fn: str = "softmax", position: nn.Module | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, n_kv_heads=1, head_dim=head_dim,
                         bias=bias, chunk_size=chunk_size, qk_norm=qk_norm, output_gate=output_gate,
                         attention_fn=attention_fn, position=position, form=form)


@register("mixer", "grouped_query_attention",
          paper=Paper("GQA: Training Generalized Multi-Query Transformer Models from Multi-Head "
                      "Checkpoints", "2305.13245", 2023), **_META)
class GroupedQueryAttention(SoftmaxAttention):
    """Softmax attention with ``n_kv_heads`` key/value heads, each shared by a group of query heads."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, n_kv_heads: int = 2,
                 head_dim: int | None = None, bias: bool = False, chunk_size: int = 128, qk_norm: bool = False,
                 output_gate: bool = False, attention_fn: str = "softmax", position: nn.Module | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
                         bias=bias, chunk_size=chunk_size, qk_norm=qk_norm, output_gate=output_gate,
                         attention_fn=attention_fn, position=position, form=form)
