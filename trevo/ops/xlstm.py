"""xLSTM's exponential gating with the stabiliser state, for its two cells.

Beck et al., "xLSTM: Extended Long Short-Term Memory" (arXiv:2405.04517). Both cells gate with an
exponential input gate i_t = exp(ĩ_t) and a forget gate f_t = σ(f̃_t), and keep their states divided by
exp(m_t), the stabiliser m_t = max(log f_t + m_{t−1}, ĩ_t): with i'_t = exp(ĩ_t − m_t) and
f'_t = exp(log f_t + m_{t−1} − m_t), both <= 1, the stabilised states are the true ones times exp(−m_t)
for *any* m, so the outputs (ratios of two such states) are unchanged and m only keeps the exponents
in range. The stabiliser therefore carries no gradient (it is detached).

- mLSTM: C_t = f_t C_{t−1} + i_t v_t k_tᵀ, n_t = f_t n_{t−1} + i_t k_t,
  h_t = C_t q_t / max(|n_tᵀ q_t|, 1). In stabilised form this is the engine (``linear_recurrence``) with
  log decay log f_t + m_{t−1} − m_t and keys i'_t k_t, the normaliser a constant-1 column of the value;
  the threshold 1 becomes exp(−m_t). Every engine form is an mLSTM form.
- sLSTM: scalar cells with recurrent (block-diagonal, per head) connections from h_{t−1}
  into every gate: z_t = tanh(z̃_t), c_t = f_t c_{t−1} + i_t z_t, n_t = f_t n_{t−1} + i_t,
  h_t = σ(õ_t) ⊙ c_t / n_t. The gates depend on h_{t−1} nonlinearly, so it has no parallel form: it is
  computed token by token (``slstm``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.ops.linear_recurrence import linear_recurrence


def stabiliser(log_f: torch.Tensor, log_i: torch.Tensor, m0: torch.Tensor, chunk_size: int = 64) -> torch.Tensor:
    """m_t = max(log f_t + m_{t−1}, ĩ_t) for ``[B, H, T]`` gates after m0 ``[B, H]``, exactly: inside a
    chunk m_t = F_t + max(m_start, max_{s<=t}(ĩ_s − F_s)) with F the in-chunk cumulative log f (a cummax,
    and only differences of in-chunk sums, which stay precise)."""
    out, m = [], m0
    for lf, li in zip(log_f.split(chunk_size, dim=2), log_i.split(chunk_size, dim=2), strict=True):
        cum = lf.cumsum(dim=2)
        best = torch.maximum((li - cum).cummax(dim=2).values, m[..., None])
        chunk = cum + best
        out.append(chunk)
        m = chunk[..., -1]
    return torch.cat(out, dim=2) if out else log_f


def mlstm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor, log_i: torch.Tensor, *,
          C: torch.Tensor, n: torch.Tensor, m: torch.Tensor, form: str = "chunk", chunk_size: int = 64,
          eps: float = 1e-6) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The stabilised mLSTM cell: q, k ``[B, H, T, Dk]`` (k scaled by 1/√Dk inside), v ``[B, H, T, Dv]``,
    gates ``[B, H, T]`` (log f = logsigmoid(f̃), log i = ĩ), state (C̃ ``[B, H, Dk, Dv]``, ñ ``[B, H, Dk]``,
    m ``[B, H]``). Returns (h ``[B, H, T, Dv]``, the new state)."""
    if q.shape[2] == 0:
        return v, (C, n, m)
    ms = stabiliser(log_f.detach(), log_i.detach(), m.detach(), chunk_size)
    m_prev = torch.cat([m.detach()[..., None], ms[..., :-1]], dim=2)
    log_decay = (log_f + m_prev - ms).clamp(max=0)  # <= 0 by construction; the clamp only removes rounding
    k = k * torch.exp(log_i - ms)[..., None] * k.shape[-1] ** -0.5
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    o, S = linear_recurrence(q, k, v1, log_decay=log_decay, initial_state=torch.cat([C, n[..., None]], dim=-1),
                             form=form, chunk_size=chunk_size)
    h = o[..., :-1] / (torch.maximum(o[..., -1:].abs(), torch.exp(-ms)[..., None]) + eps)
    return h, (S[..., :-1], S[..., -1], ms[..., -1])


def slstm(wx: torch.Tensor, R: torch.Tensor, *, c: torch.Tensor, n: torch.Tensor, m: torch.Tensor,
          h: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The stabilised sLSTM cell, token by token. ``wx`` ``[B, T, 4, H, D]``: the input parts of the
    pre-activations (z̃, ĩ, f̃, õ, biases included); ``R`` ``[4, H, D, D]``: the recurrent block-diagonal
    weights; state c, n, m, h ``[B, H, D]``. Returns (h for every step ``[B, T, H, D]``, the new state)."""
    hs = []
    for w in wx.unbind(1):
        pre = w + torch.einsum("bhd,ghde->bghe", h, R)
        z_pre, i_pre, f_pre, o_pre = pre.unbind(1)
        log_f = F.logsigmoid(f_pre)
        m_new = torch.maximum(log_f + m, i_pre).detach()
        i_gate, f_gate = torch.exp(i_pre - m_new), torch.exp(log_f + m - m_new)
        c = f_gate * c + i_gate * torch.tanh(z_pre)
        n = f_gate * n + i_gate
        h = torch.sigmoid(o_pre) * c / n
        m = m_new
        hs.append(h)
    return torch.stack(hs, dim=1) if hs else wx[:, :, 0], (c, n, m, h)
