"""RWKV's token shift: out[:, t] = x[:, t−1], out[:, 0] the carried last token (zeros if none)."""

from __future__ import annotations

import torch

from trevo.components.token_shift import token_shift


def test_token_shift_moves_one_step_and_starts_from_the_last_token():
    x = torch.arange(6.0).view(1, 3, 2)
    torch.testing.assert_close(token_shift(x), torch.tensor([[[0.0, 0], [0, 1], [2, 3]]]))
    torch.testing.assert_close(token_shift(x, torch.tensor([[9.0, 9]]))[:, 0], torch.tensor([[9.0, 9]]))
