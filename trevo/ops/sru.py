"""The SRU recurrence (Lei, Zhang, Wang, Dai, Artzi 2018, "Simple Recurrent Units for Highly
Parallelizable Recurrence", arXiv:1709.02755, eq. 3-7)::

    f_t = σ(u^f_t + v_f ⊙ c_{t−1} + b_f),      c_t = f_t ⊙ c_{t−1} + (1 − f_t) ⊙ u^x_t,
    r_t = σ(u^r_t + v_r ⊙ c_{t−1} + b_r),      h_t = r_t ⊙ c_t + (1 − r_t) ⊙ x_t.

Every matrix product (the u's) is done for all positions at once before the loop; the loop itself
is element-wise (each channel independent, so it parallelises over channels, not over time: the
v ⊙ c_{t−1} terms make it non-linear in c). SRU++ (arXiv:2102.12459) feeds it the same way.
"""

from __future__ import annotations

import torch


def sru_recurrence(u_x: torch.Tensor, u_f: torch.Tensor, u_r: torch.Tensor, highway: torch.Tensor,
                   v_f: torch.Tensor, v_r: torch.Tensor, b_f: torch.Tensor, b_r: torch.Tensor,
                   c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(h ``[B, T, d]``, last c ``[B, d]``) of eq. 3-7 for the precomputed projections ``[B, T, d]``."""
    c, hs = c0, []
    # unbind, not indexing: the gradient of x[:, t] is a zero tensor of x's full size per step
    for ux, uf, ur, x in zip(u_x.unbind(1), u_f.unbind(1), u_r.unbind(1), highway.unbind(1), strict=True):
        f = torch.sigmoid(uf + v_f * c + b_f)
        r = torch.sigmoid(ur + v_r * c + b_r)
        c = f * c + (1 - f) * ux
        hs.append(r * c + (1 - r) * x)
    if not hs:
        return highway, c
    return torch.stack(hs, dim=1), c
