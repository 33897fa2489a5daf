"""FMMformer (Nguyen et al., "FMMformer: Efficient and Flexible Transformer via Decomposed Near-field
and Far-field Attention", arXiv:2108.02347): attention as a fast-multipole split into a banded
near field and a low-rank far field."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.banded_attention import banded_attention, banded_attention_quadratic
from trevo.ops.linear_attention import linear_attention_quadratic
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register

# The far field's kernels φ_l (§3.2 uses several feature maps so that the low-rank part has rank r·d).
FEATURE_MAPS = (lambda x: F.elu(x) + 1, lambda x: F.elu(-x) + 1)


@register("mixer", "fmmformer",
          paper=Paper("FMMformer: Efficient and Flexible Transformer via Decomposed Near-field and Far-field "
                      "Attention", "2108.02347", 2021),
          category="MHA/LocalGlobal", family="fmmformer", causal=True, bidirectional=True, recurrent=True,
          time="O(T·w·d) near + O(T·r·d²/H) far", memory="O(w·d + r·d²/H) state (window cache + far-field state)",
          test_options={"window": 3, "chunk_size": 4})
class FMMformer(TokenMixer):
    """V̂ = w₁ D V + w₂ L V (§3): the near field D is softmax attention restricted to a band of
    ``window`` keys (causally the last ``window``), the far field L = Σ_l φ_l(Q) φ_l(K)ᵀ a sum of
    ``n_kernels`` linear-attention kernels (φ₁ = elu + 1, φ₂ = elu(−·) + 1), normalised as linear
    attention; w₁, w₂ are learned per head.

    Causal generation keeps the last ``window − 1`` keys and values (the band) and the far field's
    constant-size state. Forms (the far field's): ``chunk``, ``quadratic`` (with the near field as a
    masked dense matrix), ``recurrent``."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, window: int = 32, n_kernels: int = 2,
                 chunk_size: int = 64, eps: float = 1e-6, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if window < 1:
            raise IncompatibleError(f"fmmformer: window (the near-field band) must be >= 1, got {window}")
        if not 1 <= n_kernels <= len(FEATURE_MAPS):
            raise IncompatibleError(f"fmmformer: n_kernels must be 1 … {len(FEATURE_MAPS)}, got {n_kernels}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.window, self.n_kernels, self.chunk_size, self.eps = window, n_kernels, chunk_size, eps
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.blend = nn.Parameter(torch.ones(2, n_heads))  # (w₁, w₂) per head

    def _heads(self, x: torch.Tensor):
        return (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """[φ₁(x), …, φ_r(x)]: one linear attention over the concatenated features is Σ_l φ_l(Q)φ_l(K)ᵀ."""
        return torch.cat([phi(x) for phi in FEATURE_MAPS[:self.n_kernels]], dim=-1)

    def _combine(self, near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
        w = self.blend.to(near.dtype)[:, :, None, None]
        return self.out_proj(merge_heads(w[0] * near + w[1] * far))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._heads(x)
        band = banded_attention_quadratic if self.form_for(x.shape[1]) == "quadratic" else banded_attention
        near = band(q, k, v, window=self.window, causal=False, key_padding_mask=padding_mask)
        kf = self._features(k)
        if padding_mask is not None:  # padded keys add nothing to the far field's sums
            kf = kf * padding_mask[:, None, :, None].to(kf.dtype)
        far = linear_attention_quadratic(self._features(q), kf, v, causal=False, eps=self.eps)
        return self._combine(near, far)

    def init_state(self, batch: int, device, dtype) -> State:
        r = self.n_kernels * self.head_dim
        state = empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)
        state["S"] = torch.zeros(batch, self.n_heads, r, self.head_dim, device=device, dtype=dtype)
        state["z"] = torch.zeros(batch, self.n_heads, r, device=device, dtype=dtype)
        return state

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._heads(x)
        form = self.form_for(x.shape[1])
        kc, vc = extend_kv_cache(state, k, v, dim=2)
        band = banded_attention_quadratic if form == "quadratic" else banded_attention
        near = band(q, kc, vc, window=self.window, causal=True)
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # the normaliser z as the state's last column
        S0 = torch.cat([state["S"], state["z"][..., None]], dim=-1)
        o, S = linear_recurrence(self._features(q), self._features(k), v1, initial_state=S0, form=form,
                                 chunk_size=self.chunk_size)
        far = o[..., :-1] / (o[..., -1:] + self.eps)
        keep = max(self.window - 1, 0)
        cache = {"k": kc[:, :, kc.shape[2] - keep:], "v": vc[:, :, vc.shape[2] - keep:]}
        return self._combine(near, far), {**cache, "S": S[..., :-1], "z": S[..., -1]}
