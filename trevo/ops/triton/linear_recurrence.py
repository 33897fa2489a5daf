"""The ``chunk`` form of ``trevo.ops.linear_recurrence`` as Triton kernels, forward and backward, for a
scalar decay per head (RetNet, Mamba-2) or a vector decay over the key dimension (GLA, HGRN2).

One program per (batch, head) walks the chunks in order, the state S ``[Dk, Dv]`` in registers. With
b the in-chunk cumulative log decay (every exponent taken is <= 0, as in the torch form):

    o_t   = Σ_{i<=t} (Σ_d q_td k_id e^{b_td − b_id}) v_i + (q_t ⊙ e^{b_t})ᵀ S_0
    S_end = diag(e^{b_L}) S_0 + Σ_i (k_i ⊙ e^{b_L − b_i}) v_iᵀ

(for a scalar decay the pairwise factor is e^{b_t − b_i}, one per (t, i), and the intra-chunk term is a
matmul; for a vector decay it is formed elementwise over ``[C, C, Dk]``). The forward pass stores the
state entering every chunk; the backward pass walks the chunks in reverse with the state's gradient
dS in registers:

    dq_t = Σ_i dA_ti k_i ⊙ e^{b_t − b_i} + e^{b_t} ⊙ S_0 do_t,   dA_ti = do_t·v_i (i <= t)
    dk_i = Σ_t dA_ti q_t ⊙ e^{b_t − b_i} + e^{b_L − b_i} ⊙ dS v_i
    dv_i = Σ_t A_ti do_t + dSᵀ (k_i ⊙ e^{b_L − b_i})
    db_t = q_t ⊙ dq_t − k_t ⊙ dk_t (+ Σ_v S_end ⊙ dS at the chunk's last step),  dg = reverse cumsum(db)
    dS  ← diag(e^{b_L}) dS + Σ_t (q_t ⊙ e^{b_t}) do_tᵀ

Inputs are computed in float32 (``tl.dot`` in IEEE precision, not TF32). Tested against the torch
form under ``TRITON_INTERPRET=1``; the bonus term (RWKV-6) and padding masks stay on the torch form
(padding is applied to k and the decay before the kernel, as in the torch form).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _chunk_fwd(q_ptr, k_ptr, v_ptr, g_ptr, s0_ptr, o_ptr, states_ptr, last_ptr, T, DK, DV, NC,
               C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, VECTOR: tl.constexpr):
    bh = tl.program_id(0)
    t = tl.arange(0, C)
    dk = tl.arange(0, BK)
    dv = tl.arange(0, BV)
    mk, mv = dk < DK, dv < DV
    state_offsets = dk[:, None] * DV + dv[None, :]
    state_mask = mk[:, None] & mv[None, :]
    S = tl.load(s0_ptr + bh * DK * DV + state_offsets, mask=state_mask, other=0.0)
    causal = t[:, None] >= t[None, :]
    for n in range(0, NC):
        rows = bh * T + n * C + t
        mt = n * C + t < T
        q = tl.load(q_ptr + rows[:, None] * DK + dk[None, :], mask=mt[:, None] & mk[None, :], other=0.0)
        k = tl.load(k_ptr + rows[:, None] * DK + dk[None, :], mask=mt[:, None] & mk[None, :], other=0.0)
        v = tl.load(v_ptr + rows[:, None] * DV + dv[None, :], mask=mt[:, None] & mv[None, :], other=0.0)
        tl.store(states_ptr + (bh * NC + n) * DK * DV + state_offsets, S, mask=state_mask)
        if VECTOR:
            g = tl.load(g_ptr + rows[:, None] * DK + dk[None, :], mask=mt[:, None] & mk[None, :], other=0.0)
            b = tl.cumsum(g, axis=0)  # [C, BK]
            b_last = tl.sum(tl.where(t[:, None] == C - 1, b, 0.0), axis=0)  # [BK]
            pair = tl.exp(tl.where(causal[:, :, None], b[:, None, :] - b[None, :, :], float("-inf")))
            A = tl.sum(q[:, None, :] * k[None, :, :] * pair, axis=2)
            o = tl.dot(A, v, input_precision="ieee") + tl.dot(q * tl.exp(b), S, input_precision="ieee")
            written = k * tl.exp(b_last[None, :] - b)
            S = S * tl.exp(b_last)[:, None] + tl.dot(tl.trans(written), v, input_precision="ieee")
        else:
            g = tl.load(g_ptr + rows, mask=mt, other=0.0)
            b = tl.cumsum(g, axis=0)  # [C]
            b_last = tl.sum(tl.where(t == C - 1, b, 0.0), axis=0)
            pair = tl.exp(tl.where(causal, b[:, None] - b[None, :], float("-inf")))
            A = tl.dot(q, tl.trans(k), input_precision="ieee") * pair
            o = tl.dot(A, v, input_precision="ieee") + tl.dot(q * tl.exp(b)[:, None], S, input_precision="ieee")
            written = k * tl.exp(b_last - b)[:, None]
            S = S * tl.exp(b_last) + tl.dot(tl.trans(written), v, input_precision="ieee")
        tl.store(o_ptr + rows[:, None] * DV + dv[None, :], o, mask=mt[:, None] & mv[None, :])
    tl.store(last_ptr + bh * DK * DV + state_offsets, S, mask=state_mask)


@triton.jit
def _chunk_bwd(q_ptr, k_ptr, v_ptr, g_ptr, states_ptr, do_ptr, dlast_ptr, dq_ptr, dk_ptr, dv_ptr, dg_ptr, ds0_ptr,
               T, DK, DV, NC, C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, VECTOR: tl.constexpr):
    bh = tl.program_id(0)
    t = tl.arange(0, C)
    dk_ = tl.arange(0, BK)
    dv_ = tl.arange(0, BV)
    mk, mv = dk_ < DK, dv_ < DV
    state_offsets = dk_[:, None] * DV + dv_[None, :]
    state_mask = mk[:, None] & mv[None, :]
    dS = tl.load(dlast_ptr + bh * DK * DV + state_offsets, mask=state_mask, other=0.0)
    causal = t[:, None] >= t[None, :]
    last_row = t[:, None] == C - 1
    for i in range(0, NC):
        n = NC - 1 - i
        rows = bh * T + n * C + t
        mt = n * C + t < T
        kmask = mt[:, None] & mk[None, :]
        vmask = mt[:, None] & mv[None, :]
        q = tl.load(q_ptr + rows[:, None] * DK + dk_[None, :], mask=kmask, other=0.0)
        k = tl.load(k_ptr + rows[:, None] * DK + dk_[None, :], mask=kmask, other=0.0)
        v = tl.load(v_ptr + rows[:, None] * DV + dv_[None, :], mask=vmask, other=0.0)
        do = tl.load(do_ptr + rows[:, None] * DV + dv_[None, :], mask=vmask, other=0.0)
        S0 = tl.load(states_ptr + (bh * NC + n) * DK * DV + state_offsets, mask=state_mask, other=0.0)
        dA = tl.where(causal, tl.dot(do, tl.trans(v), input_precision="ieee"), 0.0)  # do_t · v_i
        from_state = tl.dot(do, tl.trans(S0), input_precision="ieee")  # S_0 do_t, [C, BK]
        to_state = tl.dot(v, tl.trans(dS), input_precision="ieee")  # dS v_i, [C, BK]
        if VECTOR:
            g = tl.load(g_ptr + rows[:, None] * DK + dk_[None, :], mask=kmask, other=0.0)
            b = tl.cumsum(g, axis=0)
            b_last = tl.sum(tl.where(last_row, b, 0.0), axis=0)
            pair = tl.exp(tl.where(causal[:, :, None], b[:, None, :] - b[None, :, :], float("-inf")))
            A = tl.sum(q[:, None, :] * k[None, :, :] * pair, axis=2)
            dq = tl.sum(dA[:, :, None] * k[None, :, :] * pair, axis=1) + from_state * tl.exp(b)
            to_end = tl.exp(b_last[None, :] - b)
            dk = tl.sum(dA[:, :, None] * q[:, None, :] * pair, axis=0) + to_state * to_end
            written = k * to_end
            S_end = S0 * tl.exp(b_last)[:, None] + tl.dot(tl.trans(written), v, input_precision="ieee")
            db = q * dq - k * dk + tl.where(last_row, tl.sum(S_end * dS, axis=1)[None, :], 0.0)
            dg = tl.sum(db, axis=0)[None, :] - tl.cumsum(db, axis=0) + db  # Σ_{t >= j} db_t
            tl.store(dg_ptr + rows[:, None] * DK + dk_[None, :], dg, mask=kmask)
            dS_prev = dS * tl.exp(b_last)[:, None] + tl.dot(tl.trans(q * tl.exp(b)), do, input_precision="ieee")
        else:
            g = tl.load(g_ptr + rows, mask=mt, other=0.0)
            b = tl.cumsum(g, axis=0)
            b_last = tl.sum(tl.where(t == C - 1, b, 0.0), axis=0)
            pair = tl.exp(tl.where(causal, b[:, None] - b[None, :], float("-inf")))
            A = tl.dot(q, tl.trans(k), input_precision="ieee") * pair
            dqk = dA * pair  # the gradient of the masked q·k products
            dq = tl.dot(dqk, k, input_precision="ieee") + from_state * tl.exp(b)[:, None]
            to_end = tl.exp(b_last - b)[:, None]
            dk = tl.dot(tl.trans(dqk), q, input_precision="ieee") + to_state * to_end
            written = k * to_end
            S_end = S0 * tl.exp(b_last) + tl.dot(tl.trans(written), v, input_precision="ieee")
            db = tl.sum(q * dq - k * dk, axis=1) + tl.where(t == C - 1, tl.sum(S_end * dS), 0.0)
            dg = tl.sum(db, axis=0) - tl.cumsum(db, axis=0) + db
            tl.store(dg_ptr + rows, dg, mask=mt)
            dS_prev = dS * tl.exp(b_last) + tl.dot(tl.trans(q * tl.exp(b)[:, None]), do, input_precision="ieee")
        dv = tl.dot(tl.trans(A), do, input_precision="ieee") + tl.dot(written, dS, input_precision="ieee")
        tl.store(dq_ptr + rows[:, None] * DK + dk_[None, :], dq, mask=kmask)
        tl.store(dk_ptr + rows[:, None] * DK + dk_[None, :], dk, mask=kmask)
        tl.store(dv_ptr + rows[:, None] * DV + dv_[None, :], dv, mask=vmask)
        dS = dS_prev
    tl.store(ds0_ptr + bh * DK * DV + state_offsets, dS, mask=state_mask)


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


class _ChunkRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, S0, chunk_size):
        B, H, T, DK = q.shape
        DV = v.shape[-1]
        vector = g.dim() == 4
        NC = triton.cdiv(T, chunk_size)
        o = torch.empty_like(v)
        states = q.new_empty(B, H, NC, DK, DV)
        last = q.new_empty(B, H, DK, DV)
        _chunk_fwd[(B * H,)](q, k, v, g, S0, o, states, last, T, DK, DV, NC, C=chunk_size, BK=_block(DK),
                             BV=_block(DV), VECTOR=vector)
        ctx.save_for_backward(q, k, v, g, states)
        ctx.chunk_size = chunk_size
        return o, last

    @staticmethod
    def backward(ctx, do, dlast):
        q, k, v, g, states = ctx.saved_tensors
        B, H, T, DK = q.shape
        DV = v.shape[-1]
        NC = states.shape[2]
        do = do.contiguous().float()
        dlast = torch.zeros_like(states[:, :, 0]) if dlast is None else dlast.contiguous().float()
        dq, dk, dv, dg = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(g)
        ds0 = torch.empty_like(dlast)
        _chunk_bwd[(B * H,)](q, k, v, g, states, do, dlast, dq, dk, dv, dg, ds0, T, DK, DV, NC, C=ctx.chunk_size,
                             BK=_block(DK), BV=_block(DV), VECTOR=g.dim() == 4)
        return dq, dk, dv, dg, ds0, None


def chunk_linear_recurrence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, S0: torch.Tensor,
                            chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(o ``[B, H, T, Dv]``, final state) of the unscaled recurrence; ``g`` ``[B, H, T, 1]`` (scalar)
    or ``[B, H, T, Dk]`` (vector) log decays; computed in float32, returned in q's dtype."""
    dtype = q.dtype
    g = g[..., 0] if g.shape[-1] == 1 else g
    q, k, v, g, S0 = (x.contiguous().float() for x in (q, k, v, g, S0))
    o, last = _ChunkRecurrence.apply(q, k, v, g, S0, chunk_size)
    return o.to(dtype), last.to(dtype)
