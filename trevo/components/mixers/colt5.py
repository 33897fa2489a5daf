"""CoLT5 conditional attention (Ainslie et al., "CoLT5: Faster Long-Range Transformers with Conditional
Computation", arXiv:2303.09752, §3): a light branch for every token, a heavy branch for routed ones."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.attention import naive_softmax_attention
from trevo.ops.banded_attention import banded_attention
from trevo.registry import Paper, register


def route_top_k(scores: torch.Tensor, k: int, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Indices ``[B, k]`` of the k highest router scores ``[B, T]``, padded positions last, in position order."""
    if padding_mask is not None:
        scores = scores.masked_fill(~padding_mask.bool(), -math.inf)
    return scores.topk(k, dim=1).indices.sort(dim=1).values


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(1, idx[..., None].expand(*idx.shape, x.shape[-1]))


@register("mixer", "colt5_attention",
          paper=Paper("CoLT5: Faster Long-Range Transformers with Conditional Computation", "2303.09752", 2023),
          category="MHA/LocalGlobal", family="colt5", causal=True, bidirectional=True,
          time="O(T·w·d) light + O(k²·d) heavy, k = routed_fraction·T (bidirectional); O(T²·d) masked heavy "
               "(causal)", memory="light window cache O(w·d) + heavy KV cache O(T·d) in generation",
          test_options={"window": 3, "routed_fraction": 0.3, "light_n_heads": 2})
class CoLT5Attention(TokenMixer):
    """X + A_light(X) + s_q ⊙ A_heavy(X) (eq. 1-2 for attention): the light branch is local attention
    (``window`` keys per side, ``light_n_heads`` heads) for every token; the heavy branch is full
    attention (``n_heads`` heads) in which the routed queries attend to the routed keys/values.
    Queries and keys/values have separate routers, s = σ(x·w/|w|); the heavy output of a routed query
    is scaled by its score and each routed value by its own, so both routers learn (the paper's soft
    top-k is replaced by this plain scaling).

    Bidirectional (as in the paper, an encoder): the top k = ⌈``routed_fraction``·T⌉ queries and
    keys by score. Causal: top-k over the sequence would let a later token change which earlier
    tokens are routed, so a token is routed when its own score passes the threshold τ = Φ⁻¹(1 − f)
    (a fraction f of unit-variance scores), exactly causal. The causal heavy branch is computed as
    masked dense attention over all tokens (exact, without the compute saving); generation keeps the
    light window, every token's heavy key/value and its routing flag."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, light_n_heads: int = 1, window: int = 32,
                 routed_fraction: float = 0.25) -> None:
        super().__init__(d_model, causal=causal)
        if window < 1:
            raise IncompatibleError(f"colt5_attention: window (the light branch's local span) must be >= 1, "
                                    f"got {window}")
        if not 0 < routed_fraction <= 1:
            raise IncompatibleError(f"colt5_attention: routed_fraction must be in (0, 1], got {routed_fraction}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.light_n_heads, self.light_head_dim = light_n_heads, head_dim_of(d_model, light_n_heads)
        self.window, self.routed_fraction = window, routed_fraction
        self.threshold = math.sqrt(2) * torch.erfinv(torch.tensor(1 - 2 * routed_fraction)).item()  # Φ⁻¹(1 − f)
        self.light_qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.light_out = nn.Linear(d_model, d_model, bias=False)
        self.heavy_q = nn.Linear(d_model, d_model, bias=False)
        self.heavy_kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.heavy_out = nn.Linear(d_model, d_model, bias=False)
        self.router = nn.Parameter(torch.randn(2, d_model) / math.sqrt(d_model))  # query router, key/value router

    def router_scores(self, x: torch.Tensor) -> torch.Tensor:
        """x·w/|w| for the query and key/value routers: ``[2, B, T]``."""
        w = self.router / self.router.norm(dim=-1, keepdim=True)
        return torch.einsum("btd,rd->rbt", x, w.to(x.dtype))

    def _light(self, x: torch.Tensor, cache: State | None, padding_mask: torch.Tensor | None):
        q, k, v = (split_heads(t, self.light_n_heads) for t in self.light_qkv(x).chunk(3, dim=-1))
        if cache is not None:
            k, v = extend_kv_cache(cache, k, v, dim=2)
        o = banded_attention(q, k, v, window=self.window, causal=self.causal, key_padding_mask=padding_mask)
        return self.light_out(merge_heads(o)), k, v

    def _heavy_kv(self, x: torch.Tensor, kv_scale: torch.Tensor):
        k, v = self.heavy_kv(x).chunk(2, dim=-1)
        return split_heads(k, self.n_heads), split_heads(v * kv_scale[..., None], self.n_heads)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        light, _, _ = self._light(x, None, padding_mask)
        B, T, _ = x.shape
        n = max(1, math.ceil(self.routed_fraction * T))
        s_q, s_kv = self.router_scores(x)
        iq, ikv = route_top_k(s_q, n, padding_mask), route_top_k(s_kv, n, padding_mask)
        xkv = _gather(x, ikv)
        k, v = self._heavy_kv(xkv, torch.sigmoid(s_kv.gather(1, ikv)))
        q = split_heads(self.heavy_q(_gather(x, iq)), self.n_heads)
        kv_real = None if padding_mask is None else padding_mask.bool().gather(1, ikv)
        heavy = self.heavy_out(merge_heads(naive_softmax_attention(q, k, v, causal=False, key_padding_mask=kv_real)))
        heavy = heavy * torch.sigmoid(s_q.gather(1, iq))[..., None]
        return light.scatter_add(1, iq[..., None].expand_as(heavy), heavy)

    def init_state(self, batch: int, device, dtype) -> State:
        light = empty_kv_cache((batch, self.light_n_heads, 0, self.light_head_dim), device, dtype)
        state = empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)
        state["routed"] = torch.zeros(batch, 0, dtype=torch.bool, device=device)
        return {**state, "local_k": light["k"], "local_v": light["v"]}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        light, lk, lv = self._light(x, {"k": state["local_k"], "v": state["local_v"]}, None)
        s_q, s_kv = self.router_scores(x)
        q_routed, kv_routed = s_q > self.threshold, s_kv > self.threshold
        k, v = self._heavy_kv(x, torch.sigmoid(s_kv))
        k, v = extend_kv_cache(state, k, v, dim=2)
        routed = torch.cat([state["routed"], kv_routed], dim=1)
        q = split_heads(self.heavy_q(x), self.n_heads)
        heavy = self.heavy_out(merge_heads(_masked_attention(q, k, v, routed)))
        heavy = heavy * (torch.sigmoid(s_q) * q_routed.to(x.dtype))[..., None]
        keep = self.window - 1
        new = {"k": k, "v": v, "routed": routed, "local_k": lk[:, :, lk.shape[2] - keep:],
               "local_v": lv[:, :, lv.shape[2] - keep:]}
        return light + heavy, new


def _masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, routed: torch.Tensor) -> torch.Tensor:
    """Causal attention over the routed keys only (SDPA with a boolean mask); a query that sees no routed
    key gets zero: its row is given every key (to stay finite) and then multiplied by zero."""
    tq, tk = q.shape[2], k.shape[2]
    seen = torch.arange(tk, device=q.device)[None, :] <= torch.arange(tk - tq, tk, device=q.device)[:, None]
    allowed = seen[None, None] & routed[:, None, None, :]  # [B, 1, Tq, Tk]
    some = allowed.any(dim=-1, keepdim=True)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | ~some)
    return o * some.to(o.dtype)
