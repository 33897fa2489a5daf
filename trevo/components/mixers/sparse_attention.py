"""Softmax attention under a fixed sparsity pattern: the Sparse Transformer's strided and fixed
patterns and sliding-window (local) attention. The patterns live in ``trevo.ops.sparse_patterns``.
Forms: ``sparse`` (``trevo.ops.sparse_attention``: only the blocks the pattern touches) and
``sdpa`` (PyTorch's SDPA with the dense boolean mask: the reference, and the form of a chunk that
follows a KV cache, where queries and keys no longer line up)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.rotary import check_rotary_head_dim
from trevo.errors import IncompatibleError
from trevo.ops.sparse_attention import fixed_attention, sliding_window_attention, strided_attention
from trevo.ops.sparse_patterns import fixed_mask, sliding_window_mask, strided_mask
from trevo.registry import Paper, register

SPARSE_PAPER = Paper("Generating Long Sequences with Sparse Transformers", "1904.10509", 2019)


class _MaskedAttention(TokenMixer):
    """Multi-head softmax attention whose allowed (query, key) pairs come from ``pattern``."""

    forms = ("sparse", "sdpa")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int, form: str,
                 position: nn.Module | None = None) -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        check_rotary_head_dim(self.head_dim, position)
        self.position = position  # RoPE (sliding-window attention only), applied at each token's position

    def pattern(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sparse(self, q, k, v, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The pattern's attention for aligned queries and keys, block by block."""
        raise NotImplementedError

    def mask(self, rows: torch.Tensor, cols: torch.Tensor, padding_mask: torch.Tensor | None = None
             ) -> torch.Tensor:
        """``[B|1, 1, Tq, Tk]`` boolean: the pattern, minus padded keys. A padded query keeps its own
        key, so that no row is empty (an empty softmax row would be NaN)."""
        m = self.pattern(rows, cols)
        if padding_mask is not None:
            own = rows[:, None] == cols[None, :]
            m = m & (padding_mask.bool()[:, None, :] | own)
        return m[:, None] if m.dim() == 3 else m[None, None]

    def _heads(self, x: torch.Tensor, offset: int = 0):
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        if self.position is not None:
            q, k = self.position.rotate(q, offset), self.position.rotate(k, offset)
        return q, k, v

    def _attend(self, q, k, v, mask) -> torch.Tensor:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(merge_heads(o))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._heads(x)
        if self.form_for(x.shape[1]) == "sparse":
            return self.out_proj(merge_heads(self.sparse(q, k, v, padding_mask)))
        pos = torch.arange(x.shape[1], device=x.device)
        return self._attend(q, k, v, self.mask(pos, pos, padding_mask))

    def init_state(self, batch: int, device, dtype) -> State:
        cache = empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)
        return {**cache, "pos": torch.zeros((), dtype=torch.long, device=device)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._heads(x, int(state["pos"]))
        aligned = state["k"].shape[2] == 0  # no cached keys: queries and keys are the same positions
        k, v = extend_kv_cache(state, k, v, dim=2)
        stop = int(state["pos"]) + x.shape[1]
        if aligned and int(state["pos"]) == 0 and self.form_for(x.shape[1]) == "sparse":
            y = self.out_proj(merge_heads(self.sparse(q, k, v, None)))
        else:
            cols = torch.arange(stop - k.shape[2], stop, device=x.device)
            y = self._attend(q, k, v, self.mask(cols[-x.shape[1]:], cols))
        keep = self.cache_size(k.shape[2])
        return y, {"k": k[:, :, k.shape[2] - keep:], "v": v[:, :, v.shape[2] - keep:], "pos": state["pos"] + x.shape[1]}

    def cache_size(self, n: int) -> int:
        """How many of the latest keys a later query may still need."""
        return n


_SPARSE_META = dict(paper=SPARSE_PAPER, family="sparse_attention", causal=True, bidirectional=True,
                    time="O(T·(l + T/l)·d) sparse (O(T·√T·d) at l ≈ √T), O(T²·d) sdpa",
                    memory="O(T·(l + T/l)) scores; KV cache O(T·d)")


@register("mixer", "sparse_strided", category="MHA/SparseOrLowRank", **_SPARSE_META,
          test_options={"stride": 4})
class SparseStridedAttention(_MaskedAttention):
    """Sparse Transformer strided attention (Child et al. 2019, section 4.2): query i attends
    A1 ∪ A2, A1 = {j : i − j < l}, A2 = {j : (i − j) mod l = 0} (j <= i when causal)."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, stride: int = 16, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, form=form)
        if stride < 1:
            raise IncompatibleError(f"sparse_strided needs stride >= 1, got {stride}")
        self.stride = stride

    def pattern(self, rows, cols):
        return strided_mask(rows, cols, self.stride, causal=self.causal)

    def sparse(self, q, k, v, padding_mask):
        return strided_attention(q, k, v, self.stride, causal=self.causal, padding_mask=padding_mask)


@register("mixer", "sparse_fixed", category="MHA/SparseOrLowRank", **_SPARSE_META,
          test_options={"stride": 4, "summary": 1})
class SparseFixedAttention(_MaskedAttention):
    """Sparse Transformer fixed attention (Child et al. 2019, section 4.2): query i attends
    A1 ∪ A2, A1 = {j : ⌊j/l⌋ = ⌊i/l⌋}, A2 = {j : j mod l ∈ {l − c, …, l − 1}} (j <= i when causal)."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, stride: int = 16, summary: int = 1,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, form=form)
        if not 1 <= summary <= stride:
            raise IncompatibleError(f"sparse_fixed needs 1 <= summary <= stride, got summary={summary}, "
                                    f"stride={stride}")
        self.stride, self.summary = stride, summary

    def pattern(self, rows, cols):
        return fixed_mask(rows, cols, self.stride, self.summary, causal=self.causal)

    def sparse(self, q, k, v, padding_mask):
        return fixed_attention(q, k, v, self.stride, self.summary, causal=self.causal, padding_mask=padding_mask)


@register("mixer", "sliding_window_attention",
          paper=Paper("Longformer: The Long-Document Transformer", "2004.05150", 2020),
          category="MHA/LocalGlobal", family="sparse_attention", causal=True, bidirectional=True, recurrent=True,
          relative_positions=("rope",), time="O(T·w·d) sparse, O(T²·d) sdpa",
          memory="O(T·w) scores; KV cache of w keys",
          test_options={"window": 5})
class SlidingWindowAttention(_MaskedAttention):
    """Sliding-window (local) attention as in Longformer's local part (Beltagy et al. 2020): query i
    attends keys with |i − j| < w (0 <= i − j < w when causal). Generation keeps only the last
    w − 1 keys: a constant-size state. Accepts RoPE as ``position`` (the local attention of Griffin and
    Samba is rotary)."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, window: int = 128, form: str = "auto",
                 position: nn.Module | None = None) -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, form=form, position=position)
        if window < 1:
            raise IncompatibleError(f"sliding_window_attention needs window >= 1, got {window}")
        self.window = window

    def pattern(self, rows, cols):
        return sliding_window_mask(rows, cols, self.window, causal=self.causal)

    def sparse(self, q, k, v, padding_mask):
        return sliding_window_attention(q, k, v, self.window, causal=self.causal, padding_mask=padding_mask)

    def cache_size(self, n: int) -> int:
        return min(n, self.window - 1)
