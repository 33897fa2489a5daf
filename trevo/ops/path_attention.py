"""PaTH attention: softmax attention whose positions are data-dependent products of Householder-like
transforms (Yang et al., "PaTH Attention: Position Encoding via Accumulating Householder
Transformations", arXiv:2505.16381).

Each token t brings H_t = I − β_t w_t w_tᵀ (‖w_t‖ = 1, β_t ∈ (0, 2)); the score of query i and key
j <= i is q_iᵀ H_i H_{i−1} ⋯ H_{j+1} k_j (scaled by 1/√d; with the forget gate of FoX, PaTH-FoX, plus
F_i − F_j), then a causal softmax over j. Three exact forms:

- ``recurrent`` (the paper's decoding): the cached keys are kept transported to the latest token,
  k_j ← H_t k_j at every new token t, so a query scores them directly: O(T·d) per token;
- ``quadratic`` (the reference): every query is carried back through the H's one position at a
  time, H_{j+1} ⋯ H_i q_i, and meets key j on the way: O(T²·d), T sequential steps;
- ``chunk`` (the paper's blockwise algorithm): inside a chunk of C tokens the product of the H's is
  in UT/WY form, P = H_{C−1} ⋯ H_0 = I − Wᵀ diag(β) (I + A)⁻¹ W with A = strict_lower(W Wᵀ) diag(β);
  the same triangular solve gives the intra-chunk scores, the queries carried to their chunk's
  start and the keys carried to its end; queries then travel back one chunk per step (x P costs
  two C×C×d matmuls), meeting each earlier chunk's keys with one: O(T²·d) work in T/C steps.

Layout: q, k, w ``[B, H, T, D]``, beta ``[B, H, T]``, the segment's T tokens following a cache of Tc
keys ``k_cache`` ``[B, H, Tc, D]`` already carried to the token before the segment; v ``[B, H, Tc + T,
Dv]`` and ``forget`` ``[B, H, Tc + T]`` (cumulative log forget gates, optional) cover cache and segment.
Every form returns the outputs ``[B, H, T, Dv]`` and all Tc + T keys carried to the segment's last token
(the next cache).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FORMS = ("chunk", "quadratic", "recurrent")


def path_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, beta: torch.Tensor,
                   k_cache: torch.Tensor, *, forget: torch.Tensor | None = None, form: str = "chunk",
                   chunk_size: int = 64, scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PaTH attention of a segment after a cache (see the module docstring): (outputs, next key cache)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if form == "recurrent":
        return _recurrent(q, k, v, w, beta, k_cache, forget, scale)
    if form == "quadratic":
        return _quadratic(q, k, v, w, beta, k_cache, forget, scale)
    if form == "chunk":
        return _chunk(q, k, v, w, beta, k_cache, forget, scale, chunk_size)
    raise ValueError(f"path_attention has the forms {', '.join(FORMS)}, got {form!r}")


def householder(x: torch.Tensor, w: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """H x = x − β (wᵀx) w for rows x ``[..., n, D]`` and one w ``[..., D]``, β ``[...]`` per batch entry."""
    return x - beta[..., None, None] * (x @ w[..., :, None]) * w[..., None, :]


def _softmax_out(scores: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.softmax(scores, dim=-1) @ v


def _recurrent(q, k, v, w, beta, k_cache, forget, scale):
    keys, outs = k_cache, []
    tc = k_cache.shape[2]
    for t in range(q.shape[2]):
        keys = torch.cat([householder(keys, w[:, :, t], beta[:, :, t]), k[:, :, t:t + 1]], dim=2)
        scores = (keys @ q[:, :, t, :, None])[..., 0] * scale  # [B, H, Tc + t + 1]
        if forget is not None:
            scores = scores + forget[..., tc + t:tc + t + 1] - forget[..., :tc + t + 1]
        outs.append(_softmax_out(scores[..., None, :], v[:, :, :tc + t + 1]))
    return torch.cat(outs, dim=2), keys


def _quadratic(q, k, v, w, beta, k_cache, forget, scale):
    B, H, T, _ = q.shape
    tc = k_cache.shape[2]
    later = torch.arange(T, device=q.device)
    u, columns = q, [None] * T  # u_i = H_{j+1} ⋯ H_i q_i while j runs down from i
    for j in range(T - 1, -1, -1):
        columns[j] = (u @ k[:, :, j, :, None])[..., 0]  # score of every query with key j (valid for i >= j)
        carried = householder(u, w[:, :, j], beta[:, :, j])
        u = torch.where((later >= j)[:, None], carried, u)
    scores = torch.cat([u @ k_cache.transpose(-1, -2), torch.stack(columns, dim=-1)], dim=-1) * scale
    if forget is not None:
        scores = scores + forget[..., tc:, None] - forget[..., None, :]
    allowed = torch.arange(tc + T, device=q.device)[None, :] <= (tc + later)[:, None]
    out = _softmax_out(scores.masked_fill(~allowed, float("-inf")), v)
    keys = k_cache
    for t in range(T):  # the next cache: every key carried forward to the last token
        keys = torch.cat([householder(keys, w[:, :, t], beta[:, :, t]), k[:, :, t:t + 1]], dim=2)
    return out, keys


def _chunk(q, k, v, w, beta, k_cache, forget, scale, C):
    B, H, T, D = q.shape
    tc = k_cache.shape[2]
    pad = -T % C
    # padded tokens come last (after every real query) and carry H = I (β = 0): they change nothing
    q, k, w = (F.pad(x, (0, 0, 0, pad)).unflatten(2, (-1, C)) for x in (q, k, w))  # [B, H, N, C, D]
    beta = F.pad(beta, (0, pad)).unflatten(2, (-1, C))  # [B, H, N, C]
    v_seg = F.pad(v[:, :, tc:], (0, 0, 0, pad)).unflatten(2, (-1, C))
    N = q.shape[2]
    lower = torch.ones(C, C, dtype=torch.bool, device=q.device).tril(-1)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    a = ((w @ w.transpose(-1, -2)) * beta[..., None, :]).masked_fill(~lower, 0)
    t_inv = torch.linalg.solve_triangular(eye + a, eye.expand_as(a), upper=False, unitriangular=True)
    z_k = t_inv @ (w @ k.transpose(-1, -2)).masked_fill(~lower, 0)  # z_sj = w_sᵀ H_{s−1} ⋯ H_{j+1} k_j, s > j
    z_w = t_inv @ (w @ w.transpose(-1, -2)).masked_fill(~lower, 0)
    qw_beta = (q @ w.transpose(-1, -2)).tril() * beta[..., None, :]  # β_s q_iᵀ w_s for s <= i
    intra = (q @ k.transpose(-1, -2) - qw_beta @ z_k) * scale  # valid for j <= i
    e = (q @ w.transpose(-1, -2) - qw_beta @ z_w).tril()  # e_is = q_iᵀ H_i ⋯ H_{s+1} w_s, s <= i
    q_start = q - (e * beta[..., None, :]) @ w  # H_0 ⋯ H_i q_i: each query carried to its chunk's start
    k_end = k - (z_k * beta[..., :, None]).transpose(-1, -2) @ w  # H_{C−1} ⋯ H_{j+1} k_j: keys at the chunk's end
    y = t_inv @ w  # P = I − Wᵀ diag(β) Y, the chunk's product H_{C−1} ⋯ H_0

    def carry_back(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """x P_c for the query rows x of one chunk each, through the products of chunks lo … hi − 1."""
        return x - ((x @ w[:, :, lo:hi].transpose(-1, -2)) * beta[:, :, lo:hi, None, :]) @ y[:, :, lo:hi]

    f_q = f_seg = None
    if forget is not None:
        f_seg = F.pad(forget[..., tc:], (0, pad)).unflatten(2, (-1, C))  # [B, H, N, C]
        f_q = f_seg[..., :, None]
        intra = intra + f_q - f_seg[..., None, :]
    intra = intra.masked_fill(~torch.ones(C, C, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    stats = _Online.start(intra, v_seg)
    cur = q_start
    for d in range(1, N):
        scores = cur[:, :, d:] @ k_end[:, :, :N - d].transpose(-1, -2) * scale
        if f_q is not None:
            scores = scores + f_q[:, :, d:] - f_seg[:, :, :N - d, None, :]
        stats.add(scores, v_seg[:, :, :N - d], first=d)
        cur = torch.cat([cur[:, :, :d], carry_back(cur[:, :, d:], 0, N - d)], dim=2)
    if tc:
        scores = cur @ k_cache[:, :, None].transpose(-1, -2) * scale  # [B, H, N, C, Tc]
        if f_q is not None:
            scores = scores + f_q - forget[..., None, None, :tc]
        stats.add(scores, v[:, :, None, :tc], first=0)
    out = stats.result().flatten(2, 3)[:, :, :T]
    keys = k_cache
    for c in range(N):  # the next cache: the keys so far through chunk c's product, then chunk c's keys
        keys = keys - ((keys @ y[:, :, c].transpose(-1, -2)) * beta[:, :, c, None, :]) @ w[:, :, c]
        keys = torch.cat([keys, k_end[:, :, c]], dim=2)
    return out, keys[:, :, :tc + T]


class _Online:
    """Running softmax statistics (max m, normaliser l, weighted sum acc) per query of every chunk."""

    def __init__(self, m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor) -> None:
        self.m, self.l, self.acc = m, l, acc

    @classmethod
    def start(cls, scores: torch.Tensor, v: torch.Tensor) -> _Online:
        m = scores.amax(dim=-1, keepdim=True)  # every query sees at least itself: finite
        p = torch.exp(scores - m)
        return cls(m, p.sum(dim=-1, keepdim=True), p @ v)

    def add(self, scores: torch.Tensor, v: torch.Tensor, first: int) -> None:
        """Fold in the scores of query chunks ``first``.. against the values ``v``."""
        m, l, acc = self.m[:, :, first:], self.l[:, :, first:], self.acc[:, :, first:]
        m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
        p = torch.exp(scores - m_new)
        correction = torch.exp(m - m_new)
        l, acc = l * correction + p.sum(dim=-1, keepdim=True), acc * correction + p @ v
        keep = slice(0, first)
        self.m = torch.cat([self.m[:, :, keep], m_new], dim=2)
        self.l = torch.cat([self.l[:, :, keep], l], dim=2)
        self.acc = torch.cat([self.acc[:, :, keep], acc], dim=2)

    def result(self) -> torch.Tensor:
        return self.acc / self.l
