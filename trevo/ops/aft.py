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
import torch.nn.functional as F

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


# Causal AFT with a custom backward pass: O(T·D + T²) memory (only k, v, the bias, the outputs and
# their log-normalisers are kept), every form exactly causal (stabilisers from past keys only).

def _scores(k: torch.Tensor, bias: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """k_s + b_ts ``[B, Tq, Tk, D]``, −inf where the key is not visible (``visible`` ``[Tq, Tk]``)."""
    return (k[:, None] + _channel_bias(bias, k.shape[-1])[None]).masked_fill(~visible[None, :, :, None], NEG_INF)


def _grouped_matmul_t(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[G, Tq, Tk]``ᵀ × ``[B, Tq, D]`` → ``[B, Tk, D]`` (the transpose of ``_grouped_matmul``)."""
    g = weights.shape[0]
    return torch.einsum("gqk,bqgd->bkgd", weights, x.unflatten(-1, (g, x.shape[-1] // g))).flatten(-2)


def _group_outer(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """Σ over batch and each group's channels of a_td b_sd: ``[B, Tq, D]``, ``[B, Tk, D]`` → ``[G, Tq, Tk]``."""
    return torch.einsum("bqgd,bkgd->gqk", a.unflatten(-1, (groups, -1)), b.unflatten(-1, (groups, -1)))


def _diag_backward(k, v, bias, visible, lse, out, grad):
    """Gradient terms of one block of keys computed naively: (Σ_t P dO, Σ_t P dO⊙out, ∂bias)."""
    P = torch.exp(_scores(k, bias, visible) - lse[:, :, None])  # [B, Tq, Tk, D]
    dv = (P * grad[:, :, None]).sum(1)
    dk_out = (P * (grad * out)[:, :, None]).sum(1)
    dz = P * grad[:, :, None] * (v[:, None] - out[:, :, None])
    g = bias.shape[0]
    return dv, dk_out, dz.sum(0).unflatten(-1, (g, -1)).sum(-1).permute(2, 0, 1)


class _CausalAFT(torch.autograd.Function):
    """Dense bias (AFT-full): per query chunk the keys before it by two matmuls (stabilised by the
    prefix maximum of the keys and the bias row maximum) and its own triangle computed directly."""

    @staticmethod
    def forward(ctx, k, v, bias, chunk_size):
        tq, tk = bias.shape[-2:]
        offset, d = tk - tq, k.shape[-1]
        prefix_max = k.cummax(dim=1).values
        outs, lses = [], []
        for qs in range(0, tq, chunk_size):
            qe = min(qs + chunk_size, tq)
            ps, pe = offset + qs, offset + qe
            num, den, m = aft_partial(k[:, ps:pe], v[:, ps:pe], bias[:, qs:qe, ps:pe], causal=True)
            if ps > 0:
                m_k = prefix_max[:, ps - 1:ps]
                e = torch.exp(k[:, :ps] - m_k)
                block = bias[:, qs:qe, :ps]
                m_b = block.amax(dim=-1, keepdim=True)
                eb = torch.exp(block - m_b)
                scale = m_k + _channel_bias(m_b, d)[:, 0][None]
                num, den, m = merge((num, den, m), (_grouped_matmul(eb, e * v[:, :ps]), _grouped_matmul(eb, e), scale))
            outs.append(num / den)
            lses.append(m + torch.log(den))
        out, lse = torch.cat(outs, dim=1), torch.cat(lses, dim=1)
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(k, v, bias, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        k, v, bias, out, lse = ctx.saved_tensors
        c = ctx.chunk_size
        tq, tk = bias.shape[-2:]
        offset, d, g = tk - tq, k.shape[-1], bias.shape[0]
        prefix_max = k.cummax(dim=1).values
        dv, dk_out, dbias = torch.zeros_like(v), torch.zeros_like(k), torch.zeros_like(bias)
        for qs in range(0, tq, c):
            qe = min(qs + c, tq)
            ps, pe = offset + qs, offset + qe
            rows = slice(qs, qe)
            visible = torch.ones(qe - qs, qe - qs, dtype=torch.bool, device=k.device).tril()
            a, b, db = _diag_backward(k[:, ps:pe], v[:, ps:pe], bias[:, rows, ps:pe], visible, lse[:, rows],
                                      out[:, rows], grad[:, rows])
            dv[:, ps:pe] += a
            dk_out[:, ps:pe] += b
            dbias[:, rows, ps:pe] += db
            if ps > 0:  # P_ts = eb_ts · e_s · F_t, each factor bounded (see the module notes above)
                m_k = prefix_max[:, ps - 1:ps]
                e = torch.exp(k[:, :ps] - m_k)
                block = bias[:, rows, :ps]
                m_b = block.amax(dim=-1, keepdim=True)
                eb = torch.exp(block - m_b)
                G = torch.exp(m_k + _channel_bias(m_b, d)[:, 0][None] - lse[:, rows]) * grad[:, rows]
                Hq = G * out[:, rows]
                dv[:, :ps] += e * _grouped_matmul_t(eb, G)
                dk_out[:, :ps] += e * _grouped_matmul_t(eb, Hq)
                dbias[:, rows, :ps] += eb * (_group_outer(G, e * v[:, :ps], g) - _group_outer(Hq, e, g))
        return v * dv - dk_out, dv, dbias, None


def aft_causal(k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, *, chunk_size: int = 64) -> torch.Tensor:
    """Causal AFT with a dense bias ``[G, Tq, Tk]`` (queries the last Tq positions): O(T²·D) time,
    O(T·D + T²) memory."""
    return _CausalAFT.apply(k, v, bias, chunk_size)


class _CausalBandedAFT(torch.autograd.Function):
    """Bias zero beyond a window of at most c keys (AFT-local, AFT-conv): query chunk j takes chunks
    j−1 and j directly with their bias (``near_bias`` ``[G, nc, c, 2c]``), and every older key through
    AFT-simple's running sums (bias 0): O(T·c·D) time and memory O(T·D). Backward: the old keys'
    share is a reverse recurrence over chunks of Σ_t exp(α − lse_t) ∂out_t, with α the prefix maximum
    of the keys at a chunk's end (every exponent <= 0)."""

    @staticmethod
    def forward(ctx, k, v, near_bias, chunk_size):
        B, T, D = k.shape
        c, nc = chunk_size, near_bias.shape[1]
        kp, vp = (F.pad(x, (0, 0, c, nc * c - T)) for x in (k, v))  # a zero chunk before the first
        visible = _near_visible(c, k.device)
        state = aft_simple_init_state(B, D, k.device, k.dtype)
        outs, lses = [], []
        for j in range(nc):
            if j >= 2:  # chunk j − 2 leaves the band: from now on it is seen with bias 0
                state = absorb(state, kp[:, (j - 1) * c:j * c], vp[:, (j - 1) * c:j * c])
            near = _partial_visible(kp[:, j * c:(j + 2) * c], vp[:, j * c:(j + 2) * c], near_bias[:, j],
                                    visible if j else visible & _not_first(c, k.device))
            num, den, m = merge(near, (state["num"][:, None], state["den"][:, None], state["m"][:, None]))
            outs.append(num / den)
            lses.append(m + torch.log(den))
        out, lse = torch.cat(outs, dim=1)[:, :T], torch.cat(lses, dim=1)[:, :T]
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(k, v, near_bias, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        k, v, near_bias, out, lse = ctx.saved_tensors
        B, T, D = k.shape
        c, nc = ctx.chunk_size, near_bias.shape[1]
        kp, vp = (F.pad(x, (0, 0, c, nc * c - T)) for x in (k, v))
        gp, op = (F.pad(x, (0, 0, 0, nc * c - T)) for x in (grad, out))
        lp = F.pad(lse, (0, 0, 0, nc * c - T), value=float("inf"))  # padded queries weigh nothing
        dv, dk_out, dnear = torch.zeros_like(kp), torch.zeros_like(kp), torch.zeros_like(near_bias)
        visible = _near_visible(c, k.device)
        for j in range(nc):
            q = slice(j * c, (j + 1) * c)
            keys = slice(j * c, (j + 2) * c)
            a, b, db = _diag_backward(kp[:, keys], vp[:, keys], near_bias[:, j],
                                      visible if j else visible & _not_first(c, k.device), lp[:, q], op[:, q], gp[:, q])
            dv[:, keys] += a
            dk_out[:, keys] += b
            dnear[:, j] += db
        # Old keys: key chunk i is seen with bias 0 by the query chunks j >= i + 2.
        prefix_max = k.cummax(dim=1).values
        prefix_max = torch.cat([prefix_max, prefix_max[:, -1:].expand(B, nc * c - T, D)], dim=1)
        alpha = prefix_max[:, c - 1::c]  # [B, nc, D]: the largest key up to the end of each chunk
        carried_v = carried_o = torch.zeros(B, D, device=k.device, dtype=k.dtype)
        share_v, share_o = [None] * nc, [None] * nc
        for i in range(nc - 1, -1, -1):
            if i + 1 < nc:
                step = torch.exp(alpha[:, i] - alpha[:, i + 1])
                carried_v, carried_o = carried_v * step, carried_o * step
            if i + 2 < nc:
                q = slice((i + 2) * c, (i + 3) * c)
                w = torch.exp(alpha[:, i, None] - lp[:, q])
                carried_v = carried_v + (w * gp[:, q]).sum(1)
                carried_o = carried_o + (w * gp[:, q] * op[:, q]).sum(1)
            share_v[i], share_o[i] = carried_v, carried_o
        e = torch.exp(kp[:, c:].unflatten(1, (nc, c)) - alpha[:, :, None])  # [B, nc, c, D]
        dv[:, c:] += (e * torch.stack(share_v, 1)[:, :, None]).flatten(1, 2)
        dk_out[:, c:] += (e * torch.stack(share_o, 1)[:, :, None]).flatten(1, 2)
        dv, dk_out = dv[:, c:c + T], dk_out[:, c:c + T]
        return v * dv - dk_out, dv, dnear, None


def _near_visible(c: int, device) -> torch.Tensor:
    """[c, 2c]: query t of a chunk sees key s' of (previous chunk, own chunk) when s' <= c + t."""
    return torch.arange(2 * c, device=device)[None, :] <= c + torch.arange(c, device=device)[:, None]


def _not_first(c: int, device) -> torch.Tensor:
    """The first chunk has no previous chunk: only its own keys."""
    return (torch.arange(2 * c, device=device) >= c)[None, :]


def _partial_visible(k, v, bias, visible):
    """``aft_partial`` over a block of keys with an explicit visibility mask ``[Tq, Tk]``."""
    scores = _scores(k, bias, visible)
    m = scores.amax(dim=2)
    p = torch.exp(scores - m[:, :, None])
    return (p * v[:, None]).sum(dim=2), p.sum(dim=2), m


def near_band_bias(band: torch.Tensor, length: int, chunk_size: int, window: int) -> torch.Tensor:
    """The causal band bias of ``banded_bias`` for each chunk's (previous chunk, own chunk) keys:
    ``[G, nc, c, 2c]`` (rows past ``length`` are padding and repeat the last row's bias)."""
    c = chunk_size
    nc = -(-length // c)
    rows = torch.arange(nc, device=band.device)[:, None] * c + torch.arange(c, device=band.device)  # [nc, c]
    cols = rows[:, :1] - c + torch.arange(2 * c, device=band.device)  # [nc, 2c]
    offset = rows[:, :, None] - cols[:, None, :]
    inside = (offset >= 0) & (offset < band.shape[-1])
    row_idx = rows.clamp_max(band.shape[1] - 1) if band.shape[1] > 1 else torch.zeros_like(rows)
    picked = band[:, row_idx[:, :, None].expand_as(offset), offset.clamp(0, band.shape[-1] - 1)]
    return torch.where(inside, picked, torch.zeros((), device=band.device, dtype=band.dtype))


def aft_causal_banded(k: torch.Tensor, v: torch.Tensor, near_bias: torch.Tensor, *, chunk_size: int) -> torch.Tensor:
    """Causal AFT whose bias is zero more than ``chunk_size`` keys back (see ``_CausalBandedAFT``)."""
    return _CausalBandedAFT.apply(k, v, near_bias, chunk_size)
