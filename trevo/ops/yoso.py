"""YOSO attention (Zeng et al., "You Only Sample (Almost) Once: Linear Cost Self-Attention Via Bernoulli
Sampling", arXiv:2111.09714, section 3): with q and k on the unit sphere, the softmax is replaced by a
Bernoulli variable per pair, the collision of τ-bit random-hyperplane hashes (SimHash) of q and k,

    B_ij = 1[h(q_i) = h(k_j)],   P(B_ij = 1) = (1 − arccos(q_i·k_j)/π)^τ,                (eq. 6)

averaged over m independent hashes, and y_i = N(Σ_j B_ij v_j) with N the L2 normalisation of the row
(the paper's code). YOSO-E uses the expectation itself, y = N(E[B] V). The sampled sum is computed
from bucket tables — per hash, the sum of the values of the keys in each of the 2^τ buckets — in
O(T·m·d); causally the tables are a running sum, a constant-size state. Gradients with respect to q
and k is that of YOSO-E, N(E[B] V) (an O(T²) backward, as the paper's code's ``n2_backward``); the
value gradient is the sampled one.

Layout: q, k, v ``[B, H, T, D]``; codes ``[B, H, T, m]`` in [0, 2^τ); tables ``[B, H, m, 2^τ, Dv]``.
"""

from __future__ import annotations

import math

import torch


def hash_codes(x: torch.Tensor, planes: torch.Tensor, code_len: int) -> torch.Tensor:
    """SimHash codes ``[..., m]``: bit b of hash h is [x·r_{h,b} > 0] (``planes`` ``[D, m·τ]``)."""
    bits = (x @ planes.to(x.dtype) > 0).long().unflatten(-1, (-1, code_len))
    return (bits * (2 ** torch.arange(code_len, device=x.device))).sum(-1)


def collision_probability(q: torch.Tensor, k: torch.Tensor, code_len: int) -> torch.Tensor:
    """E[B] = (1 − arccos(q·k)/π)^τ for unit q ``[..., Tq, D]`` and k ``[..., Tk, D]``."""
    cos = (q @ k.transpose(-1, -2)).clamp(-1 + 1e-6, 1 - 1e-6)  # arccos' slope is infinite at ±1
    return (1 - torch.arccos(cos) / math.pi) ** code_len


def _causal_mask(tq: int, tk: int, device) -> torch.Tensor:
    return torch.arange(tk, device=device)[None, :] <= torch.arange(tk - tq, tk, device=device)[:, None]


def expected_sum(q, k, v, code_len: int, *, causal: bool, key_padding_mask=None) -> torch.Tensor:
    """E[B] V (masked), the YOSO-E numerator."""
    e = collision_probability(q, k, code_len)
    if causal:
        e = e * _causal_mask(q.shape[-2], k.shape[-2], q.device)
    if key_padding_mask is not None:
        e = e * key_padding_mask[:, None, None, :].to(e.dtype)
    return e @ v


def sampled_sum_quadratic(q_codes, k_codes, v, *, causal: bool, key_padding_mask=None) -> torch.Tensor:
    """B V from the dense collision matrix, B_ij = mean over hashes of [code_q = code_k] (the reference)."""
    b = (q_codes[..., :, None, :] == k_codes[..., None, :, :]).to(v.dtype).mean(-1)
    if causal:
        b = b * _causal_mask(q_codes.shape[-2], k_codes.shape[-2], v.device)
    if key_padding_mask is not None:
        b = b * key_padding_mask[:, None, None, :].to(b.dtype)
    return b @ v


def bucket_lookup(tables: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean over hashes of the bucket of each code: ``[B, H, T, Dv]``."""
    b, h, m, n, dv = tables.shape
    idx = codes.permute(0, 1, 3, 2)[..., None].expand(b, h, m, codes.shape[2], dv)  # [B, H, m, T, Dv]
    return tables.gather(3, idx).mean(2)


def bucket_add(tables: torch.Tensor, codes: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The tables with each value added to its key's bucket, in every hash."""
    b, h, m, n, dv = tables.shape
    idx = codes.permute(0, 1, 3, 2)[..., None].expand(b, h, m, codes.shape[2], dv)
    return tables.scatter_add(3, idx, v[:, :, None].expand(b, h, m, v.shape[2], dv))


def sampled_sum_tables(q_codes, k_codes, v, tables: torch.Tensor, *, causal: bool, chunk_size: int,
                       key_padding_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B V, the tables after the keys): bidirectionally one table of all (real) keys; causally the
    tables of earlier chunks plus the dense collisions inside each chunk."""
    if key_padding_mask is not None:
        v = v * key_padding_mask[:, None, :, None].to(v.dtype)
    if not causal:
        tables = bucket_add(tables, k_codes, v)
        return bucket_lookup(tables, q_codes), tables
    out = []
    for qc, kc, vc in zip(q_codes.split(chunk_size, 2), k_codes.split(chunk_size, 2), v.split(chunk_size, 2),
                          strict=True):
        out.append(bucket_lookup(tables, qc) + sampled_sum_quadratic(qc, kc, vc, causal=True))
        tables = bucket_add(tables, kc, vc)
    return torch.cat(out, dim=2), tables


def normalise(y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """y / ‖y‖ per row, smooth at a zero row (no collision at all), whose output stays zero: the norm's
    gradient there is 0/0 in ``F.normalize``."""
    return y * torch.rsqrt(y.square().sum(-1, keepdim=True) + eps)
