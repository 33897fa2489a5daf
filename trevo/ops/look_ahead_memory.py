"""LaMemo's look-ahead memory (Ji et al. 2022, arXiv:2204.07341, §3.2–3.3): softmax attention kept as an
output with its log-normaliser, so that attention over more keys later merges in exactly.

An attention output o = Σ_j softmax(s)_j v_j over a key set K has the log-normaliser z = logsumexp_j s_j.
Attention over K ∪ K' is the interpolation of the two outputs by their normalisers (memory
interpolation, §3.3):

    o_{K∪K'} = α o_K + (1 − α) o_{K'},   α = exp(z_K − logaddexp(z_K, z_{K'})),   z_{K∪K'} = logaddexp(z_K, z_{K'}).

Look-ahead attention (§3.2): in a segment of q tokens read after M memory positions (0 … M−1, the
tokens at M … M+q−1), memory position i attends to the keys on its right that it has not seen yet:
j > i, from the first not yet seen (M − q + 1, the keys of the last segment after its first) to the
current segment's first token M, never further (no token of the segment reads a key to its right
through the memory). Over the segments, each memory position so attends to every key to its right
once, and the interpolation with its stored output makes it attention over all of them.

Layout: scores ``[B, H, Tq, Tk]``, values ``[B, H, Tk, D]``, outputs ``[B, H, Tq, D]``, normalisers
``[B, H, Tq]``. ``merge_reference`` is the naive float64 loop ``merge`` is tested against.
"""

from __future__ import annotations

import math

import torch


def masked_attention(scores: torch.Tensor, allowed: torch.Tensor, v: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention over the keys ``allowed`` ``[Tq, Tk]`` marks, and its log-normaliser; a query with no
    key allowed gets a zero output and normaliser −∞ (it merges as nothing)."""
    scores = scores.masked_fill(~allowed, -math.inf)
    z = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - z.clamp_min(torch.finfo(scores.dtype).min)[..., None])
    return weights @ v, z


def merge(old: torch.Tensor, old_z: torch.Tensor, new: torch.Tensor, new_z: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention output over the union of two key sets from the output and log-normaliser of each."""
    z = torch.logaddexp(old_z, new_z)
    alpha = torch.exp(old_z - z.clamp_min(torch.finfo(z.dtype).min)).nan_to_num(0.0)[..., None]
    return alpha * old + (1 - alpha) * new, z


def look_ahead_mask(memory_len: int, seg_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[M, M + 1]``: the keys 0 … M (M, the segment's first token) that memory position i looks ahead to
    when the memory advanced by segments of q tokens: j > i and j ≥ M − q + 1."""
    i = torch.arange(memory_len, device=device)[:, None]
    j = torch.arange(memory_len + 1, device=device)[None, :]
    return (j > i) & (j >= memory_len - seg_len + 1)


def merge_reference(scores: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
    """One query's attention over every key of ``scores`` ``[n_i]`` and ``values`` ``[n_i, D]`` at once, in
    float64: the softmax of all the scores together."""
    s, v = torch.cat(scores).double(), torch.cat(values).double()
    top = float(s.max())
    weights = [math.exp(float(x) - top) for x in s]
    return sum(w / sum(weights) * v[j] for j, w in enumerate(weights))
