"""LongT5 transient-global attention (Guo et al., "LongT5: Efficient Text-To-Text Transformer for Long
Sequences", arXiv:2112.07916, section 3.1.2): every token attends the tokens closer than ``window``
to it (local attention, |i − j| < w: the paper's radius r = w − 1) and a short list of global
tokens, one per block of ``block`` tokens, built afresh in each layer ("transient") as the
layer-normalised sum of the block's inputs:

    g_b = LN(Σ_{i ∈ block b} x_i),   y_i = softmax(q_i [K_local(i); K_g]ᵀ/√d) [V_local(i); V_g],

K_g = g W_K, V_g = g W_V with the layer's own key and value maps. The local part is computed in
segments of ``window`` tokens (a query's window lies in its own and the two neighbouring segments):
O(T·(w + T/k)·d).

Layout: q, k, v ``[B, H, T, D]``; the global keys and values ``[B, H, G, D]`` with ``global_real``
``[B, G]`` (a block holding no real token is hidden); ``key_padding_mask`` ``[B, T]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def block_sums(x: torch.Tensor, block: int, real: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of x ``[B, T, C]`` over blocks of ``block`` real positions: (``[B, G, C]``, block has a real ``[B, G]``)."""
    b, t, c = x.shape
    g = math.ceil(t / block)
    real = torch.ones(b, t, dtype=torch.bool, device=x.device) if real is None else real.bool()
    w = F.pad(real, (0, g * block - t), value=False)
    xs = F.pad(x, (0, 0, 0, g * block - t)) * w[..., None].to(x.dtype)
    return xs.view(b, g, block, c).sum(2), w.view(b, g, block).any(-1)


def transient_global_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kg: torch.Tensor, vg: torch.Tensor,
                               global_real: torch.Tensor, window: int,
                               key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    b, h, t, d = q.shape
    w = window
    n = math.ceil(t / w)
    pad = n * w - t
    real = torch.ones(b, t, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    real = F.pad(real, (0, pad), value=False)
    q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))

    def around(x):  # [B, H, n, 3w, D]: the previous, own and next segment
        seg = F.pad(x.view(x.shape[0], x.shape[1], n, w, x.shape[-1]), (0, 0, 0, 0, 1, 1))
        return torch.cat([seg[:, :, :-2], seg[:, :, 1:-1], seg[:, :, 2:]], dim=3)

    pos = torch.arange(n * w, device=q.device, dtype=q.dtype)[None, None, :, None]
    key_pos, key_real = around(pos)[..., 0], around(real[:, None, :, None].to(q.dtype))[..., 0].bool()
    query_pos = pos.view(1, 1, n, w, 1)
    allowed = key_real[:, :, :, None, :] & ((query_pos - key_pos[:, :, :, None, :]).abs() < window)
    # the zero segments at the ends have position 0: key_real hides them
    scale, floor = 1.0 / math.sqrt(d), torch.finfo(q.dtype).min
    qs = q.view(b, h, n, w, d)
    local = ((qs @ around(k).transpose(-1, -2)) * scale).masked_fill(~allowed, floor)
    glob = (qs @ kg[:, :, None].transpose(-1, -2)) * scale  # [B, H, n, w, G]
    glob = glob.masked_fill(~global_real[:, None, None, None, :], floor)
    weights = torch.softmax(torch.cat([local, glob], dim=-1), dim=-1)
    w_local, w_glob = weights.split([local.shape[-1], glob.shape[-1]], dim=-1)
    out = w_local @ around(v) + w_glob @ vg[:, :, None]
    return out.reshape(b, h, n * w, -1)[:, :, :t]
