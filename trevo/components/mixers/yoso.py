"""YOSO: Bernoulli-sampled attention through LSH collisions, and its expectation YOSO-E (Zeng et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.yoso import (
    bucket_add,
    bucket_lookup,
    expected_sum,
    hash_codes,
    normalise,
    sampled_sum_quadratic,
    sampled_sum_tables,
)
from trevo.registry import Paper, register

YOSO_PAPER = Paper("You Only Sample (Almost) Once: Linear Cost Self-Attention Via Bernoulli Sampling", "2111.09714",
                   2021)


class _YosoBase(TokenMixer):
    def __init__(self, d_model: int, *, causal: bool, n_heads: int, hash_code_len: int, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if not 1 <= hash_code_len <= 16:
            raise IncompatibleError(f"{type(self).__name__} needs 1 <= hash_code_len <= 16, got {hash_code_len}")
        self.n_heads, self.head_dim, self.hash_code_len = n_heads, head_dim_of(d_model, n_heads), hash_code_len
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: torch.Tensor):
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        return nn.functional.normalize(q, dim=-1), nn.functional.normalize(k, dim=-1), v


@register("mixer", "yoso_e", paper=YOSO_PAPER, category="MHA/SparseOrLowRank", family="yoso", causal=True,
          bidirectional=True, time="O(T²·d)", memory="O(T²); KV cache O(T·d)", test_options={"hash_code_len": 4},
          summary="YOSO-E (Zeng et al. 2021): attention weights (1 − arccos(q̂·k̂)/π)^τ, the expectation of "
                  "YOSO's hash collisions, with L2-normalised outputs")
class YosoE(_YosoBase):
    """YOSO-E (Zeng et al. 2021, section 3): the expectation of YOSO's Bernoulli attention,
    y_i = N(Σ_j (1 − arccos(q̂_i·k̂_j)/π)^τ v_j) with q̂, k̂ unit vectors, τ = ``hash_code_len`` and N the
    L2 normalisation of the row. Deterministic and quadratic: the reference for ``yoso``."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, hash_code_len: int = 8) -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, hash_code_len=hash_code_len)

    def _attend(self, q, k, v, padding_mask):
        y = expected_sum(q, k, v, self.hash_code_len, causal=self.causal, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(normalise(y)))

    def bidirectional_forward(self, x, padding_mask, layout):
        return self._attend(*self._heads(x), padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        return empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._heads(x)
        k, v = extend_kv_cache(state, k, v, dim=2)
        return self._attend(q, k, v, None), {"k": k, "v": v}


@register("mixer", "yoso", paper=YOSO_PAPER, category="MHA/SparseOrLowRank", family="yoso", causal=True,
          bidirectional=True, recurrent=True,
          time="O(T·m·d) forward by bucket tables; O(T²·d) backward through the expectation",
          memory="O(m·2^τ·d) tables (the causal state)",
          test_options={"hash_code_len": 3, "n_hashes": 4, "chunk_size": 5, "redraw_interval": 0})
class Yoso(_YosoBase):
    """YOSO attention (Zeng et al. 2021, eq. 6-8): B_ij = mean over ``n_hashes`` SimHash functions of
    τ = ``hash_code_len`` bits of [h(q̂_i) = h(k̂_j)], a Bernoulli sample of (1 − arccos(q̂·k̂)/π)^τ, and
    y = N(B V), computed from per-hash bucket sums of the values. The hyperplanes are drawn anew every
    ``redraw_interval`` training forward passes (1: every pass, as the paper; 0: never) and are fixed in
    evaluation, where generation carries the bucket tables: a constant-size state. The gradient with
    respect to q and k is YOSO-E's (a quadratic backward, as the paper's ``n2_backward``). Forms: ``chunk``
    (bucket tables; causally dense inside chunks of ``chunk_size``) and ``quadratic`` (the collision
    matrix)."""

    forms = ("chunk", "quadratic")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, hash_code_len: int = 8, n_hashes: int = 16,
                 chunk_size: int = 64, redraw_interval: int = 1, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, hash_code_len=hash_code_len, form=form)
        if n_hashes < 1 or chunk_size < 1:
            raise IncompatibleError(f"yoso needs n_hashes >= 1 and chunk_size >= 1, got {n_hashes}, {chunk_size}")
        self.n_hashes, self.chunk_size, self.redraw_interval = n_hashes, chunk_size, redraw_interval
        self.register_buffer("planes", torch.randn(self.head_dim, n_hashes * hash_code_len))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw new hash hyperplanes (from torch's global generator)."""
        self.planes.normal_()

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        if self.training and self.redraw_interval > 0:
            if int(self.calls) % self.redraw_interval == 0 and int(self.calls) > 0:
                self.redraw()
            self.calls += 1
        return super().forward(x, padding_mask=padding_mask, layout=layout)

    def _attend(self, q, k, v, tables, padding_mask):
        qc, kc = hash_codes(q, self.planes, self.hash_code_len), hash_codes(k, self.planes, self.hash_code_len)
        if self.form_for(q.shape[2]) == "quadratic":
            # the keys of this input densely, those before it from the tables
            y = sampled_sum_quadratic(qc, kc, v, causal=self.causal, key_padding_mask=padding_mask)
            y = y + bucket_lookup(tables, qc)
            tables = bucket_add(tables, kc, v)
        else:
            y, tables = sampled_sum_tables(qc, kc, v, tables, causal=self.causal, chunk_size=self.chunk_size,
                                           key_padding_mask=padding_mask)
        y = normalise(y)
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
            # the value is the sample's; the gradient in q and k is YOSO-E's (hashing has none)
            e = normalise(expected_sum(q, k, v.detach(), self.hash_code_len, causal=self.causal,
                                       key_padding_mask=padding_mask))
            y = y + (e - e.detach())
        return self.out_proj(merge_heads(y)), tables

    def _empty_tables(self, batch: int, device, dtype) -> torch.Tensor:
        return torch.zeros(batch, self.n_heads, self.n_hashes, 2 ** self.hash_code_len, self.head_dim,
                           device=device, dtype=dtype)

    def bidirectional_forward(self, x, padding_mask, layout):
        q, k, v = self._heads(x)
        return self._attend(q, k, v, self._empty_tables(x.shape[0], x.device, x.dtype), padding_mask)[0]

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": self._empty_tables(batch, device, dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, tables = self._attend(*self._heads(x), state["S"], None)
        return y, {"S": tables}
