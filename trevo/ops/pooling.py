"""Pooling token mixing (PoolFormer; Yu et al., "MetaFormer Is Actually What You Need for Vision",
arXiv:2111.11418, eq. 4): y = AvgPool(x) − x, stride 1, window ``pool_size`` centred on each token
and ``count_include_pad=False`` (a window cut by the border averages only the tokens it holds).

- ``pool_mix_1d``: over the sequence; padded tokens (``padding_mask`` False) count as outside.
- ``pool_mix_2d``: over an (H, W) grid, a pool_size × pool_size window, as in the paper.
- ``causal_pool_mix``: the causal variant, the mean of the last ``pool_size`` tokens minus x; fed the
  carried window (the previous pool_size − 1 tokens and which of them exist) it is the generation step.
- ``naive_pool_mix``: the same three by explicit loops, the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _real(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """[B, T, 1] weights: 1 at real tokens, 0 at padding."""
    if padding_mask is None:
        return torch.ones_like(x[..., :1])
    return padding_mask[..., None].to(x.dtype)


def _ratio(total: torch.Tensor, count: torch.Tensor, pool_size: int) -> torch.Tensor:
    # ``count`` is an average of 0/1 weights: >= 1/window wherever a real token is in the window.
    # A padded token with no real neighbour has total 0; clamping keeps its output finite.
    return total / count.clamp_min(1.0 / pool_size)


def pool_mix_1d(x: torch.Tensor, pool_size: int, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """y_t = mean{x_s : |s − t| <= pool_size // 2, s real} − x_t; ``x`` [B, T, D], pool_size odd."""
    m = _real(x, padding_mask)
    pool = lambda u: F.avg_pool1d(u.transpose(1, 2), pool_size, 1, pool_size // 2,  # noqa: E731
                                  count_include_pad=True).transpose(1, 2)
    return _ratio(pool(x * m), pool(m), pool_size) - x


def pool_mix_2d(x: torch.Tensor, layout: tuple[int, int], pool_size: int,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The pool_size × pool_size version on the grid ``layout`` = (H, W) of the T = H·W tokens."""
    h, w = layout
    m = _real(x, padding_mask)

    def pool(u: torch.Tensor) -> torch.Tensor:
        img = u.unflatten(1, (h, w)).permute(0, 3, 1, 2)
        out = F.avg_pool2d(img, pool_size, 1, pool_size // 2, count_include_pad=True)
        return out.permute(0, 2, 3, 1).flatten(1, 2)

    return _ratio(pool(x * m), pool(m), pool_size * pool_size) - x


def causal_pool_mix(x: torch.Tensor, window: torch.Tensor, valid: torch.Tensor, pool_size: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y_t = mean{x_s : t − pool_size < s <= t, s >= 0} − x_t.

    ``window`` [B, pool_size − 1, D] holds the tokens before x (zeros where none) and ``valid``
    [pool_size − 1] says which of them exist. Returns y and the window and validity after x."""
    hist = torch.cat([window, x], dim=1)
    ok = torch.cat([valid.to(x.dtype), torch.ones(x.shape[1], dtype=x.dtype, device=x.device)])
    total = F.avg_pool1d(hist.transpose(1, 2), pool_size, 1).transpose(1, 2)
    count = F.avg_pool1d(ok[None, None], pool_size, 1)[0, 0][None, :, None]
    y = total / count - x
    keep = pool_size - 1
    return y, hist[:, hist.shape[1] - keep:], ok[ok.shape[0] - keep:] > 0


def naive_pool_mix(x: torch.Tensor, pool_size: int, *, causal: bool = False, layout: tuple[int, int] | None = None,
                   padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The reference by loops over positions (1-D, 2-D on ``layout``, or causal)."""
    b, t, _ = x.shape
    real = torch.ones(b, t, dtype=torch.bool) if padding_mask is None else padding_mask.bool().cpu()
    r = pool_size // 2
    y = torch.empty_like(x)
    for i in range(b):
        for s in range(t):
            if causal:
                near = range(max(0, s - pool_size + 1), s + 1)
            elif layout is None:
                near = range(max(0, s - r), min(t, s + r + 1))
            else:
                h, w = layout
                row, col = divmod(s, w)
                near = [a * w + c for a in range(max(0, row - r), min(h, row + r + 1))
                        for c in range(max(0, col - r), min(w, col + r + 1))]
            near = [j for j in near if real[i, j]]
            mean = x[i, near].mean(0) if near else torch.zeros_like(x[i, s])
            y[i, s] = mean - x[i, s]
    return y
