"""Relative positions that act on the attention scores: a learned bias per distance (T5, KERPLE) and
content-dependent relative terms (Transformer-XL, DeBERTa).

They are relative positions (``applies="relative"``) that a mixer applies inside attention. The mixer
calls ``attach(n_heads=, head_dim=, causal=)`` once at build, so the position owns its per-head
parameters, and then, on every call, one of

- ``bias(n_heads, tq, tk, device=)``: an additive ``[H, Tq, Tk]`` score bias that depends on the
  distance i − j only (T5, KERPLE, like ALiBi);
- ``content_bias(q, k)``: an additive ``[B, H, Tq, Tk]`` score term computed from the queries and keys
  (Transformer-XL's u, v terms; DeBERTa's content-to-position and position-to-content terms).

In both the queries are the last Tq of Tk positions (a query chunk after a KV cache), so a prefill and
its steps see the same terms a full forward does. Every bias is in the scaled domain: it is added to
q·k/√d. Each layer's mixer builds its own position, so each layer has its own table (T5 itself shares
one table across the layers of a stack).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.positions import RelativePosition, alibi_slopes
from trevo.errors import IncompatibleError
from trevo.registry import Paper, register


def _distances(tq: int, tk: int, device: torch.device | None) -> torch.Tensor:
    """``[Tq, Tk]`` query position minus key position, the queries at the last Tq of Tk positions."""
    i = torch.arange(tk - tq, tk, device=device)[:, None]
    j = torch.arange(tk, device=device)[None, :]
    return i - j


class AttachedPosition(RelativePosition):
    """A relative position whose parameters depend on the attention it sits in (its heads)."""

    n_heads: int = 0

    def attach(self, *, n_heads: int, head_dim: int, causal: bool) -> None:
        self.n_heads, self.head_dim, self.causal = n_heads, head_dim, causal
        self.build_parameters()

    def build_parameters(self) -> None:
        raise NotImplementedError

    def check_heads(self, n_heads: int) -> None:
        if n_heads != self.n_heads:
            raise IncompatibleError(f"{type(self).__name__} was attached to {self.n_heads} heads and is asked for "
                                    f"{n_heads}; build one position per attention layer")


def t5_bucket(relative_position: torch.Tensor, *, bidirectional: bool, n_buckets: int = 32,
              max_distance: int = 128) -> torch.Tensor:
    """T5's bucket of ``relative_position`` = key position − query position (Raffel et al. 2020, §2.1;
    the ``_relative_position_bucket`` of Mesh TensorFlow): half the buckets (per direction, when
    bidirectional) hold the distances 0 … n/2 − 1 exactly, the rest cover n/2 … ``max_distance`` on a
    log scale, and farther distances share the last bucket. Causal (not bidirectional): only keys at
    or before the query have buckets; later keys fall in bucket 0 (they are masked anyway)."""
    offset = torch.zeros_like(relative_position)
    if bidirectional:
        n_buckets //= 2
        offset = (relative_position > 0).long() * n_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    exact = n_buckets // 2
    # the log branch is only taken for distance >= exact; clamping avoids log(0) in the discarded branch
    far = exact + (torch.log(distance.clamp(min=exact).double() / exact) / math.log(max_distance / exact)
                   * (n_buckets - exact)).long()
    far = far.clamp(max=n_buckets - 1)
    return offset + torch.where(distance < exact, distance, far)


@register("position", "t5_bias", category="Pe", family="position_biases", applies="relative",
          paper=Paper("Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer (T5)",
                      "1910.10683", 2020))
class T5RelativeBias(AttachedPosition):
    """T5 relative bias: a learned scalar per head and distance bucket added to the scores,
    b_h(i, j) = B[h, bucket(j − i)] (Raffel et al. §2.1: 32 buckets up to distance 128; log-spaced past
    n/2). Causal layers use the one-sided buckets of T5's decoder, bidirectional ones both sides."""

    def __init__(self, d_model: int, n_buckets: int = 32, max_distance: int = 128) -> None:
        super().__init__()
        if n_buckets < 4 or max_distance <= n_buckets // 2:
            raise IncompatibleError(f"t5_bias needs n_buckets >= 4 and max_distance > n_buckets / 2; got "
                              f"n_buckets={n_buckets}, max_distance={max_distance} (T5: 32 and 128)")
        self.n_buckets, self.max_distance = n_buckets, max_distance

    def build_parameters(self) -> None:
        self.table = nn.Parameter(0.1 * torch.randn(self.n_heads, self.n_buckets))

    def buckets(self, tq: int, tk: int, device: torch.device | None = None) -> torch.Tensor:
        return t5_bucket(-_distances(tq, tk, device), bidirectional=not self.causal, n_buckets=self.n_buckets,
                         max_distance=self.max_distance)

    def bias(self, n_heads: int, tq: int, tk: int, *, device: torch.device | None = None) -> torch.Tensor:
        self.check_heads(n_heads)
        return self.table[:, self.buckets(tq, tk, device)]


