"""Performer: softmax attention estimated with FAVOR+ positive orthogonal random features."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.components.redraw import PeriodicRedraw
from trevo.ops.performer import (
    favor_bidirectional,
    favor_chunked,
    favor_prefix,
    favor_quadratic,
    favor_recurrent,
    favor_state,
    orthogonal_gaussian,
    positive_features,
)
from trevo.registry import Paper, register


@register("mixer", "performer", paper=Paper("Rethinking Attention with Performers", "2009.14794", 2020),
          category="MHA/RightProduct", family="performer", causal=True, bidirectional=True, recurrent=True,
          time="O(T·m·d) chunk/prefix/recurrent, O(T²·m) quadratic", memory="O(m·d/H) state per head",
          relative_positions=("permuteformer",),
          test_options={"n_features": 8, "chunk_size": 8})
class Performer(PeriodicRedraw, FusedQKVHeads, TokenMixer):
    """Performer FAVOR+ (Choromanski et al. 2020): softmax(QKᵀ/√d)V estimated by
    φ(q)ᵀφ(k) with φ(x) = exp(Wx − |x|²/2)/√m (Lemma 1) on q, k scaled by d^(-1/4), W with
    block-orthogonal rows (section 2.4) shared by the heads.

    ``redraw_interval`` > 0 draws a new W every that many training forward passes (the paper's feature
    redraw); ``redraw()`` draws one on demand. Causal forms: ``quadratic`` (masked),
    ``chunk``, ``prefix`` (cumulative sums, section 2.6) and ``recurrent``; bidirectional use computes
    φ(Q)(φ(K)ᵀV) whatever the form. ``position``: PermuteFormer's permutation of the features by
    position (``permuteformer``); the generation state then counts the tokens seen (``pos``)."""

    forms = ("chunk", "quadratic", "prefix", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, n_features: int = 64,
                 redraw_interval: int = 0, chunk_size: int = 64, position: nn.Module | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_features, self.chunk_size = n_features, chunk_size
        self.init_heads(d_model, n_heads)
        self.register_buffer("projection", orthogonal_gaussian(n_features, self.head_dim))
        self.init_redraw(redraw_interval)
        self.position = position
        if position is not None:
            position.attach(n_heads=n_heads, n_features=n_features)

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw a new random projection W (from torch's global generator)."""
        self.projection.copy_(orthogonal_gaussian(self.n_features, self.head_dim))

    def features(self, x: torch.Tensor, *, is_query: bool) -> torch.Tensor:
        """φ of queries or keys ``[B, H, T, Dh]`` (scaled by Dh^(-1/4) so that φ(q)ᵀφ(k) ≈ e^(qᵀk/√Dh))."""
        return positive_features(x * self.head_dim ** -0.25, self.projection, stabilise=is_query)

    def _qkv(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, offset: int = 0):
        q, k, v = self.qkv_heads(x)
        qf, kf = self.features(q, is_query=True), self.features(k, is_query=False)
        if self.position is not None:
            qf, kf = self.position.permute(qf, offset), self.position.permute(kf, offset)
        if padding_mask is not None:  # padded keys add nothing to the sums
            kf = kf * padding_mask[:, None, :, None].to(kf.dtype)
        return qf, kf, v

    def _out(self, o: torch.Tensor) -> torch.Tensor:
        return self.project_out(o)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        qf, kf, v = self._qkv(x, padding_mask)
        return self._out(favor_bidirectional(qf, kf, v))

    def init_state(self, batch: int, device, dtype) -> State:
        S = torch.zeros(batch, self.n_heads, self.n_features, self.head_dim, device=device, dtype=dtype)
        state = {"S": S, "z": torch.zeros(batch, self.n_heads, self.n_features, device=device, dtype=dtype)}
        if self.position is not None:
            state["pos"] = torch.zeros((), dtype=torch.long, device=device)
        return state

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        qf, kf, v = self._qkv(x, offset=int(state["pos"]) if "pos" in state else 0)
        S, z = state["S"], state["z"]
        form = self.form_for(x.shape[1])
        if form == "quadratic":
            o = favor_quadratic(qf, kf, v, causal=True, S=S, z=z)
        elif form == "chunk":
            o = favor_chunked(qf, kf, v, S, z, self.chunk_size)
        elif form == "prefix":
            o = favor_prefix(qf, kf, v, S, z)
        else:
            o = favor_recurrent(qf, kf, v, S, z)
        S, z = favor_state(kf, v, S, z)
        new = {"S": S, "z": z}
        if "pos" in state:
            new["pos"] = state["pos"] + x.shape[1]
        return self._out(o), new
