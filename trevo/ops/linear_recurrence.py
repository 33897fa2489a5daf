"""One linear-recurrence engine for the linear-attention / linear-RNN family, in three exact forms.

Layout: q, k ``[B, H, T, Dk]``, v ``[B, H, T, Dv]``, state ``[B, H, Dk, Dv]``. The recurrence is

    S_t = diag(exp(log_decay_t)) S_{t-1} + k_t v_tᵀ,        o_t = scale · S_tᵀ q_t

with ``log_decay`` None (no decay: linear attention), ``[B, H, T]`` (a scalar per head and step:
RetNet, Mamba-2 / SSD) or ``[B, H, T, Dk]`` (a vector over the key dimension: GLA, HGRN2, RWKV-6).
Decays are factors in (0, 1], so ``log_decay <= 0``.

With a ``bonus`` u ``[H, Dk]`` (RWKV-5/6, "Eagle and Finch", arXiv:2404.05892, eq. for wkv_t) the
query reads the state *before* the current write, and the current token enters through u instead:

    o_t = scale · (S_{t-1}ᵀ q_t + (q_tᵀ (u ⊙ k_t)) v_t),     S_t = diag(exp(log_decay_t)) S_{t-1} + k_t v_tᵀ

so the decay of step t only acts on later steps (RWKV's w_t multiplies the state that token t+1 reads).

With a ``value_log_decay`` ``[B, H, T, Dv]`` the columns of the state decay too (a gate on the value
side, as in the first pass of ABC / Gated Slot Attention, arXiv:2409.07146, where the slots are the
value dimension):

    S_t = diag(exp(log_decay_t)) S_{t-1} diag(exp(value_log_decay_t)) + k_t v_tᵀ

Its ``chunk`` form takes no decay or a scalar one on the key side (a scalar commutes into the value
side); ``quadratic`` and ``recurrent`` take any. It is an option of its own, at the end of this file.

Forms (``form``):
  ``quadratic`` the masked quadratic form, O(T²) memory: the reference. Pairwise decays are segment
                sums Σ_{i<j<=t} log_decay_j, never differences of long cumulative sums (which lose
                all precision in float32 after a few thousand strongly decayed steps).
  ``chunk``     matmuls inside chunks of ``chunk_size`` plus the state carried across chunks;
                O(T·C·Dk + T·Dk·Dv). Gates stay in log space relative to a point inside the chunk so
                that every exponent taken is <= 0: strong decay underflows to 0 harmlessly and nothing
                overflows. A vector decay cannot be folded into q and k with one reference point
                without positive exponents, so each chunk is split into sub-chunks: between
                sub-chunks the reference is the start of the query's sub-chunk; inside a sub-chunk the
                decay is applied elementwise.
  ``recurrent`` one step at a time: the inference form and the second reference.

On CUDA with Triton installed the ``chunk`` form runs as the Triton kernels of
``trevo.ops.triton.linear_recurrence`` (scalar and vector decay, no bonus; the same math).

Every form takes an initial state and returns the final state. ``padding_mask`` ``[B, T]`` (True =
real token) turns padded steps into no-ops (no write, no decay), so padding changes neither the
outputs at real positions nor the final state.
"""

from __future__ import annotations

import math

import torch

from trevo.errors import TrevoError
from trevo.ops import triton as triton_kernels

FORMS = ("quadratic", "chunk", "recurrent")


