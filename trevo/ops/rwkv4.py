"""RWKV-4's WKV operator in its numerically stable forms.

Peng et al., "RWKV: Reinventing RNNs for the Transformer Era" (arXiv:2305.13048), eq. 14::

    wkv_t = (Σ_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u + k_t} v_t) / (Σ_{i<t} e^{-(t-1-i)w + k_i} + e^{u + k_t})

per channel, with decay w > 0 and bonus u. Exponents grow with k and t, so every form keeps the
running sums (a, b) scaled by e^{-p} where p is the largest exponent seen (the official kernel's
``aa, bb, pp``). The state after token t is (a, b, p) with
a·e^p = Σ_{i<=t} e^{-(t-i)w + k_i} v_i and b·e^p the same sum without v.

Layout: k, v ``[B, T, C]``; w, u ``[C]``; state tensors ``[B, C]``.
"""

from __future__ import annotations

import torch

WKVState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def wkv4_init_state(batch: int, channels: int, device, dtype: torch.dtype) -> WKVState:
    a = torch.zeros(batch, channels, device=device, dtype=dtype)
    # An exponent far below any real one (finite, so that exp(p - p') and its gradient stay 0, not nan).
    p = torch.full((batch, channels), torch.finfo(dtype).min / 4, device=device, dtype=dtype)
    return a, a.clone(), p


def wkv4_recurrent(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   state: WKVState) -> tuple[torch.Tensor, WKVState]:
    """One token at a time (the RNN / inference form)."""
    a, b, p = state
    out = []
    # unbind, not indexing: the gradient of x[:, t] is a zero tensor of x's full size per step
    for kt, vt in zip(k.unbind(1), v.unbind(1), strict=True):
        ww = u + kt
        q = torch.maximum(p, ww)
        e1, e2 = torch.exp(p - q), torch.exp(ww - q)
        out.append((e1 * a + e2 * vt) / (e1 * b + e2))
        ww = p - w
        q = torch.maximum(ww, kt)
        e1, e2 = torch.exp(ww - q), torch.exp(kt - q)
        a, b, p = e1 * a + e2 * vt, e1 * b + e2, q
    return torch.stack(out, dim=1), (a, b, p)


def wkv4(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: WKVState, *,
         form: str = "chunk", chunk_size: int = 16) -> tuple[torch.Tensor, WKVState]:
    """WKV in ``form``: ``recurrent``, ``chunk`` (blocks of ``chunk_size``) or ``quadratic`` (one block)."""
    if form == "recurrent":
        return wkv4_recurrent(w, u, k, v, state)
    return wkv4_chunked(w, u, k, v, state, None if form == "quadratic" else chunk_size)


def wkv4_chunked(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 state: WKVState, chunk_size: int | None = 64) -> tuple[torch.Tensor, WKVState]:
    """Time-parallel inside chunks of ``chunk_size`` (``None``: the whole sequence at once, the
    quadratic parallel form), with the stable state carried across chunks. Memory O(B·C·L²)."""
    T = k.shape[1]
    L = T if chunk_size is None else chunk_size
    outs = []
    # split, not k[:, a:b]: a slice's gradient is a zero tensor of k's full size per chunk.
    for kc, vc in zip(k.split(L, dim=1), v.split(L, dim=1), strict=True):
        out, state = _wkv4_chunk(w, u, kc, vc, state)
        outs.append(out)
    return torch.cat(outs, dim=1), state


def _wkv4_chunk(w, u, k, v, state: WKVState) -> tuple[torch.Tensor, WKVState]:
    a, b, p = state
    L = k.shape[1]
    idx = torch.arange(L, device=k.device)
    steps_back = (idx[:, None] - 1 - idx[None, :]).to(k.dtype)  # t-1-i, [L(t), L(i)]
    # Exponent of token i in the output at t: k_i - (t-1-i)w for i < t, u + k_t for i = t.
    e = k[:, None, :, :] - steps_back[None, :, :, None] * w  # [B, t, i, C]
    diag = torch.eye(L, dtype=torch.bool, device=k.device)[None, :, :, None]
    e = torch.where(diag, (u + k)[:, :, None, :], e)
    future = (idx[None, :] > idx[:, None])[None, :, :, None]
    e = e.masked_fill(future, float("-inf"))
    # The carried state's exponent at local step t: p - t·w (it decays once per token).
    e0 = p[:, None, :] - idx[None, :, None].to(k.dtype) * w  # [B, t, C]
    # The max cancels in num/den, so no gradient needs to flow through it.
    m = torch.maximum(e.amax(dim=2), e0).detach()
    pe, p0 = torch.exp(e - m[:, :, None, :]), torch.exp(e0 - m)
    num = (pe * v[:, None, :, :]).sum(dim=2) + p0 * a[:, None, :]
    den = pe.sum(dim=2) + p0 * b[:, None, :]
    out = num / den
    # State after the chunk's last token: token i decays (L-1-i) steps, the old state L steps.
    f = k - (L - 1 - idx)[None, :, None].to(k.dtype) * w
    f0 = p - L * w
    p_new = torch.maximum(f.amax(dim=1), f0).detach()
    pf, pf0 = torch.exp(f - p_new[:, None, :]), torch.exp(f0 - p_new)
    a_new = (pf * v).sum(dim=1) + pf0 * a
    b_new = pf.sum(dim=1) + pf0 * b
    return out, (a_new, b_new, p_new)
