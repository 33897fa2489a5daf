"""Gated Attention Unit (GAU) and FLASH (Hua et al., "Transformer Quality in Linear Time",
arXiv:2202.10447). The math lives in ``trevo.ops.flash``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import extend_kv_cache
from trevo.ops.flash import flash_chunked, flash_matrix, relu2_attention
from trevo.registry import Paper, register

FLASH_PAPER = Paper("Transformer Quality in Linear Time", "2202.10447", 2022)


class _GatedUnit(TokenMixer):
    """U, V (width e = expand·d) and a shared Z (width s), all SiLU(XW); per-dimension scales and
    offsets turn Z into the queries and keys; the output is (U ⊙ attention(V)) W_o."""

    def __init__(self, d_model: int, *, causal: bool, expand: int, qk_dim: int, n_views: int,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.e, self.s = expand * d_model, qk_dim
        self.proj = nn.Linear(d_model, 2 * self.e + qk_dim)
        # γ near 1 (not equal across views, so that Q ≠ K at init) and β = 0.
        self.gamma = nn.Parameter(1 + 0.02 * torch.randn(n_views, qk_dim))
        self.beta = nn.Parameter(torch.zeros(n_views, qk_dim))
        self.out_proj = nn.Linear(self.e, d_model)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        u, v, z = F.silu(self.proj(x)).split([self.e, self.e, self.s], dim=-1)
        views = z[..., None, :] * self.gamma + self.beta
        return u, v, list(views.unbind(dim=-2))


@register("mixer", "gau", paper=FLASH_PAPER, category="Arch", family="flash", causal=True, bidirectional=True,
          time="O(T²·(s+e))", memory="O(T²); KV cache O(T·(s+e)) in generation", test_options={"qk_dim": 8})
class GAU(_GatedUnit):
    """GAU (section 2, eq. 1-4): O = (U ⊙ A V) W_o, A = relu²(QKᵀ/n), Q and K per-dimension scaled
    and offset copies of one shared Z. Causally n = t + 1 (the keys query t sees)."""

    def __init__(self, d_model: int, *, causal: bool, expand: int = 2, qk_dim: int = 128) -> None:
        super().__init__(d_model, causal=causal, expand=expand, qk_dim=qk_dim, n_views=2)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        u, v, (q, k) = self._project(x)
        return self.out_proj(u * relu2_attention(q, k, v, causal=False, key_padding_mask=padding_mask))

    def init_state(self, batch: int, device, dtype) -> State:
        return {"k": torch.zeros(batch, 0, self.s, device=device, dtype=dtype),
                "v": torch.zeros(batch, 0, self.e, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u, v, (q, k) = self._project(x)
        k, v = extend_kv_cache(state, k, v, dim=1)
        return self.out_proj(u * relu2_attention(q, k, v, causal=True)), {"k": k, "v": v}


@register("mixer", "flash", paper=FLASH_PAPER, category="Arch", family="flash", causal=True, bidirectional=True,
          recurrent=True, time="O(T·c·(s+e) + T·s·e)",
          memory="O(T·c) chunk; O(s·e + c·(s+e)) state", test_options={"qk_dim": 8, "chunk_size": 8})
class FLASH(_GatedUnit):
    """FLASH (section 3.2, mixed chunk attention): GAU with quadratic relu²(Q_q K_qᵀ/c) attention
    inside chunks of c tokens and linear attention Q_l Σ K_lᵀV across chunks (earlier chunks, /c,
    when causal; all tokens, /n, bidirectionally); four scale-offset views of Z.

    Forms: ``chunk`` (the linear-time algorithm) and ``quadratic`` (the same decomposition as one T×T
    matrix). Generation keeps the linear state of complete chunks and the current chunk's keys."""

    forms = ("chunk", "quadratic")

    def __init__(self, d_model: int, *, causal: bool, expand: int = 2, qk_dim: int = 128,
                 chunk_size: int = 256, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, expand=expand, qk_dim=qk_dim, n_views=4, form=form)
        self.chunk_size = chunk_size

    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None, M: torch.Tensor | None):
        u, v, (qq, qk, lq, lk) = self._project(x)
        c = self.chunk_size
        if self.form_for(x.shape[1]) == "quadratic":
            o = flash_matrix(qq, qk, lq, lk, chunk_size=c, causal=self.causal, key_padding_mask=padding_mask) @ v
            if M is not None:
                o = o + lq @ M
        else:
            o = flash_chunked(qq, qk, lq, lk, v, chunk_size=c, causal=self.causal, key_padding_mask=padding_mask,
                              M=M)
        return self.out_proj(u * o), (qk, lk, v)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._mix(x, padding_mask, None)[0]

    def init_state(self, batch: int, device, dtype) -> State:
        def zeros(*shape):
            return torch.zeros(*shape, device=device, dtype=dtype)
        return {"M": zeros(batch, self.s, self.e), "k": zeros(batch, 0, self.s), "lk": zeros(batch, 0, self.s),
                "v": zeros(batch, 0, self.e)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if state["k"].shape[1]:  # mid-chunk: the chunked form needs a chunk boundary, so step
            return super().causal_forward(x, state)
        y, (qk, lk, v) = self._mix(x, None, state["M"])
        full = x.shape[1] // self.chunk_size * self.chunk_size
        M = state["M"] + lk[:, :full].transpose(-1, -2) @ v[:, :full] / self.chunk_size
        return y, {"M": M, "k": qk[:, full:], "lk": lk[:, full:], "v": v[:, full:]}

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u, v, (qq, qk, lq, lk) = self._project(x_t[:, None])
        k, lk, v = (torch.cat([state[n], t], dim=1) for n, t in (("k", qk), ("lk", lk), ("v", v)))
        a = torch.relu(qq @ k.transpose(-1, -2) / self.chunk_size).square()
        y = self.out_proj(u * (a @ v + lq @ state["M"]))[:, 0]
        M = state["M"]
        if k.shape[1] == self.chunk_size:  # the chunk is complete: fold it into the linear state
            M = M + lk.transpose(-1, -2) @ v / self.chunk_size
            k, lk, v = k[:, :0], lk[:, :0], v[:, :0]
        return y, {"M": M, "k": k, "lk": lk, "v": v}