def linear_recurrence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                      log_decay: torch.Tensor | None = None, bonus: torch.Tensor | None = None,
                      initial_state: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None,
                      scale: float = 1.0, form: str = "chunk", chunk_size: int = 64,
                      value_log_decay: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the gated linear recurrence (see the module docstring). Returns (o ``[B, H, T, Dv]``,
    final state ``[B, H, Dk, Dv]``). ``form="auto"`` is recurrent for one token, chunk otherwise."""
    if value_log_decay is not None:
        return _value_gated(q, k, v, log_decay, value_log_decay, bonus, initial_state, padding_mask, scale, form,
                            chunk_size)
    g, S0 = _prepare(q, k, v, log_decay, bonus, initial_state, padding_mask)
    if padding_mask is not None:
        k = k * padding_mask[:, None, :, None].to(k.dtype)
    if form == "auto":
        form = "recurrent" if q.shape[2] == 1 else "chunk"
    if form not in FORMS:
        raise TrevoError(f"unknown form {form!r}; choose one of auto, {', '.join(FORMS)}")
    if q.shape[2] == 0:
        return v.new_zeros(v.shape), S0
    if form == "chunk" and chunk_size < 1:
        raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
    # the kernels have no bonus term (RWKV-5/6 stay on the torch form)
    if form == "chunk" and bonus is None and triton_kernels.takes_chunk(chunk_size) and triton_kernels.enabled(
            q, k, v, g, S0):
        from trevo.ops.triton.linear_recurrence import chunk_linear_recurrence

        o, S = chunk_linear_recurrence(q, k, v, g.to(q.dtype), S0.to(q.dtype), chunk_size)
        return (o * scale).to(v.dtype), S
    if g.dtype != q.dtype:  # under 16-bit autocast (see _prepare): the products in float32 too, output float32
        # Why: with the decay-weighted products and the output in bfloat16, a GLA mixer's (d 64, T 256)
        # gradients of the per-head norm after the recurrence were 7.6% off float64 (the norm divides by a
        # head's spread, so it amplifies the output's 8-bit rounding), 0.8% in float32 (tests/test_precision.py).
        # The cost: no 16-bit matmul speed-up for this op's torch forms (the Triton kernel keeps its own dtype).
        with torch.autocast(q.device.type, enabled=False):
            q, k, v = q.float(), k.float(), v.float()
            bonus = bonus.float() if bonus is not None else None
            return _forms(q, k, v, g, bonus, S0, form, chunk_size, scale)
    return _forms(q, k, v, g, bonus, S0, form, chunk_size, scale)


def _forms(q, k, v, g, bonus, S0, form, chunk_size, scale):
    if form == "recurrent":
        o, S = _recurrent(q, k, v, g, bonus, S0)
    elif form == "quadratic":
        o, S = _quadratic(q, k, v, g, bonus, S0)
    else:
        o, S = _chunk(q, k, v, g, bonus, S0, chunk_size)
    return (o * scale).to(v.dtype), S


def _prepare(q, k, v, log_decay, bonus, initial_state, padding_mask):
    """Validate shapes; return the log decay as ``[B, H, T, 1 or Dk]`` (zeros when None, zero at
    padded steps) and the initial state (zeros when None)."""
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise TrevoError(f"expected q, k [B, H, T, Dk] and v [B, H, T, Dv]; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    if log_decay is None:
        g = q.new_zeros(B, H, T, 1)
    elif log_decay.shape == (B, H, T):
        g = log_decay[..., None]
    elif log_decay.shape == (B, H, T, Dk):
        g = log_decay
    else:
        raise TrevoError(f"log_decay must be [B, H, T] = {(B, H, T)} or [B, H, T, Dk] = {(B, H, T, Dk)}, "
                         f"got {tuple(log_decay.shape)}")
    if bonus is not None and bonus.shape != (H, Dk):
        raise TrevoError(f"bonus must be [H, Dk] = {(H, Dk)}, got {tuple(bonus.shape)}")
    if padding_mask is not None:
        if padding_mask.shape != (B, T):
            raise TrevoError(f"padding_mask must be [B, T] = {(B, T)}, got {tuple(padding_mask.shape)}")
        g = g * padding_mask[:, None, :, None].to(g.dtype)
    if initial_state is None:
        S0 = q.new_zeros(B, H, Dk, Dv)
    elif initial_state.shape != (B, H, Dk, Dv):
        raise TrevoError(f"initial_state must be [B, H, Dk, Dv] = {(B, H, Dk, Dv)}, "
                         f"got {tuple(initial_state.shape)}")
    else:
        S0 = initial_state
    # Under mixed precision (autocast to 16 bits) the log decays, their cumulative sums and the state carried
    # across chunks stay float32: a bfloat16 cumsum of log decays loses a factor e^(2^-8·|Σg|) per chunk, and
    # a 16-bit state rounds every update. The products themselves run in 16 bits (autocast casts them).
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled(
        q.device.type) else q.dtype
    return g.to(work), S0.to(work)


def _bonus_term(q, k, v, bonus):
    """(q_tᵀ (u ⊙ k_t)) v_t for ``[B, H, T, D]`` inputs (``[B, H, D]`` when ``bonus`` is pre-broadcast)."""
    u = bonus[:, None, :] if q.dim() == 4 else bonus
    return ((q * u * k).sum(-1, keepdim=True)) * v


def _recurrent(q, k, v, g, bonus, S):
    out = []
    # unbind, not indexing: the gradient of x[:, :, t] is a zero tensor of x's full size per step
    for qt, kt, vt, gt in zip(q.unbind(2), k.unbind(2), v.unbind(2), g.unbind(2), strict=True):
        write = kt[..., :, None] * vt[..., None, :]
        decay = torch.exp(gt)[..., None]
        if bonus is None:
            S = decay * S + write
            out.append((qt[..., None, :] @ S)[..., 0, :])
        else:
            out.append((qt[..., None, :] @ S)[..., 0, :] + _bonus_term(qt, kt, vt, bonus))
            S = decay * S + write
    return torch.stack(out, dim=2), S


def segsum(x: torch.Tensor) -> torch.Tensor:
    """``out[..., t, i] = Σ_{i<j<=t} x[..., j]`` for i <= t and -inf above the diagonal, summed
    directly (not as a difference of cumulative sums, which cancels catastrophically)."""
    T = x.shape[-1]
    xx = x[..., :, None].expand(*x.shape, T)  # xx[..., j, i] = x_j
    strict = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(-1)
    out = xx.masked_fill(~strict, 0).cumsum(dim=-2)
    return out.masked_fill(~strict.logical_or(torch.eye(T, dtype=torch.bool, device=x.device)), -math.inf)


def _quadratic(q, k, v, g, bonus, S0):
    gd = g.transpose(-1, -2)  # [B, H, G, T]
    seg = segsum(gd)  # [B, H, G, T(t), T(i)]
    if bonus is not None:  # the query reads S_{t-1}: drop g_t and the diagonal
        T = q.shape[2]
        diag = torch.eye(T, dtype=torch.bool, device=q.device)
        seg = (seg - gd[..., :, None]).masked_fill(diag, -math.inf)
    w = torch.exp(seg)
    if g.shape[-1] == 1:
        A = (q @ k.transpose(-1, -2)) * w[:, :, 0]
    else:
        A = torch.einsum("bhtd,bhid,bhdti->bhti", q, k, w)
    o = A @ v
    L = g.cumsum(dim=2)  # decay from the start, for the initial state
    Lq = torch.cat([torch.zeros_like(L[:, :, :1]), L[:, :, :-1]], dim=2) if bonus is not None else L
    o = o + (q * torch.exp(Lq)) @ S0
    if bonus is not None:
        o = o + _bonus_term(q, k, v, bonus)
    # Decay from step i to the end, Σ_{j>i} g_j, as a suffix sum (precise for the steps that matter).
    suffix = g.flip(2).cumsum(dim=2).flip(2)
    after = torch.cat([suffix[:, :, 1:], torch.zeros_like(suffix[:, :, :1])], dim=2)
    S = torch.exp(suffix[:, :, :1]).transpose(-1, -2) * S0 + (k * torch.exp(after)).transpose(-1, -2) @ v
    return o, S


def _sub_chunk(C: int) -> int:
    """The divisor of C closest to √C: balances the two vector-decay costs (T·C²/c and T·c·Dk)."""
    divisors = [d for d in range(1, C + 1) if C % d == 0]
    return min(divisors, key=lambda d: abs(d - math.sqrt(C)))


def _chunk(q, k, v, g, bonus, S0, C):
    B, H, T, Dk = q.shape
    Dv, G = v.shape[-1], g.shape[-1]
    N = -(-T // C)
    pad = N * C - T
    if pad:  # zero keys and zero log decay: padded steps are no-ops

        def padded(x):
            return torch.cat([x, x.new_zeros(*x.shape[:2], pad, x.shape[-1])], dim=2)

        qc, kc, vc, gc = padded(q), padded(k), padded(v), padded(g)
    else:
        qc, kc, vc, gc = q, k, v, g
    qc, kc, vc, gc = (x.reshape(B, H, N, C, x.shape[-1]) for x in (qc, kc, vc, gc))
    b = gc.cumsum(dim=3)  # inclusive log decay from the chunk start, >= -C·max|g|
    # What the query at t has seen decay by: with a bonus b_{t-1}, taken by shifting (b_t − g_t would
    # round differently from b_{t-1} and put a float32 error on the dominant i = t−1 term).
    bq = torch.cat([torch.zeros_like(b[:, :, :, :1]), b[:, :, :, :-1]], dim=3) if bonus is not None else b
    idx = torch.arange(C, device=q.device)
    causal = idx[:, None] > idx[None, :] if bonus is not None else idx[:, None] >= idx[None, :]

    if G == 1:
        diff = bq[..., :, None, 0] - b[..., None, :, 0]  # [B, H, N, C, C], <= 0 where causal
        w = torch.exp(diff.masked_fill(~causal, -math.inf))
        o = ((qc @ kc.transpose(-1, -2)) * w) @ vc
    else:
        o = _vector_intra(qc, kc, vc, b, bq, causal, _sub_chunk(C))

    b_last = b[:, :, :, -1:]  # [B, H, N, 1, G]
    writes = (kc * torch.exp(b_last - b)).transpose(-1, -2) @ vc  # [B, H, N, Dk, Dv]
    decays = torch.exp(b_last).transpose(-1, -2)  # [B, H, N, G, 1]
    states = []
    S = S0
    # unbind, not indexing: the gradient of x[:, :, n] is a zero tensor of x's full size per chunk,
    # which made the backward pass quadratic in T.
    for decay, write in zip(decays.unbind(dim=2), writes.unbind(dim=2), strict=True):
        states.append(S)
        S = decay * S + write
    o = o + (qc * torch.exp(bq)) @ torch.stack(states, dim=2)
    o = o.reshape(B, H, N * C, Dv)[:, :, :T]
    if bonus is not None:
        o = o + _bonus_term(q, k, v, bonus)
    return o, S


def _vector_intra(q, k, v, b, bq, causal, c):
    """Within-chunk output for a vector decay, every exponent <= 0 (see the module docstring)."""
    B, H, N, C, Dk = q.shape
    nS = C // c
    sub = torch.arange(C, device=q.device) // c
    # ref[I] = b at the last step before sub-chunk I (0 for the first): the query side carries
    # bq_t - ref (<= 0), the key side ref - b_i (<= 0 for the keys before sub-chunk I).
    ref = torch.cat([torch.zeros_like(b[:, :, :, :1]), b[:, :, :, c - 1:C - 1:c]], dim=3)  # [B,H,N,nS,Dk]
    q_off = q * torch.exp(bq - ref.repeat_interleave(c, dim=3))
    before = sub[None, :] < torch.arange(nS, device=q.device)[:, None]  # [nS, C]: key i before sub-chunk I
    expo = (ref[:, :, :, :, None, :] - b[:, :, :, None, :, :]).masked_fill(~before[..., None], -math.inf)
    k_off = k[:, :, :, None] * torch.exp(expo)  # [B, H, N, nS, C, Dk]
    A_off = q_off.reshape(B, H, N, nS, c, Dk) @ k_off.transpose(-1, -2)  # [B, H, N, nS, c, C]
    o = A_off.reshape(B, H, N, C, C) @ v
    # Inside a sub-chunk: the pairwise decay elementwise, [B, H, N, nS, c, c, Dk].
    qs, ks, vs = (x.reshape(B, H, N, nS, c, x.shape[-1]) for x in (q, k, v))
    bqs, bs = bq.reshape(B, H, N, nS, c, Dk), b.reshape(B, H, N, nS, c, Dk)
    mask = causal[:c, :c]
    expo = (bqs[..., :, None, :] - bs[..., None, :, :]).masked_fill(~mask[..., None], -math.inf)
    A_diag = torch.einsum("...td,...id,...tid->...ti", qs, ks, torch.exp(expo))
    return o + (A_diag @ vs).reshape(B, H, N, C, v.shape[-1])


# The value-side decay (``value_log_decay``): an option on top of the forms above, in its own functions.

def _value_gated(q, k, v, log_decay, value_log_decay, bonus, initial_state, padding_mask, scale, form, chunk_size):
    if bonus is not None:
        raise TrevoError("value_log_decay does not combine with a bonus; pass one of them")
    g, S0 = _prepare(q, k, v, log_decay, None, initial_state, padding_mask)
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    if value_log_decay.shape != (B, H, T, Dv):
        raise TrevoError(f"value_log_decay must be [B, H, T, Dv] = {(B, H, T, Dv)}, "
                         f"got {tuple(value_log_decay.shape)}")
    gv = value_log_decay.to(q.dtype)
    if padding_mask is not None:
        real = padding_mask[:, None, :, None].to(q.dtype)
        k, gv = k * real, gv * real
    if form == "auto":
        form = "recurrent" if T == 1 else "chunk"
    if form not in FORMS:
        raise TrevoError(f"unknown form {form!r}; choose one of auto, {', '.join(FORMS)}")
    if T == 0:
        return v.new_zeros(v.shape), S0
    if form == "recurrent":
        o, S = _value_gated_recurrent(q, k, v, g, gv, S0)
    elif form == "quadratic":
        o, S = _value_gated_quadratic(q, k, v, g, gv, S0)
    else:
        if g.shape[-1] != 1:
            raise TrevoError("the chunk form takes value_log_decay with no or a scalar log_decay on the key side; "
                             "use form='quadratic' or 'recurrent' for a vector decay on both sides")
        if chunk_size < 1:
            raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
        o, S = _value_gated_chunk(q, k, v, gv + g, S0, chunk_size)
    return o * scale, S


def _value_gated_recurrent(q, k, v, g, gv, S):
    out = []
    for qt, kt, vt, gt, gvt in zip(q.unbind(2), k.unbind(2), v.unbind(2), g.unbind(2), gv.unbind(2), strict=True):
        S = torch.exp(gt)[..., None] * S * torch.exp(gvt)[..., None, :] + kt[..., :, None] * vt[..., None, :]
        out.append((qt[..., None, :] @ S)[..., 0, :])
    return torch.stack(out, dim=2), S


def _value_gated_quadratic(q, k, v, g, gv, S0):
    wk = torch.exp(segsum(g.transpose(-1, -2)))  # [B, H, G, T, T]
    wv = torch.exp(segsum(gv.transpose(-1, -2)))  # [B, H, Dv, T, T]
    A = (q @ k.transpose(-1, -2)) * wk[:, :, 0] if g.shape[-1] == 1 else torch.einsum("bhtd,bhid,bhdti->bhti", q, k, wk)
    o = torch.einsum("bhti,bheti,bhie->bhte", A, wv, v)
    o = o + ((q * torch.exp(g.cumsum(dim=2))) @ S0) * torch.exp(gv.cumsum(dim=2))

    def suffix(x):  # (Σ_{j>=0} x_j, Σ_{j>i} x_j): decays from the start and from step i to the end
        s = x.flip(2).cumsum(dim=2).flip(2)
        return s[:, :, :1], torch.cat([s[:, :, 1:], torch.zeros_like(s[:, :, :1])], dim=2)

    (gk_all, gk_after), (gv_all, gv_after) = suffix(g), suffix(gv)
    S = torch.exp(gk_all).transpose(-1, -2) * S0 * torch.exp(gv_all)
    return o, S + (k * torch.exp(gk_after)).transpose(-1, -2) @ (v * torch.exp(gv_after))


def _value_gated_chunk(q, k, v, gv, S0, C):
    """Chunks as in ``_chunk`` with the decay on the value side: every exponent taken is <= 0."""
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    N = -(-T // C)
    pad = N * C - T

    def chunked(x):
        if pad:
            x = torch.cat([x, x.new_zeros(*x.shape[:2], pad, x.shape[-1])], dim=2)
        return x.reshape(B, H, N, C, x.shape[-1])

    qc, kc, vc, gc = chunked(q), chunked(k), chunked(v), chunked(gv)
    b = gc.cumsum(dim=3)  # [B, H, N, C, Dv]
    o = _value_intra(qc, kc, vc, b, _sub_chunk(C))
    b_last = b[:, :, :, -1:]
    writes = kc.transpose(-1, -2) @ (vc * torch.exp(b_last - b))  # [B, H, N, Dk, Dv]
    states = []
    S = S0
    for decay, write in zip(torch.exp(b_last).unbind(dim=2), writes.unbind(dim=2), strict=True):
        states.append(S)
        S = S * decay + write
    o = o + (qc @ torch.stack(states, dim=2)) * torch.exp(b)
    return o.reshape(B, H, N * C, Dv)[:, :, :T], S


def _value_intra(q, k, v, b, c):
    """Within-chunk output for a value-side decay: keys of earlier sub-chunks through the reference
    point before the query's sub-chunk, keys of its own sub-chunk elementwise."""
    B, H, N, C, Dk = q.shape
    Dv = v.shape[-1]
    nS = C // c
    sub = torch.arange(C, device=q.device) // c
    ref = torch.cat([torch.zeros_like(b[:, :, :, :1]), b[:, :, :, c - 1:C - 1:c]], dim=3)  # [B, H, N, nS, Dv]
    before = sub[None, :] < torch.arange(nS, device=q.device)[:, None]  # [nS, C]
    expo = (ref[:, :, :, :, None] - b[:, :, :, None]).masked_fill(~before[..., None], -math.inf)
    v_off = v[:, :, :, None] * torch.exp(expo)  # [B, H, N, nS, C, Dv]
    qs, ks, vs, bs = (x.reshape(B, H, N, nS, c, x.shape[-1]) for x in (q, k, v, b))
    o_off = (qs @ k[:, :, :, None].transpose(-1, -2)) @ v_off * torch.exp(bs - ref[:, :, :, :, None])
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    expo = (bs[..., :, None, :] - bs[..., None, :, :]).masked_fill(~causal[..., None], -math.inf)
    o_diag = torch.einsum("...ti,...tie,...ie->...te", qs @ ks.transpose(-1, -2), torch.exp(expo), vs)
    return (o_off + o_diag).reshape(B, H, N, C, Dv)
