"""Mamba-3's state-space recurrence: exponential-trapezoidal discretisation, a complex (rotary) state and
multi-input multi-output (MIMO) updates, on the linear-recurrence engine.

Lahoti et al., "Mamba-3: Improved Sequence Modeling using State Space Principles" (arXiv:2603.15569),
as in the reference step function of state-spaces/mamba. Per head, with r input/output ranks
(r = 1: SISO), state S ``[N, P]``:

    S_t = α_t S_{t−1} + β_t Σ_j k_{t−1,j} v_{t−1,j}ᵀ + γ_t Σ_j k_{t,j} v_{t,j}ᵀ,     y_{t,l} = S_tᵀ q_{t,l}
    α_t = exp(Δ_t A_t),  β_t = (1 − λ_t) Δ_t α_t,  γ_t = λ_t Δ_t

(λ_t ∈ (0, 1) the trapezoid's data-dependent mix; λ = 1 is Mamba-2's exponential-Euler rule). The
complex state is the rotary trick: q and k arrive rotated by the cumulative data-dependent phases.

On the engine, exactly causal: each token is two groups of r engine steps — first the previous
token's writes weighted by β_t (the decay α_t applied at the first of them), then the token's own writes
weighted by γ_t, each step of the second group holding one rank's query; no decay between the steps of
a token. The writes of the same token that a query must see but the engine puts after it are added as a
small r × r correction per token. The previous token's key and value are part of the state
(``k_prev``, ``v_prev``), so a sequence split anywhere gives the outputs of one pass.
"""

from __future__ import annotations

import torch

from trevo.ops.linear_recurrence import linear_recurrence


def mamba3_scan(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor, dt: torch.Tensor,
                lam: torch.Tensor, *, S: torch.Tensor, k_prev: torch.Tensor, v_prev: torch.Tensor,
                form: str = "chunk", chunk_size: int = 64):
    """q, k ``[B, H, T, r, N]`` (rotated), v ``[B, H, T, r, P]``; log α = Δ A, Δ and λ ``[B, H, T]``; state
    S ``[B, H, N, P]``, k_prev ``[B, H, r, N]``, v_prev ``[B, H, r, P]``. Returns (y ``[B, H, T, r, P]``,
    S, k_prev, v_prev)."""
    B, H, T, r, N = q.shape
    P = v.shape[-1]
    if T == 0:
        return v, S, k_prev, v_prev
    beta = (1 - lam) * dt * torch.exp(log_alpha)
    gamma = lam * dt
    k_before = torch.cat([k_prev[:, :, None], k[:, :, :-1]], dim=2)  # the previous token's keys and values
    v_before = torch.cat([v_prev[:, :, None], v[:, :, :-1]], dim=2)
    keys = torch.cat([k_before * beta[..., None, None], k * gamma[..., None, None]], dim=3)  # [B, H, T, 2r, N]
    values = torch.cat([v_before, v], dim=3)
    queries = torch.cat([torch.zeros_like(q), q], dim=3)
    decay = torch.zeros(B, H, T, 2 * r, dtype=q.dtype, device=q.device)
    decay[..., 0] = log_alpha
    o, S_T = linear_recurrence(queries.reshape(B, H, 2 * T * r, N), keys.reshape(B, H, 2 * T * r, N),
                               values.reshape(B, H, 2 * T * r, P), log_decay=decay.reshape(B, H, 2 * T * r),
                               initial_state=S, form=form, chunk_size=chunk_size)
    after = torch.ones(r, r, dtype=torch.bool, device=q.device).triu(1)  # [l, j]: rank j's write after query l
    same_token = ((q @ k.transpose(-1, -2)) * after) * gamma[..., None, None]
    y = o.reshape(B, H, T, 2 * r, P)[:, :, :, r:] + same_token @ v
    return y, S_T, k[:, :, -1], v[:, :, -1]
