"""Heads: the one place where a width is split into attention heads and merged back.

The engine's layout is ``[batch, heads, seq, head_dim]`` (flash-linear-attention's and SDPA's).
``FusedQKVHeads`` is the fused-QKV multi-head boilerplate that many attention-like mixers share;
``KVCacheAttention`` adds both directions and the KV-cache generation state to one that attends to all its keys.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.kv_cache import State, empty_kv_cache, extend_kv_cache
from trevo.errors import IncompatibleError


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, seq, H·D) -> [B, H, T, D]."""
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def merge_heads(o: torch.Tensor) -> torch.Tensor:
    """[B, H, T, D] -> (batch, seq, H·D)."""
    return o.transpose(1, 2).flatten(2)


def kv_heads_of(n_heads: int, n_kv_heads: int | None, what: str) -> int:
    """Grouped-query attention's key/value heads: ``n_kv_heads`` (None: ``n_heads``), which must divide
    ``n_heads``; ``what`` starts the error (``"forgetting_attention: "``, ``"model.options."``)."""
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    if n_kv_heads < 1 or n_heads % n_kv_heads:
        raise IncompatibleError(f"{what}n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads}")
    return n_kv_heads


def n_heads_of(width: int, head_dim: int) -> int:
    """Heads of ``head_dim`` in an inner ``width`` = expand·d_model (Mamba-2-style blocks), which must divide."""
    if width % head_dim:
        raise IncompatibleError(f"expand·d_model = {width} is not divisible by head_dim = {head_dim}; "
                                f"choose a head_dim dividing it")
    return width // head_dim


def repeat_kv_heads(t: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped-query attention's keys or values for every query head: each of the ``[B, Hkv, T, D]`` heads
    repeated ``groups`` = n_heads / n_kv_heads times in place (query head h reads key head h // groups)."""
    return t.repeat_interleave(groups, dim=1) if groups > 1 else t


def head_dim_of(width: int, n_heads: int, head_dim: int | None = None, what: str = "d_model") -> int:
    """The per-head width: ``head_dim`` if given, else ``width / n_heads``, which must divide."""
    if n_heads < 1:
        raise IncompatibleError(f"n_heads must be >= 1, got {n_heads}")
    if head_dim is not None:
        if head_dim < 1:
            raise IncompatibleError(f"head_dim must be >= 1, got {head_dim}")
        return head_dim
    if width % n_heads:
        raise IncompatibleError(f"{what}={width} is not divisible by n_heads={n_heads}; choose n_heads dividing it "
                                f"(or set head_dim where the mixer takes one)")
    return width // n_heads


class FusedQKVHeads:
    """Mixin for a multi-head mixer with one fused query/key/value projection and an output projection:
    ``q, k, v = split(x W_QKV)`` into ``n_heads`` heads of ``head_dim``, ``y = merge(o) W_O`` (the multi-head
    projections of "Attention Is All You Need", Vaswani et al. 2017, §3.2.2, with W_Q, W_K, W_V fused).

    Mixed into a ``TokenMixer`` (an ``nn.Module``): ``init_heads`` in ``__init__``, then ``qkv_heads``,
    ``project_out`` and, for a KV cache of ``[B, H, T, D]``, ``init_kv_cache``.
    """

    n_heads: int
    head_dim: int
    qkv: nn.Linear
    out_proj: nn.Linear

    def init_heads(self, d_model: int, n_heads: int, *, bias: bool = False, out_proj: bool = True) -> None:
        """Set ``n_heads`` and ``head_dim`` (``d_model / n_heads``, checked), then create ``qkv`` and ``out_proj``
        in that order (seeded initial weights depend on the order). ``out_proj=False`` leaves ``out_proj`` to a
        mixer that creates other parameters between the two."""
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        if out_proj:
            self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The queries, keys and values ``[B, H, T, D]`` of ``x`` (batch, seq, d_model)."""
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        return q, k, v

    def project_out(self, o: torch.Tensor) -> torch.Tensor:
        """``merge(o) W_O`` for head outputs ``o`` ``[B, H, T, D]``."""
        return self.out_proj(merge_heads(o))

    def init_kv_cache(self, batch: int, device, dtype: torch.dtype) -> State:
        """An empty per-head KV cache ``[B, H, 0, D]`` (extend it with ``kv_cache.extend_kv_cache(..., dim=2)``)."""
        return empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)


class KVCacheAttention(FusedQKVHeads):
    """Mixin for a fused-QKV multi-head mixer that attends over every key it has seen: both directions and
    the KV-cache generation contract, from one ``attend``.

    The mixer implements ``attend(q, k, v, padding_mask) -> y`` (``y`` projected out, ``(batch, seq, d_model)``):
    the outputs of the queries ``q`` ``[B, H, Tq, D]``, the last ``Tq`` positions of the keys ``k``, ``v``
    ``[B, H, Tk, D]``, causally if the mixer is causal. It may override ``heads(x)`` (the queries, keys and values
    it attends with; ``qkv_heads`` by default). The causal state is the KV cache of those keys and values.
    """

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.qkv_heads(x)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               padding_mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} implements no attend")

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self.attend(*self.heads(x), padding_mask)

    def init_state(self, batch: int, device, dtype: torch.dtype) -> State:
        return self.init_kv_cache(batch, device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self.heads(x)
        k, v = extend_kv_cache(state, k, v, dim=2)
        return self.attend(q, k, v, None), {"k": k, "v": v}
