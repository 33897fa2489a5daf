"""Attention Free Transformer (Zhai et al., "An Attention Free Transformer", arXiv:2105.14103, eq. 2-6).

Every AFT variant is one operation with a pairwise position bias b:

    Y_t = σ(Q_t) ⊙ Σ_t' exp(K_t' + b_{t,t'}) ⊙ V_t' / Σ_t' exp(K_t' + b_{t,t'})

AFT-full learns b = w ∈ R^{T×T}; AFT-simple has b = 0; AFT-local keeps w inside the band |t−t'| < s
and 0 outside; AFT-conv's b is a per-head kernel of size s that depends on t'−t only (0 outside the
window). The functions here compute the weighted average (without σ(Q), which the module applies).

Layout: k, v ``[B, Tk, D]``; bias ``[G, Tq, Tk]`` with G channel groups (heads) sharing a bias, D a
multiple of G. When Tq < Tk the queries are the *last* Tq positions (a chunk after a cache), so the
causal mask is aligned bottom-right. ``key_padding_mask`` ``[B, Tk]`` is True at real tokens.
Every form is stabilised by maxima of K (and of b) taken over keys a query may see, so exp never
overflows, and causal forms use only past keys for those maxima: outputs are exactly causal.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def _channel_bias(bias: torch.Tensor, d: int) -> torch.Tensor:
    """``[G, Tq, Tk]`` → ``[Tq, Tk, D]``: each group's bias repeated over its channels."""
    return bias.repeat_interleave(d // bias.shape[0], dim=0).permute(1, 2, 0)


def _visible(tq: int, tk: int, causal: bool, key_padding_mask: torch.Tensor | None,
             device: torch.device) -> torch.Tensor | None:
    """Boolean ``[B|1, Tq, Tk]``: True where query i may see key j (None: everywhere)."""
    mask = None
    if causal:
        i = torch.arange(tq, device=device)[:, None] + (tk - tq)
        mask = (torch.arange(tk, device=device)[None, :] <= i)[None]
    if key_padding_mask is not None:
        pad = key_padding_mask.bool()[:, None, :]
        mask = pad if mask is None else mask & pad
    return mask


def aft_quadratic(k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, *, causal: bool,
              key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The reference: for every (t, t', channel) the weight softmax_t'(K_t' + b_{t,t'}), summed
    against V. Materialises ``[B, Tq, Tk, D]``."""
    tq, tk = bias.shape[-2:]
    scores = k[:, None] + _channel_bias(bias, k.shape[-1])[None]
    mask = _visible(tq, tk, causal, key_padding_mask, k.device)
    if mask is not None:
        scores = scores.masked_fill(~mask[..., None], NEG_INF)
    return (torch.softmax(scores, dim=2) * v[:, None]).sum(dim=2)


def _grouped_matmul(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[G, Tq, Tk]`` × ``[B, Tk, D]`` → ``[B, Tq, D]``, group g acting on its channels."""
    g = weights.shape[0]
    return torch.einsum("gqk,bkgd->bqgd", weights, x.unflatten(-1, (g, x.shape[-1] // g))).flatten(-2)


def aft_blockwise(k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, *, causal: bool,
                  key_padding_mask: torch.Tensor | None = None, chunk_size: int = 64) -> torch.Tensor:
    """The paper's efficient form: exp(b) @ (exp(K) ⊙ V) / exp(b) @ exp(K) (eq. 3), O(T²+T·D) memory.

    Bidirectional: one matmul, K stabilised by its maximum over real keys and b by its row maximum.
    Causal: per query chunk, the keys before the chunk (one matmul, stabilised by their own maximum,
    so future keys never enter) plus the chunk's own lower-triangular block computed naively; the two
    partial sums are merged at a common scale like an online softmax."""
    tq, tk = bias.shape[-2:]
    d = k.shape[-1]
    if not causal:
        real = None if key_padding_mask is None else key_padding_mask.bool()[..., None]
        k_seen = k if real is None else k.masked_fill(~real, NEG_INF)
        e = torch.exp(k_seen - k_seen.amax(dim=1, keepdim=True))
        eb = torch.exp(bias - bias.amax(dim=-1, keepdim=True))
        return _grouped_matmul(eb, e * v) / _grouped_matmul(eb, e)
    offset = tk - tq
    out = []
    for qs in range(0, tq, chunk_size):
        qe = min(qs + chunk_size, tq)
        ps, pe = offset + qs, offset + qe
        diag = aft_partial(k[:, ps:pe], v[:, ps:pe], bias[:, qs:qe, ps:pe], causal=True)
        num, den, m = diag
        if ps > 0:
            m_k = k[:, :ps].amax(dim=1, keepdim=True)  # [B, 1, D]
            e = torch.exp(k[:, :ps] - m_k)
            block = bias[:, qs:qe, :ps]
            m_b = block.amax(dim=-1, keepdim=True)  # [G, c, 1]
            eb = torch.exp(block - m_b)
            scale = m_k + _channel_bias(m_b, d)[:, 0][None]  # [B, c, D]
            num, den, m = merge((num, den, m), (_grouped_matmul(eb, e * v[:, :ps]), _grouped_matmul(eb, e), scale))
        out.append(num / den)
    return torch.cat(out, dim=1)


def aft_partial(k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, *, causal: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unnormalised sums over a block of keys, at the scale m: (Σ e^(s−m) V, Σ e^(s−m), m) with
    s = K + b, each ``[B, Tq, D]``. Every query must see at least one key of the block."""
    tq, tk = bias.shape[-2:]
    scores = k[:, None] + _channel_bias(bias, k.shape[-1])[None]
    mask = _visible(tq, tk, causal, None, k.device)
    if mask is not None:
        scores = scores.masked_fill(~mask[..., None], NEG_INF)
    m = scores.amax(dim=2)
    p = torch.exp(scores - m[:, :, None])
    return (p * v[:, None]).sum(dim=2), p.sum(dim=2), m


def merge(a: tuple[torch.Tensor, torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two partial sums (num, den, scale) brought to their common maximum scale and added."""
    (na, da, ma), (nb, db, mb) = a, b
    m = torch.maximum(ma, mb)
    # A scale of -inf (nothing summed yet) contributes exp(-inf) = 0; m itself stays finite.
    ca, cb = torch.exp(ma - m), torch.exp(mb - m)
    return na * ca + nb * cb, da * ca + db * cb, m


# AFT-simple (b = 0): O(T·D) with a constant-size recurrent state (m, num, den), each [B, D].

def aft_simple_global(k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """Bidirectional AFT-simple: one context vector Σ softmax_t(K) ⊙ V, shared by all positions."""
    if key_padding_mask is not None:
        k = k.masked_fill(~key_padding_mask.bool()[..., None], NEG_INF)
    ctx = (torch.softmax(k, dim=1) * v).sum(dim=1, keepdim=True)
    return ctx.expand_as(v)


def aft_simple_init_state(batch: int, d: int, device, dtype) -> dict[str, torch.Tensor]:
    zeros = torch.zeros(batch, d, device=device, dtype=dtype)
    return {"m": torch.full_like(zeros, NEG_INF), "num": zeros, "den": zeros.clone()}


def absorb(state: dict[str, torch.Tensor], k: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """The running sums after adding keys k, v ``[B, n, D]`` (n >= 1) with zero bias."""
    m = torch.maximum(state["m"], k.amax(dim=1))
    p = torch.exp(k - m[:, None])
    c = torch.exp(state["m"] - m)
    return {"m": m, "num": state["num"] * c + (p * v).sum(dim=1), "den": state["den"] * c + p.sum(dim=1)}


def aft_simple_chunked(k: torch.Tensor, v: torch.Tensor, state: dict[str, torch.Tensor], chunk_size: int = 64
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Causal AFT-simple: inside a chunk the naive lower-triangular sums, merged with the state
    carried from earlier chunks. Returns (outputs ``[B, T, D]``, state after the last position)."""
    out = []
    zero_bias = torch.zeros(1, 1, 1, device=k.device, dtype=k.dtype)
    # split views, not slices in the loop: a slice's backward scatters into a full-length zero tensor
    for kc, vc in zip(k.split(chunk_size, dim=1), v.split(chunk_size, dim=1), strict=True):
        c = kc.shape[1]
        num, den, _ = merge(aft_partial(kc, vc, zero_bias.expand(1, c, c), causal=True),
                            (state["num"][:, None], state["den"][:, None], state["m"][:, None]))
        out.append(num / den)
        state = absorb(state, kc, vc)
    return torch.cat(out, dim=1), state


def aft_simple_recurrent(k: torch.Tensor, v: torch.Tensor, state: dict[str, torch.Tensor]
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Causal AFT-simple one step at a time (the RNN form)."""
    out = []
    for kt, vt in zip(k.split(1, dim=1), v.split(1, dim=1), strict=True):
        state = absorb(state, kt, vt)
        out.append(state["num"] / state["den"])
    return torch.stack(out, dim=1), state


def banded_bias(band: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, window: int, causal: bool
                ) -> torch.Tensor:
    """The dense bias ``[G, Tq, Tk]`` of a band: 0 outside the window, inside it
    ``band[g, t, o]`` with o = t − t' (causal, 0 <= o < s) or o = t' − t + s − 1 (|t − t'| < s).

    ``band`` is ``[G, R, n_offsets]``; ``rows`` ``[Tq]`` and ``cols`` ``[Tk]`` are the absolute query
    and key positions; rows index R when R > 1 (AFT-local's per-position bias), R = 1 is AFT-conv's
    shared kernel."""
    offset = (rows[:, None] - cols[None, :]) if causal else (cols[None, :] - rows[:, None] + window - 1)
    inside = (offset >= 0) & (offset < band.shape[-1])
    idx = offset.clamp(0, band.shape[-1] - 1)
    row_idx = rows if band.shape[1] > 1 else torch.zeros_like(rows)
    picked = band[:, row_idx[:, None], idx]  # [G, Tq, Tk]
    return torch.where(inside, picked, torch.zeros((), device=band.device, dtype=band.dtype))
