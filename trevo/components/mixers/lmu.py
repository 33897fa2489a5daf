"""The Legendre Memory Unit in its parallel form (Chilkuri & Eliasmith 2021, "Parallelizing Legendre
Memory Unit Training", arXiv:2102.11417; the memory of Voelker, Kajić, Eliasmith 2019, "Legendre
Memory Units", NeurIPS 2019).

u_t = W_u x_t feeds ``memory_dim`` Legendre memories of order d (= ``d_state``) over a window of θ
(= ``window``) steps, m_t = Ā m_{t−1} + B̄ u_t with the fixed delay matrices of ``trevo.ops.lmu``;
the output is o_t = GELU(W_m vec(m_t) + W_x x_t). Without the hidden-state feedback of the original
LMU (e_h, W_h) the memory is a linear time-invariant system, so training can compute it for all
positions at once as a convolution with the impulse response H_l = Ā^l B̄.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.errors import IncompatibleError
from trevo.ops.lmu import lmu_matrices, matrix_powers, memory_recurrent, zoh_discretize
from trevo.ops.long_conv import default_block, fft_causal_conv
from trevo.registry import Paper, register


@register("mixer", "lmu", paper=Paper("Parallelizing Legendre Memory Unit Training", "2102.11417", 2021),
          category="LongConv", family="lmu", causal=True, bidirectional=False, recurrent=True,
          time="O(U·d·T log T) fft (+ O(T·d³) impulse response, cached), O(T·U·d²) recurrent",
          memory="O(U·d) state", test_options={"d_state": 6, "window": 8.0, "memory_dim": 2, "fft_chunk_size": 8})
class LMU(TokenMixer):
    """Parallel LMU layer (Chilkuri & Eliasmith 2021, eq. 1-4): u_t = W_u x_t, the Legendre memory
    m_t = Ā m_{t−1} + B̄ u_t (Voelker et al. 2019, eq. 1-2; A, B fixed, zero-order hold), and
    o_t = GELU(W_m vec(m_t) + W_x x_t). The original LMU's feedback of h_{t−1} and m_{t−1} into u_t is
    left out: that is what makes the parallel form exact. Forms: ``fft`` (m = H * u, the impulse
    response H_l = Ā^l B̄, exactly causal blocked FFT) and ``recurrent``."""

    forms = ("fft", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, d_state: int = 32, window: float = 64.0,
                 memory_dim: int = 4, fft_chunk_size: int | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if d_state < 1 or window <= 0 or memory_dim < 1:
            raise IncompatibleError(f"LMU needs d_state >= 1, window > 0 and memory_dim >= 1; got d_state={d_state}, "
                                    f"window={window}, memory_dim={memory_dim}")
        self.d_state, self.memory_dim, self.fft_chunk_size = d_state, memory_dim, fft_chunk_size
        Abar, Bbar = zoh_discretize(*lmu_matrices(d_state, window))
        # Fixed, not learned: kept in float64 (not as buffers, which .to(dtype) would round) and cast per use.
        self._Abar64, self._Bbar64 = Abar, Bbar
        self._powers: torch.Tensor | None = None
        self.in_proj = nn.Linear(d_model, memory_dim, bias=False)
        self.memory_proj = nn.Linear(memory_dim * d_state, d_model)
        self.skip_proj = nn.Linear(d_model, d_model, bias=False)

    def _impulse_powers(self, count: int, like: torch.Tensor) -> torch.Tensor:
        """Ā^l for l < count (computed once in float64, extended by doubling when a longer input comes)."""
        if self._powers is None or self._powers.shape[0] < count:
            self._powers = matrix_powers(self._Abar64, max(count, 2 * (0 if self._powers is None else
                                                                       self._powers.shape[0])))
        return self._powers[:count].to(device=like.device, dtype=like.dtype)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"h": torch.zeros(batch, self.memory_dim, self.d_state, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = self.in_proj(x)  # [B, T, U]
        m0 = state["h"].to(x.dtype)
        T, U, d = x.shape[1], self.memory_dim, self.d_state
        if self.form_for(T) == "fft":
            powers = self._impulse_powers(T + 1, x)
            H = (powers[:T] @ self._Bbar64.to(powers)).T  # [d, T]: H_l = Ā^l B̄
            signal = u.transpose(1, 2)[:, :, None].expand(-1, U, d, T).flatten(1, 2)
            m = fft_causal_conv(signal, H.repeat(U, 1), self.fft_chunk_size or default_block(T))
            m = m.unflatten(1, (U, d)).permute(0, 3, 1, 2)  # [B, T, U, d]
            m = m + torch.einsum("tij,buj->btui", powers[1:], m0)  # the carried memory, Ā^{t+1} m0
            last = m[:, -1] if T else m0
        else:
            m, last = memory_recurrent(self._Abar64.to(u), self._Bbar64.to(u), u, m0)
        y = F.gelu(self.memory_proj(m.flatten(2)) + self.skip_proj(x))
        return y, {"h": last}
