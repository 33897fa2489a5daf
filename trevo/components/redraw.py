"""Random draws renewed during training: the feature redraw of Performer (Choromanski et al. 2021, §4.3)
and the hash hyperplanes of YOSO (Zeng et al. 2021), written once."""

from __future__ import annotations

import torch


class PeriodicRedraw:
    """Mixin for a ``TokenMixer`` whose random draws are drawn anew every ``redraw_interval`` training forward
    passes (0: never; fixed in evaluation). ``init_redraw`` in ``__init__`` registers the pass counter
    ``calls``, a buffer, so that a resumed run redraws at the same steps as an uninterrupted one; the mixer
    implements ``redraw()``."""

    redraw_interval: int
    calls: torch.Tensor

    def init_redraw(self, redraw_interval: int) -> None:
        self.redraw_interval = redraw_interval
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def redraw(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} implements no redraw")

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        if self.training and self.redraw_interval > 0:
            if int(self.calls) % self.redraw_interval == 0 and int(self.calls) > 0:
                self.redraw()
            self.calls += 1
        return super().forward(x, padding_mask=padding_mask, layout=layout)
