"""The ``chunk`` form of Mamba's selective scan (``trevo.ops.selective_scan``) as Triton kernels.

One program per (batch row, block of channels) runs h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t x_t) B_tᵀ,
y_t = h_t C_t through time with its ``[channels, N]`` state in registers, writing the state entering
every chunk of ``chunk_size`` steps. The backward pass walks the chunks in reverse: it recomputes the
chunk's states from the saved one (into a scratch buffer of one chunk), then runs the adjoint
g_t = C_t ∂y_t + exp(Δ_{t+1}A) ⊙ g_{t+1} backwards through the chunk, with

    ∂(Δ_t A) = g_t ⊙ exp(Δ_t A) ⊙ h_{t−1},   ∂A += ∂(Δ_t A) Δ_t,   ∂Δ_t = Σ_n ∂(Δ_t A) A + (g_t B_t) x_t,
    ∂x_t = (g_t B_t) Δ_t,   ∂B_t = Σ_d g_t Δ_t x_t,   ∂C_t = Σ_d ∂y_t h_t

(the sums over channels are per channel block, added up afterwards: no atomics). Memory: the
inputs, one state per chunk and one chunk of states per program. Computed in float32; tested
against the torch forms under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _scan_fwd(x_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, h0_ptr, y_ptr, ckpt_ptr, last_ptr, T, D, N, NC,
              CS: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr):
    row = tl.program_id(0)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    n = tl.arange(0, BN)
    md, mn = d < D, n < N
    mask = md[:, None] & mn[None, :]
    state = d[:, None] * N + n[None, :]
    A = tl.load(a_ptr + state, mask=mask, other=0.0)
    h = tl.load(h0_ptr + row * D * N + state, mask=mask, other=0.0)
    for t in range(0, T):
        if t % CS == 0:
            tl.store(ckpt_ptr + (row * NC + t // CS) * D * N + state, h, mask=mask)
        dt = tl.load(dt_ptr + (row * T + t) * D + d, mask=md, other=0.0)
        x = tl.load(x_ptr + (row * T + t) * D + d, mask=md, other=0.0)
        Bt = tl.load(b_ptr + (row * T + t) * N + n, mask=mn, other=0.0)
        Ct = tl.load(c_ptr + (row * T + t) * N + n, mask=mn, other=0.0)
        h = tl.exp(dt[:, None] * A) * h + (dt * x)[:, None] * Bt[None, :]
        tl.store(y_ptr + (row * T + t) * D + d, tl.sum(h * Ct[None, :], axis=1), mask=md)
    tl.store(last_ptr + row * D * N + state, h, mask=mask)


@triton.jit
def _scan_bwd(x_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, ckpt_ptr, gy_ptr, glast_ptr, scratch_ptr,
              gx_ptr, gdt_ptr, ga_ptr, gb_ptr, gc_ptr, gh0_ptr, T, D, N, NC, NBLK,
              CS: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr):
    row = tl.program_id(0)
    blk = tl.program_id(1)
    d = blk * BD + tl.arange(0, BD)
    n = tl.arange(0, BN)
    md, mn = d < D, n < N
    mask = md[:, None] & mn[None, :]
    state = d[:, None] * N + n[None, :]
    A = tl.load(a_ptr + state, mask=mask, other=0.0)
    carried = tl.load(glast_ptr + row * D * N + state, mask=mask, other=0.0)  # a_{t+1} g_{t+1}
    grad_A = tl.zeros([BD, BN], dtype=tl.float32)
    for i in range(0, NC):
        c = NC - 1 - i
        start = c * CS
        first = tl.load(ckpt_ptr + (row * NC + c) * D * N + state, mask=mask, other=0.0)
        h = first
        for s in range(0, CS):  # the chunk's states again, from the one saved at its start
            t = start + s
            if t < T:
                dt = tl.load(dt_ptr + (row * T + t) * D + d, mask=md, other=0.0)
                x = tl.load(x_ptr + (row * T + t) * D + d, mask=md, other=0.0)
                Bt = tl.load(b_ptr + (row * T + t) * N + n, mask=mn, other=0.0)
                h = tl.exp(dt[:, None] * A) * h + (dt * x)[:, None] * Bt[None, :]
                tl.store(scratch_ptr + (row * CS + s) * D * N + state, h, mask=mask)
        for j in range(0, CS):
            s = CS - 1 - j
            t = start + s
            if t < T:
                dt = tl.load(dt_ptr + (row * T + t) * D + d, mask=md, other=0.0)
                x = tl.load(x_ptr + (row * T + t) * D + d, mask=md, other=0.0)
                Bt = tl.load(b_ptr + (row * T + t) * N + n, mask=mn, other=0.0)
                Ct = tl.load(c_ptr + (row * T + t) * N + n, mask=mn, other=0.0)
                gy = tl.load(gy_ptr + (row * T + t) * D + d, mask=md, other=0.0)
                h_t = tl.load(scratch_ptr + (row * CS + s) * D * N + state, mask=mask, other=0.0)
                before = tl.load(scratch_ptr + (row * CS + tl.maximum(s - 1, 0)) * D * N + state, mask=mask,
                                 other=0.0)
                h_prev = tl.where(s > 0, before, first)
                decay = tl.exp(dt[:, None] * A)
                g = gy[:, None] * Ct[None, :] + carried
                g_log_a = g * decay * h_prev
                grad_A += g_log_a * dt[:, None]
                g_u = tl.sum(g * Bt[None, :], axis=1)
                tl.store(gdt_ptr + (row * T + t) * D + d, tl.sum(g_log_a * A, axis=1) + g_u * x, mask=md)
                tl.store(gx_ptr + (row * T + t) * D + d, g_u * dt, mask=md)
                tl.store(gb_ptr + ((row * NBLK + blk) * T + t) * N + n, tl.sum(g * (dt * x)[:, None], axis=0), mask=mn)
                tl.store(gc_ptr + ((row * NBLK + blk) * T + t) * N + n, tl.sum(gy[:, None] * h_t, axis=0), mask=mn)
                carried = decay * g
    tl.store(ga_ptr + row * D * N + state, grad_A, mask=mask)
    tl.store(gh0_ptr + row * D * N + state, carried, mask=mask)


BLOCK_ELEMENTS = 4096  # state elements (channels × N) one program holds in registers


def _blocks(D: int, N: int) -> tuple[int, int]:
    BN = triton.next_power_of_2(N)
    return max(1, min(triton.next_power_of_2(D), BLOCK_ELEMENTS // BN)), BN


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, h0, chunk_size):
        Bsz, T, D = x.shape
        N = A.shape[1]
        BD, BN = _blocks(D, N)
        NC = triton.cdiv(T, chunk_size)
        y, last = torch.empty_like(x), torch.empty_like(h0)
        ckpt = x.new_empty(Bsz, NC, D, N)
        grid = (Bsz, triton.cdiv(D, BD))
        _scan_fwd[grid](x, dt, A, B, C, h0, y, ckpt, last, T, D, N, NC, CS=chunk_size, BD=BD, BN=BN)
        ctx.save_for_backward(x, dt, A, B, C, ckpt)
        ctx.chunk_size = chunk_size
        return y, last

    @staticmethod
    def backward(ctx, gy, glast):
        x, dt, A, B, C, ckpt = ctx.saved_tensors
        Bsz, T, D = x.shape
        N = A.shape[1]
        BD, BN = _blocks(D, N)
        NC, nblk = ckpt.shape[1], triton.cdiv(D, BD)
        gy = gy.contiguous().float()
        glast = torch.zeros_like(ckpt[:, 0]) if glast is None else glast.contiguous().float()
        scratch = x.new_empty(Bsz, ctx.chunk_size, D, N)
        gx, gdt = torch.empty_like(x), torch.empty_like(dt)
        ga, gh0 = x.new_empty(Bsz, D, N), torch.empty_like(glast)
        gb, gc = x.new_zeros(Bsz, nblk, T, N), x.new_zeros(Bsz, nblk, T, N)
        _scan_bwd[(Bsz, nblk)](x, dt, A, B, C, ckpt, gy, glast, scratch, gx, gdt, ga, gb, gc, gh0, T, D, N, NC, nblk,
                               CS=ctx.chunk_size, BD=BD, BN=BN)
        return gx, gdt, ga.sum(0), gb.sum(1), gc.sum(1), gh0, None


def chunk_selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                         h0: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(y ``[B, T, D]``, last state ``[B, D, N]``), computed in float32 and returned in x's dtype."""
    dtype = x.dtype
    x, dt, A, B, C, h0 = (t.contiguous().float() for t in (x, dt, A, B, C, h0))
    y, last = _SelectiveScan.apply(x, dt, A, B, C, h0, chunk_size)
    return y.to(dtype), last.to(dtype)
