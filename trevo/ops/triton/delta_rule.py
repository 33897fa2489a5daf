"""The ``chunk`` form of the (gated) delta rule as Triton kernels, forward and backward.

The math is that of ``trevo.ops.delta_rule`` (its module docstring; nothing of that module is called
here). Per chunk, with γ the in-chunk cumulative log decay, Γ_ti = e^{γ_t − γ_i} and S_0 the state
entering the chunk:

    A = diag(β) (K Kᵀ ∘ Γ), strictly lower;  T = (I + A)⁻¹ (forward substitution, row by row)
    R = diag(β) V − diag(β e^γ) K S_0;        U = T R
    o = diag(e^γ) Q S_0 + (Q Kᵀ ∘ Γ, lower) U;  S_end = e^{γ_C} S_0 + (diag(e^{γ_C − γ}) K)ᵀ U

The backward pass walks the chunks in reverse with dS (the gradient of S_end) in registers:

    dP = dO Uᵀ (lower),  dU = Pᵀ dO + diag(e^{γ_C − γ}) K dS,  dR = Tᵀ dU,  dA = −dR Uᵀ (strictly lower)
    dQ = diag(e^γ) dO S_0ᵀ + (dP ∘ Γ) K
    dK = (dP ∘ Γ)ᵀ Q + diag(e^{γ_C − γ}) U dSᵀ − diag(β e^γ) dR S_0ᵀ + (M + Mᵀ) K,  M = dA ∘ Γ ∘ β (rows)
    dV = diag(β) dR,   dβ = Σ_v dR ∘ V − e^γ ∘ Σ_d K ∘ dR S_0ᵀ + Σ_i dA ∘ K Kᵀ ∘ Γ
    dS_0 = (diag(e^γ) Q)ᵀ dO + e^{γ_C} dS − (diag(β e^γ) K)ᵀ dR
    dγ_t = Σ (Q e^γ ∘ dO S_0ᵀ)_t + rows − columns of (dP ∘ P + dA ∘ A) at t + Σ_v dR ∘ (R − βV)
           − Σ_v U ∘ diag(e^{γ_C − γ}) K dS (+ Σ S_end ∘ dS at the chunk's last step),  dg = reverse cumsum(dγ)

Computed in float32 (``tl.dot`` in IEEE precision). Tested against ``trevo.ops.delta_rule``'s
recurrent form under ``TRITON_INTERPRET=1``. ``delta_rule()``'s chunk form runs here on CUDA when
the erase key is the key and the decay is scalar (DeltaNet, Gated DeltaNet); KDA's vector decay,
Gated DeltaNet-2's and Comba's erase keys stay on the torch form.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _inverse_unit_lower(A, r, C: tl.constexpr):
    """(I + A)⁻¹ for a strictly lower-triangular A ``[C, C]``, by forward substitution over the rows."""
    inv = tl.where(r[:, None] == r[None, :], 1.0, 0.0)
    for t in range(1, C):
        row = tl.sum(tl.where(r[:, None] == t, A, 0.0), axis=0)  # A[t, :]
        update = tl.sum(row[:, None] * inv, axis=0)  # Σ_j A_tj inv_j (rows j < t are final)
        inv = tl.where(r[:, None] == t, inv - update[None, :], inv)
    return inv


@triton.jit
def _load_chunk(q_ptr, k_ptr, v_ptr, beta_ptr, g_ptr, bh, n, T, DK, DV, C: tl.constexpr, BK: tl.constexpr,
                BV: tl.constexpr):
    t = tl.arange(0, C)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    rows = bh * T + n * C + t
    mt = n * C + t < T
    kmask = mt[:, None] & (dk < DK)[None, :]
    vmask = mt[:, None] & (dv < DV)[None, :]
    q = tl.load(q_ptr + rows[:, None] * DK + dk[None, :], mask=kmask, other=0.0)
    k = tl.load(k_ptr + rows[:, None] * DK + dk[None, :], mask=kmask, other=0.0)
    v = tl.load(v_ptr + rows[:, None] * DV + dv[None, :], mask=vmask, other=0.0)
    beta = tl.load(beta_ptr + rows, mask=mt, other=0.0)
    g = tl.load(g_ptr + rows, mask=mt, other=0.0)
    return q, k, v, beta, g, rows, mt, kmask, vmask


@triton.jit
def _delta_fwd(q_ptr, k_ptr, v_ptr, beta_ptr, g_ptr, s0_ptr, o_ptr, states_ptr, last_ptr, T, DK, DV, NC,
               C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    bh = tl.program_id(0)
    t = tl.arange(0, C)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    state_offsets = dk[:, None] * DV + dv[None, :]
    state_mask = (dk < DK)[:, None] & (dv < DV)[None, :]
    S = tl.load(s0_ptr + bh * DK * DV + state_offsets, mask=state_mask, other=0.0)
    strict = t[:, None] > t[None, :]
    incl = t[:, None] >= t[None, :]
    for n in range(0, NC):
        q, k, v, beta, g, rows, mt, kmask, vmask = _load_chunk(q_ptr, k_ptr, v_ptr, beta_ptr, g_ptr, bh, n, T, DK, DV,
                                                               C, BK, BV)
        tl.store(states_ptr + (bh * NC + n) * DK * DV + state_offsets, S, mask=state_mask)
        gam = tl.cumsum(g, axis=0)
        gam_last = tl.sum(tl.where(t == C - 1, gam, 0.0), axis=0)
        diff = gam[:, None] - gam[None, :]
        gamma_strict = tl.exp(tl.where(strict, diff, float("-inf")))
        A = beta[:, None] * tl.dot(k, tl.trans(k), input_precision="ieee") * gamma_strict
        inv = _inverse_unit_lower(A, t, C)
        R = beta[:, None] * v - (beta * tl.exp(gam))[:, None] * tl.dot(k, S, input_precision="ieee")
        U = tl.dot(inv, R, input_precision="ieee")
        P = tl.dot(q, tl.trans(k), input_precision="ieee") * tl.exp(tl.where(incl, diff, float("-inf")))
        o = tl.dot(q * tl.exp(gam)[:, None], S, input_precision="ieee") + tl.dot(P, U, input_precision="ieee")
        tl.store(o_ptr + rows[:, None] * DV + dv[None, :], o, mask=vmask)
        kd = k * tl.exp(gam_last - gam)[:, None]
        S = tl.exp(gam_last) * S + tl.dot(tl.trans(kd), U, input_precision="ieee")
    tl.store(last_ptr + bh * DK * DV + state_offsets, S, mask=state_mask)


@triton.jit
def _delta_bwd(q_ptr, k_ptr, v_ptr, beta_ptr, g_ptr, states_ptr, do_ptr, dlast_ptr, dq_ptr, dk_ptr, dv_ptr,
               dbeta_ptr, dg_ptr, ds0_ptr, T, DK, DV, NC, C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    bh = tl.program_id(0)
    t = tl.arange(0, C)
    dk_ = tl.arange(0, BK)
    dv_ = tl.arange(0, BV)
    state_offsets = dk_[:, None] * DV + dv_[None, :]
    state_mask = (dk_ < DK)[:, None] & (dv_ < DV)[None, :]
    dS = tl.load(dlast_ptr + bh * DK * DV + state_offsets, mask=state_mask, other=0.0)
    strict = t[:, None] > t[None, :]
    incl = t[:, None] >= t[None, :]
    for i in range(0, NC):
        n = NC - 1 - i
        q, k, v, beta, g, rows, mt, kmask, vmask = _load_chunk(q_ptr, k_ptr, v_ptr, beta_ptr, g_ptr, bh, n, T, DK, DV,
                                                               C, BK, BV)
        do = tl.load(do_ptr + rows[:, None] * DV + dv_[None, :], mask=vmask, other=0.0)
        S0 = tl.load(states_ptr + (bh * NC + n) * DK * DV + state_offsets, mask=state_mask, other=0.0)
        gam = tl.cumsum(g, axis=0)
        gam_last = tl.sum(tl.where(t == C - 1, gam, 0.0), axis=0)
        diff = gam[:, None] - gam[None, :]
        gamma_strict = tl.exp(tl.where(strict, diff, float("-inf")))
        gamma_incl = tl.exp(tl.where(incl, diff, float("-inf")))
        e = tl.exp(gam)
        to_end = tl.exp(gam_last - gam)
        KK = tl.dot(k, tl.trans(k), input_precision="ieee")
        A = beta[:, None] * KK * gamma_strict
        inv = _inverse_unit_lower(A, t, C)
        KS0 = tl.dot(k, S0, input_precision="ieee")
        R = beta[:, None] * v - (beta * e)[:, None] * KS0
        U = tl.dot(inv, R, input_precision="ieee")
        QK = tl.dot(q, tl.trans(k), input_precision="ieee")
        P = QK * gamma_incl
        kd = k * to_end[:, None]
        S_end = tl.exp(gam_last) * S0 + tl.dot(tl.trans(kd), U, input_precision="ieee")
        # the adjoints, in the order of the module docstring
        dP = tl.where(incl, tl.dot(do, tl.trans(U), input_precision="ieee"), 0.0)
        kd_dS = tl.dot(kd, dS, input_precision="ieee")  # [C, BV]
        dU = tl.dot(tl.trans(P), do, input_precision="ieee") + kd_dS
        dR = tl.dot(tl.trans(inv), dU, input_precision="ieee")
        dA = -tl.where(strict, tl.dot(dR, tl.trans(U), input_precision="ieee"), 0.0)
        dO_S0 = tl.dot(do, tl.trans(S0), input_precision="ieee")  # [C, BK]
        dR_S0 = tl.dot(dR, tl.trans(S0), input_precision="ieee")  # [C, BK]
        dPg = dP * gamma_incl
        M = dA * gamma_strict * beta[:, None]
        dq = dO_S0 * e[:, None] + tl.dot(dPg, k, input_precision="ieee")
        dk = (tl.dot(tl.trans(dPg), q, input_precision="ieee")
              + tl.dot(U, tl.trans(dS), input_precision="ieee") * to_end[:, None]
              - (beta * e)[:, None] * dR_S0
              + tl.dot(M, k, input_precision="ieee") + tl.dot(tl.trans(M), k, input_precision="ieee"))
        dv = beta[:, None] * dR
        dbeta = tl.sum(dR * v, axis=1) - e * tl.sum(k * dR_S0, axis=1) + tl.sum(dA * KK * gamma_strict, axis=1)
        PdP = dP * P + dA * A
        dgam = (tl.sum(q * e[:, None] * dO_S0, axis=1) + tl.sum(PdP, axis=1) - tl.sum(PdP, axis=0)
                + tl.sum(dR * (R - beta[:, None] * v), axis=1) - tl.sum(U * kd_dS, axis=1)
                + tl.where(t == C - 1, tl.sum(S_end * dS), 0.0))
        dg = tl.sum(dgam, axis=0) - tl.cumsum(dgam, axis=0) + dgam
        tl.store(dq_ptr + rows[:, None] * DK + dk_[None, :], dq, mask=kmask)
        tl.store(dk_ptr + rows[:, None] * DK + dk_[None, :], dk, mask=kmask)
        tl.store(dv_ptr + rows[:, None] * DV + dv_[None, :], dv, mask=vmask)
        tl.store(dbeta_ptr + rows, dbeta, mask=mt)
        tl.store(dg_ptr + rows, dg, mask=mt)
        dS = (tl.dot(tl.trans(q * e[:, None]), do, input_precision="ieee") + tl.exp(gam_last) * dS
              - tl.dot(tl.trans(k * (beta * e)[:, None]), dR, input_precision="ieee"))
    tl.store(ds0_ptr + bh * DK * DV + state_offsets, dS, mask=state_mask)


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


class _ChunkDeltaRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, beta, g, S0, chunk_size):
        B, H, T, DK = q.shape
        DV = v.shape[-1]
        NC = triton.cdiv(T, chunk_size)
        o, last = torch.empty_like(v), q.new_empty(B, H, DK, DV)
        states = q.new_empty(B, H, NC, DK, DV)
        _delta_fwd[(B * H,)](q, k, v, beta, g, S0, o, states, last, T, DK, DV, NC, C=chunk_size, BK=_block(DK),
                             BV=_block(DV))
        ctx.save_for_backward(q, k, v, beta, g, states)
        ctx.chunk_size = chunk_size
        return o, last

    @staticmethod
    def backward(ctx, do, dlast):
        q, k, v, beta, g, states = ctx.saved_tensors
        B, H, T, DK = q.shape
        DV = v.shape[-1]
        do = do.contiguous().float()
        dlast = torch.zeros_like(states[:, :, 0]) if dlast is None else dlast.contiguous().float()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dbeta, dg, ds0 = torch.empty_like(beta), torch.empty_like(g), torch.empty_like(dlast)
        _delta_bwd[(B * H,)](q, k, v, beta, g, states, do, dlast, dq, dk, dv, dbeta, dg, ds0, T, DK, DV,
                             states.shape[2], C=ctx.chunk_size, BK=_block(DK), BV=_block(DV))
        return dq, dk, dv, dbeta, dg, ds0, None


def chunk_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                     log_decay: torch.Tensor | None, initial_state: torch.Tensor | None, chunk_size: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(o, final state) of the unscaled (gated) delta rule, layout of ``trevo.ops.delta_rule``; the chunk
    a power of two >= 16. Computed in float32 and returned in q's dtype."""
    B, H, T, DK = q.shape
    g = q.new_zeros(B, H, T) if log_decay is None else log_decay
    S0 = q.new_zeros(B, H, DK, v.shape[-1]) if initial_state is None else initial_state
    dtype = q.dtype
    q, k, v, beta, g, S0 = (x.contiguous().float() for x in (q, k, v, beta, g, S0))
    o, last = _ChunkDeltaRule.apply(q, k, v, beta, g, S0, chunk_size)
    return o.to(dtype), last.to(dtype)
