"""PoolFormer's pooling token mixer (MetaFormer); the math lives in ``trevo.ops.pooling``."""

from __future__ import annotations

import torch

from trevo.components.base import State, TokenMixer
from trevo.ops.pooling import causal_pool_mix, pool_mix_1d, pool_mix_2d
from trevo.registry import IncompatibleError, Paper, TrevoError, register


@register("mixer", "poolformer", paper=Paper("MetaFormer Is Actually What You Need for Vision", "2111.11418", 2022),
          category="Arch", family="pooling", causal=True, bidirectional=True, recurrent=True,
          forms=("parallel",), time="O(T·k·d)", memory="O(T·d); generation state O(k·d)",
          test_options={"pool_size": 3})
class PoolFormerMixer(TokenMixer):
    """PoolFormer token mixer (Yu et al. 2022, eq. 4): y = AvgPool(x) − x, stride 1, count_include_pad=False,
    no parameters. Bidirectional: a centred window of ``pool_size`` tokens, or pool_size × pool_size on
    a 2-D ``layout`` (H, W); padded tokens are left out of every average. Causal (an extension for
    language models): the mean of the last ``pool_size`` tokens minus x, generated with a constant
    state of pool_size − 1 tokens."""

    forms = ("parallel",)

    def __init__(self, d_model: int, *, causal: bool, pool_size: int = 3, impl: str = "auto") -> None:
        super().__init__(d_model, causal=causal, impl=impl)
        if pool_size < 1 or (not causal and pool_size % 2 == 0):
            raise IncompatibleError(f"poolformer needs pool_size >= 1, odd when bidirectional (a centred "
                                    f"window), got {pool_size}")
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        if self.causal:
            return self.prefill(x)[0]
        if layout is not None and len(layout) == 2:
            if layout[0] * layout[1] != x.shape[1]:
                raise TrevoError(f"poolformer got layout {layout} for {x.shape[1]} tokens; H·W must equal it")
            return pool_mix_2d(x, layout, self.pool_size, padding_mask)
        return pool_mix_1d(x, self.pool_size, padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        keep = self.pool_size - 1
        return {"window": torch.zeros(batch, keep, self.d_model, device=device, dtype=dtype),
                "valid": torch.zeros(keep, dtype=torch.bool, device=device)}

    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        self._require_causal("prefill")
        self.check_input(x)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        y, window, valid = causal_pool_mix(x, state["window"], state["valid"], self.pool_size)
        return y, {"window": window, "valid": valid}
