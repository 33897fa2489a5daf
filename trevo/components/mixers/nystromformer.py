"""Nyströmformer: softmax attention approximated with landmarks (Xiong et al. 2021)."""

from __future__ import annotations

import torch

from trevo.components.base import TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.errors import IncompatibleError
from trevo.ops.nystromformer import nystrom_attention
from trevo.registry import Paper, register


@register("mixer", "nystromformer",
          paper=Paper("Nyströmformer: A Nyström-Based Algorithm for Approximating Self-Attention", "2102.03902", 2021),
          category="MHA/MatrixMethod", family="nystromformer", causal=False, bidirectional=True,
          time="O(T·m·d + m³)", memory="O(T·m)", test_options={"n_landmarks": 4})
class Nystromformer(FusedQKVHeads, TokenMixer):
    """Nyströmformer (eq. 15): softmax(QK̃ᵀ/√d) Ã⁺ softmax(Q̃Kᵀ/√d) V with Ã = softmax(Q̃K̃ᵀ/√d) and
    m landmarks Q̃, K̃ (segment means). ``pinv``: ``iterative`` (the paper's 6 iterations) or ``exact``.
    The paper's depthwise-convolution skip on V is not included. Bidirectional only."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_landmarks: int = 32,
                 pinv: str = "iterative", pinv_iterations: int = 6) -> None:
        super().__init__(d_model, causal=causal)
        if pinv not in ("iterative", "exact"):
            raise IncompatibleError(f"nystromformer pinv must be 'iterative' or 'exact', got {pinv!r}")
        self.n_landmarks, self.pinv, self.pinv_iterations = n_landmarks, pinv, pinv_iterations
        self.init_heads(d_model, n_heads)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        o = nystrom_attention(q, k, v, self.n_landmarks, key_padding_mask=padding_mask, pinv=self.pinv,
                              n_iter=self.pinv_iterations)
        return self.project_out(o)
