"""PoolFormer's pooling token mixer (MetaFormer); the math lives in ``trevo.ops.pooling``."""

from __future__ import annotations

import torch

from trevo.components.base import State, TokenMixer
from trevo.errors import IncompatibleError
from trevo.ops.pooling import causal_pool_mix, pool_mix_1d, pool_mix_2d
from trevo.registry import Paper, register


@register("mixer", "poolformer", paper=Paper("MetaFormer Is Actually What You Need for Vision", "2111.11418", 2022),
          category="Arch", family="pooling", causal=True, bidirectional=True, recurrent=True, time="O(T·k·d)",
          memory="O(T·d); generation state O(k·d)", test_options={"pool_size": 3})
class PoolFormerMixer(TokenMixer):
    """PoolFormer token mixer (Yu et al. 2022, eq. 4): y = AvgPool(x) − x, stride 1, count_include_pad=False,
    no parameters. Bidirectional: a centred window of ``pool_size`` tokens, or pool_size × pool_size on
    a 2-D ``layout`` (H, W); padded tokens are left out of every average. Causal (an extension for
    language models): the mean of the last ``pool_size`` tokens minus x, generated with a constant
    state of pool_size − 1 tokens."""

    def __init__(self, d_model: int, *, causal: bool, pool_size: int = 3) -> None:
        super().__init__(d_model, causal=causal)
        if pool_size < 1 or (not causal and pool_size % 2 == 0):
            raise IncompatibleError(f"poolformer needs pool_size >= 1, odd when bidirectional (a centred "
                                    f"window), got {pool_size}")
        self.pool_size = pool_size

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        if layout is not None and len(layout) == 2:
            return pool_mix_2d(x, self.grid(x, layout), self.pool_size, padding_mask)
        return pool_mix_1d(x, self.pool_size, padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        keep = self.pool_size - 1
        return {"window": torch.zeros(batch, keep, self.d_model, device=device, dtype=dtype),
                "valid": torch.zeros(keep, dtype=torch.bool, device=device)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, window, valid = causal_pool_mix(x, state["window"], state["valid"], self.pool_size)
        return y, {"window": window, "valid": valid}