class KerpleBias(AttachedPosition):
    """KERPLE: a conditionally positive definite kernel of the distance as the score bias."""

    def kernel(self, distance: torch.Tensor) -> torch.Tensor:
        """``[H, …]`` bias for non-negative distances."""
        raise NotImplementedError

    def bias(self, n_heads: int, tq: int, tk: int, *, device: torch.device | None = None) -> torch.Tensor:
        self.check_heads(n_heads)
        return self.kernel(_distances(tq, tk, device).abs().to(self.r1_raw.dtype))


def _softplus_inverse(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


KERPLE_PAPER = Paper("KERPLE: Kernelized Relative Positional Embedding for Length Extrapolation", "2205.09921", 2022)


@register("position", "kerple_log", category="Pe", family="position_biases", applies="relative", paper=KERPLE_PAPER)
class KerpleLog(KerpleBias):
    """KERPLE's logarithmic variant: b_h(i, j) = −r1_h · log(1 + r2_h·|i − j|), r1, r2 > 0 learned per head
    (Chi et al. 2022, the log kernel). Initialised at r1 = r2 = 1 (trevo's choice)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()

    def build_parameters(self) -> None:
        one = _softplus_inverse(torch.ones(self.n_heads))
        self.r1_raw, self.r2_raw = nn.Parameter(one.clone()), nn.Parameter(one.clone())

    def kernel(self, distance: torch.Tensor) -> torch.Tensor:
        r1, r2 = F.softplus(self.r1_raw)[:, None, None], F.softplus(self.r2_raw)[:, None, None]
        return -r1 * torch.log1p(r2 * distance)


@register("position", "kerple_power", category="Pe", family="position_biases", applies="relative",
          paper=KERPLE_PAPER)
class KerplePower(KerpleBias):
    """KERPLE's power variant: b_h(i, j) = −r1_h · |i − j|^r2_h, r1 > 0 and 0 < r2 ≤ 2 learned per head
    (Chi et al. 2022, the power kernel). Initialised at r2 = 1 and r1 = ALiBi's slopes, so it starts as
    ALiBi (trevo's choice)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()

    def build_parameters(self) -> None:
        self.r1_raw = nn.Parameter(_softplus_inverse(alibi_slopes(self.n_heads).double()).float())
        self.r2_raw = nn.Parameter(torch.zeros(self.n_heads))  # r2 = 2·σ(0) = 1

    def kernel(self, distance: torch.Tensor) -> torch.Tensor:
        r1, r2 = F.softplus(self.r1_raw)[:, None, None], 2 * torch.sigmoid(self.r2_raw)[:, None, None]
        # |i − j|^r2 with 0^r2 = 0 and a finite gradient at distance 0
        powered = torch.where(distance > 0, distance.clamp(min=1).pow(r2), torch.zeros_like(distance * r2))
        return -r1 * powered


def sinusoid_table(distances: torch.Tensor, width: int) -> torch.Tensor:
    """``[N, width]`` sinusoidal embeddings of (possibly negative) distances: [sin(r·ω), cos(r·ω)],
    ω_i = 10000^(−2i/width) (Vaswani et al.; Transformer-XL's R)."""
    inv_freq = 10000.0 ** (-torch.arange(0, width, 2, dtype=torch.float64, device=distances.device) / width)
    angles = distances.double()[:, None] * inv_freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)[:, :width]


@register("position", "transformer_xl", category="Pe", family="position_biases", applies="relative",
          paper=Paper("Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context", "1901.02860", 2019))
class TransformerXLRelative(AttachedPosition):
    """Transformer-XL's relative scores (Dai et al. 2019, §3.3): A_ij = q_i·k_j + q_i·W_R R_{i−j} + u·k_j +
    v·W_R R_{i−j}, with R the sinusoidal embedding of the distance, W_R a learned projection per head and
    u, v learned per head (terms b, c, d here; the mixer computes a). All four are divided by √d."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model

    def build_parameters(self) -> None:
        self.r_proj = nn.Linear(self.d_model, self.n_heads * self.head_dim, bias=False)
        self.u = nn.Parameter(torch.zeros(self.n_heads, self.head_dim))
        self.v = nn.Parameter(torch.zeros(self.n_heads, self.head_dim))

    def content_bias(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        b, h, tq, d = q.shape
        self.check_heads(h)
        tk = k.shape[-2]
        # every distance a query can meet: tk − 1 down to −(tk − 1) keys away (the later ones when bidirectional)
        span = torch.arange(-(tk - 1), tk, device=q.device)
        r = self.r_proj(sinusoid_table(span, self.d_model).to(q.dtype)).view(-1, h, d).transpose(0, 1)  # [H, N, D]
        position_scores = (q + self.v[None, :, None, :]) @ r.transpose(-1, -2)[None]  # [B, H, Tq, N]
        index = (_distances(tq, tk, q.device) + tk - 1).expand(b, h, tq, tk)
        by_distance = position_scores.gather(-1, index)
        key_scores = (self.u[None, :, None, :] @ k.transpose(-1, -2))  # [B, H, 1, Tk]
        return (by_distance + key_scores) / math.sqrt(d)


@register("position", "deberta", category="Pe", family="position_biases", applies="relative",
          paper=Paper("DeBERTa: Decoding-enhanced BERT with Disentangled Attention", "2006.03654", 2021))
class DisentangledPosition(AttachedPosition):
    """DeBERTa's disentangled attention (He et al. 2021, eq. 4): Ã_ij = (q_i·k_j + q_i·K_r[δ(i, j)] +
    k_j·Q_r[δ(j, i)]) / √(3d), with relative embeddings P ``[2k, d_model]``, K_r = P W_{k,r} and
    Q_r = P W_{q,r} per head, and δ(i, j) = clamp(i − j + k, 0, 2k − 1) (k = ``max_distance``). As a
    term added to the mixer's q·k/√d it is Ã − q·k/√d: the content-to-position and position-to-content
    scores, and the content score rescaled from 1/√d to 1/√(3d)."""

    def __init__(self, d_model: int, max_distance: int = 64) -> None:
        super().__init__()
        if max_distance < 1:
            raise IncompatibleError(f"deberta needs max_distance >= 1, got {max_distance}")
        self.d_model, self.max_distance = d_model, max_distance

    def build_parameters(self) -> None:
        self.embeddings = nn.Parameter(torch.randn(2 * self.max_distance, self.d_model))
        self.key_proj = nn.Linear(self.d_model, self.n_heads * self.head_dim, bias=False)  # W_{k,r}
        self.query_proj = nn.Linear(self.d_model, self.n_heads * self.head_dim, bias=False)  # W_{q,r}

    def buckets(self, distances: torch.Tensor) -> torch.Tensor:
        return (distances + self.max_distance).clamp(0, 2 * self.max_distance - 1)

    def content_bias(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        b, h, tq, d = q.shape
        self.check_heads(h)
        tk = k.shape[-2]
        key_r = self.key_proj(self.embeddings.to(q.dtype)).view(-1, h, d).transpose(0, 1)  # [H, 2k, D]
        query_r = self.query_proj(self.embeddings.to(q.dtype)).view(-1, h, d).transpose(0, 1)
        distance = _distances(tq, tk, q.device)  # i − j
        c2p = (q @ key_r.transpose(-1, -2)[None]).gather(-1, self.buckets(distance).expand(b, h, tq, tk))
        p2c = (k @ query_r.transpose(-1, -2)[None]).gather(-1, self.buckets(-distance).T.expand(b, h, tk, tq))
        content = q @ k.transpose(-1, -2)
        return (content + c2p + p2c.transpose(-1, -2)) / math.sqrt(3 * d) - content / math.sqrt(d)


@register("position", "tupe", category="Pe", family="position_biases", applies="relative", fixed_length=True,
          paper=Paper("Rethinking Positional Encoding in Language Pre-training (TUPE)", "2006.15595", 2021))
class UntiedPosition(AttachedPosition):
    """TUPE, untied positional attention (Ke et al. 2021, eq. 6): the absolute positions enter the scores
    through their own projections instead of being added to the tokens, α_ij = (q_i·k_j)/√(2d) +
    (p_i U_Q)·(p_j U_K)/√(2d) + b_{j−i}, with p a learned table of ``max_len`` positions, U_Q, U_K per
    head, and (TUPE-R, ``relative=True``) T5's bucketed bias b. As a term added to the mixer's q·k/√d it
    includes the content score's rescaling from 1/√d to 1/√(2d). The position term is absolute: scores
    are not invariant to a shift (``shift_invariant = False``)."""

    shift_invariant = False

    def __init__(self, d_model: int, max_len: int = 1024, relative: bool = True) -> None:
        super().__init__()
        self.d_model, self.max_len, self.relative = d_model, max_len, relative
        self.t5 = T5RelativeBias(d_model) if relative else None

    def attach(self, *, n_heads: int, head_dim: int, causal: bool) -> None:
        super().attach(n_heads=n_heads, head_dim=head_dim, causal=causal)
        if self.t5 is not None:
            self.t5.attach(n_heads=n_heads, head_dim=head_dim, causal=causal)

    def build_parameters(self) -> None:
        self.table = nn.Parameter(torch.randn(self.max_len, self.d_model))
        self.query_proj = nn.Linear(self.d_model, self.n_heads * self.head_dim, bias=False)  # U_Q
        self.key_proj = nn.Linear(self.d_model, self.n_heads * self.head_dim, bias=False)  # U_K

    def content_bias(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        b, h, tq, d = q.shape
        self.check_heads(h)
        tk = k.shape[-2]
        if tk > self.max_len:
            raise IncompatibleError(f"tupe holds {self.max_len} absolute positions and the attention reaches position "
                                    f"{tk - 1}; build the model with a larger max_len (model.max_len)")
        table = self.table[:tk].to(q.dtype)
        pq = self.query_proj(table[tk - tq:]).view(tq, h, d).transpose(0, 1)  # [H, Tq, D]
        pk = self.key_proj(table).view(tk, h, d).transpose(0, 1)  # [H, Tk, D]
        content = q @ k.transpose(-1, -2)
        out = (content + (pq @ pk.transpose(-1, -2))[None]) / math.sqrt(2 * d) - content / math.sqrt(d)
        return out if self.t5 is None else out + self.t5.bias(h, tq, tk, device=q.device)
