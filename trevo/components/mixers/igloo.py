"""IGLOO (Sourkov 2018): random non-local patches of a convolutional feature map, one feature per patch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import Paper, register


def patch_indices(max_len: int, n_patches: int, patch_size: int, seed: int) -> torch.Tensor:
    """``[max_len, L, P]``: for each step t, L patches of P positions drawn uniformly from 0 … t (with
    replacement), as IGLOO's ``return_sequences`` mode draws them; fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(max_len, n_patches, patch_size, generator=g, dtype=torch.float64)
    steps = torch.arange(1, max_len + 1, dtype=torch.float64)[:, None, None]
    return (u * steps).long().clamp_max(steps.long() - 1)


@register("mixer", "igloo", paper=Paper("IGLOO: Slicing the Features Space to Represent Sequences", "1807.03402", 2018),
          category="MHA/Others", family="igloo", causal=True, bidirectional=False, fixed_length=True,
          time="O(T·L·P·C)", memory="O(T·L·C); feature cache O(T·C)",
          test_options={"n_patches": 5, "patch_size": 3, "conv_size": 2})
class Igloo(TokenMixer):
    """IGLOO (Sourkov 2018, section 3): a causal convolution of ``conv_size`` taps and C = expand·d
    filters, LeakyReLU(0.1), gives the feature map F; for every step t, L = ``n_patches`` patches of P =
    ``patch_size`` positions drawn at random from 0 … t are sliced out of F, and each patch gives one
    feature, z_{t,p} = Σ_{s,c} W_{p,s,c} F[idx_{t,p,s}, c] + b_p (the reference code's W_MULT times
    W_SUMMER, one weight here), then LeakyReLU(0.1) and a projection of the L features to d. The
    patches are drawn once (``seed``) for ``max_len`` steps: a fixed-length mixer. Causal (patches
    look back); generation keeps the feature map."""

    def __init__(self, d_model: int, *, causal: bool = True, max_len: int = 1024, n_patches: int = 32,
                 patch_size: int = 4, conv_size: int = 3, expand: float = 1.0, seed: int = 0) -> None:
        super().__init__(d_model, causal=causal)
        if n_patches < 1 or patch_size < 1 or conv_size < 1 or max_len < 1:
            raise IncompatibleError(f"igloo needs n_patches, patch_size, conv_size and max_len >= 1, got "
                                    f"{n_patches}, {patch_size}, {conv_size}, {max_len}")
        self.max_len, self.conv_size, self.channels = max_len, conv_size, max(1, int(expand * d_model))
        self.conv = nn.Conv1d(d_model, self.channels, conv_size)
        self.register_buffer("patches", patch_indices(max_len, n_patches, patch_size, seed), persistent=False)
        self.patch_weight = nn.Parameter(torch.randn(n_patches, patch_size, self.channels)
                                         / (patch_size * self.channels) ** 0.5)
        self.patch_bias = nn.Parameter(torch.zeros(n_patches))
        self.out_proj = nn.Linear(n_patches, d_model)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": torch.zeros(batch, self.conv_size - 1, self.d_model, device=device, dtype=dtype),
                "x": torch.zeros(batch, 0, self.channels, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        start, stop = state["x"].shape[1], state["x"].shape[1] + x.shape[1]
        if stop > self.max_len:
            raise TrevoError(f"igloo drew its patches for {self.max_len} positions (model.max_len) but got position "
                             f"{stop - 1}; raise model.max_len")
        history = torch.cat([state["conv"], x], dim=1)
        f = F.leaky_relu(self.conv(history.transpose(1, 2)).transpose(1, 2), 0.1)  # [B, T, C]
        feats = torch.cat([state["x"], f], dim=1)  # the feature map so far
        idx = self.patches[start:stop]  # [T, L, P]
        z = self.patch_bias.to(x.dtype)
        for s in range(idx.shape[-1]):  # one patch slot at a time: O(T·L·C) memory
            z = z + (feats[:, idx[..., s]] * self.patch_weight[:, s]).sum(-1)  # [B, T, L]
        y = self.out_proj(F.leaky_relu(z, 0.1))
        return y, {"conv": history[:, history.shape[1] - (self.conv_size - 1):], "x": feats}
