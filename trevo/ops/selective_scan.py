"""Mamba's selective scan (S6): a diagonal SSM whose step Δ and input/output maps B, C depend on the
input (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
arXiv:2312.00752, Algorithm 2, with the ZOH/Euler discretisation of its code)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t x_t) B_t,   y_t = h_t C_t        (per channel d, state n)

Layout: x, Δ ``[B, T, D]``; A ``[D, N]`` (negative); B, C ``[B, T, N]``; state ``[B, D, N]``.

Forms:
  ``chunk``     the training form: segments of about ``STATE_ELEMENTS`` state entries, each scanned in chunks of
                ``chunk_size`` steps that run side by side (the states carried across chunk
                boundaries, see ``_states``), with a hand-written backward pass that
                recomputes each segment's states from the state saved at its start — what Mamba's fused
                kernel does on a GPU. O(T·D·N) work like the recurrence (a vector-gated recurrence per
                channel has no cheaper exact form: the SSD block decomposition costs chunk_size times
                more multiply-adds here, with inner dimension N), about chunk_size·log(T) sequential
                steps instead of T, and O(T·(D + N) + STATE_ELEMENTS) memory instead of O(T·D·N);
                On CUDA with Triton installed: the kernels of ``trevo.ops.triton.selective_scan``
                (the same chunks, the state in registers);
  ``scan``      the whole sequence by recursive doubling (``trevo.ops.scan``), O(T·log T·D·N);
  ``recurrent`` one step at a time: the reference and the decoding form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.errors import TrevoError
from trevo.ops import triton as triton_kernels
from trevo.ops.scan import linear_scan

FORMS = ("chunk", "scan", "recurrent")
# Entries of the [B, steps, D, N] states one segment of the chunk form holds at once (4 MB in float32):
# small enough to stay in cache between the sweeps. On this project's 2-core CPU (B = 1, D = 512, N = 16,
# T = 4096, forward and backward) 128-step segments ran about 25 % faster than 512-step ones.
STATE_ELEMENTS = 2 ** 20


def segment_steps(batch: int, D: int, N: int, chunk_size: int) -> int:
    """Steps per segment of the chunk form: a whole number of chunks, about ``STATE_ELEMENTS`` entries."""
    return chunk_size * max(1, STATE_ELEMENTS // (batch * D * N * chunk_size))


def selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   h0: torch.Tensor | None = None, *, form: str = "chunk", chunk_size: int = 16
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(y ``[B, T, D]``, last state ``[B, D, N]``) of the selective scan in the named form."""
    if h0 is None:
        h0 = torch.zeros(x.shape[0], *A.shape, dtype=x.dtype, device=x.device)
    if form == "recurrent":
        return _recurrent(x, dt, A, B, C, h0)
    if form == "chunk":
        if chunk_size < 1:
            raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
        if x.shape[1] == 0:
            return x, h0
        if triton_kernels.enabled(x, dt, A, B, C, h0):
            from trevo.ops.triton.selective_scan import chunk_selective_scan

            return chunk_selective_scan(x, dt, A, B, C, h0, chunk_size)
        return _ChunkedSelectiveScan.apply(x, dt, A, B, C, h0, chunk_size)
    if form == "scan":
        log_a = dt[..., None] * A  # [B, T, D, N]
        inputs = (dt * x)[..., None] * B[:, :, None, :]
        h, last = linear_scan(log_a, inputs, h0, form="scan")
        return torch.einsum("btdn,btn->btd", h, C), last
    raise TrevoError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")


def _recurrent(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence one token at a time, without materialising every state."""
    ys = []
    # unbind, not indexing: the gradient of x[:, t] is a zero tensor of x's full size per step
    for dt_t, x_t, B_t, C_t in zip(dt.unbind(1), x.unbind(1), B.unbind(1), C.unbind(1), strict=True):
        decay = torch.exp(dt_t[:, :, None] * A)
        h = decay * h + (dt_t * x_t)[:, :, None] * B_t[:, None, :]
        ys.append((h * C_t[:, None, :]).sum(-1))
    if not ys:
        return x, h
    return torch.stack(ys, dim=1), h


def _states(decay: torch.Tensor, u: torch.Tensor, B: torch.Tensor, h: torch.Tensor, L: int,
            reverse: bool = False) -> torch.Tensor:
    """All states ``[B, S, D, N]`` of h_t = decay_t ⊙ h_{t−1} + u_t B_tᵀ from h (``reverse``: h_t =
    decay_t ⊙ h_{t+1} + u_t B_tᵀ from h after the end), without autograd. Chunks of L steps run side
    by side: a first sweep from a zero state gives each chunk's end state and decay product, a short
    loop over the chunks gives the state each chunk starts from, and a second sweep writes the states.
    Every step updates a preallocated ``[B, S/L, D, N]`` slice in place (no temporaries)."""
    Bt, S, D, N = decay.shape
    nc = -(-S // L)
    if nc * L > S:  # padded steps keep the state (decay 1) and add nothing
        decay = F.pad(decay, (0, 0, 0, 0, 0, nc * L - S), value=1.0)
        u, B = F.pad(u, (0, 0, 0, nc * L - S)), F.pad(B, (0, 0, 0, nc * L - S))
    dec, uu, bb = decay.view(Bt, nc, L, D, N), u.view(Bt, nc, L, D, 1), B.view(Bt, nc, L, 1, N)
    order = range(L - 1, -1, -1) if reverse else range(L)
    state, product = h.new_zeros(Bt, nc, D, N), dec.prod(dim=2)
    for i in order:
        state.mul_(dec[:, :, i]).addcmul_(uu[:, :, i], bb[:, :, i])
    entering, carried = torch.empty_like(state), h
    for c in (range(nc - 1, -1, -1) if reverse else range(nc)):
        entering[:, c] = carried
        carried = torch.addcmul(state[:, c], product[:, c], carried)
    out = decay.new_empty(Bt, nc, L, D, N)
    state = entering
    for i in order:
        state = torch.mul(state, dec[:, :, i], out=out[:, :, i]).addcmul_(uu[:, :, i], bb[:, :, i])
    return out.view(Bt, nc * L, D, N)[:, :S]


class _ChunkedSelectiveScan(torch.autograd.Function):
    """The ``chunk`` form: forward by segments keeping only each segment's start state; backward by
    segments in reverse, recomputing the states and running the adjoint recurrence
    g_t = C_t ∂y_t + exp(Δ_{t+1}A) g_{t+1} through the same chunked sweep."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, h0, chunk_size):
        ys, starts, h = [], [], h0
        steps = segment_steps(x.shape[0], *A.shape, chunk_size)
        for xs, dts, Bs, Cs in zip(*(t.split(steps, dim=1) for t in (x, dt, B, C)), strict=True):
            starts.append(h)
            hs = _states(torch.exp(dts[..., None] * A), dts * xs, Bs, h, chunk_size)
            ys.append(torch.einsum("btdn,btn->btd", hs, Cs))
            h = hs[:, -1]
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(x, dt, A, B, C, torch.stack(starts))
        return torch.cat(ys, dim=1), h.clone()

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        x, dt, A, B, C, starts = ctx.saved_tensors
        L = ctx.chunk_size
        steps = segment_steps(x.shape[0], *A.shape, L)
        segments = list(zip(*(t.split(steps, dim=1) for t in (x, dt, B, C, grad_y)), starts.unbind(0),
                            strict=True))
        # ∂loss/∂(the state after a segment), and the decay that carries it into the next segment
        g_next = torch.zeros_like(starts[0]) if grad_last is None else grad_last
        a_next = torch.ones_like(starts[0])
        grads = {"x": [], "dt": [], "B": [], "C": []}
        grad_A = torch.zeros_like(A)
        for xs, dts, Bs, Cs, gys, start in reversed(segments):
            u = dts * xs
            decay = torch.exp(dts[..., None] * A)
            hs = _states(decay, u, Bs, start, L)
            # g_t = C_t ∂y_t + a_{t+1} g_{t+1}: the same recurrence backwards in time.
            following = torch.cat([decay[:, 1:], a_next[:, None]], dim=1)
            g = _states(following, gys, Cs, g_next, L, reverse=True)
            # ∂loss/∂(Δ_t A) = exp(Δ_t A) h_{t−1} ⊙ g_t, with exp(Δ_t A) h_{t−1} = h_t − u_t B_tᵀ
            g_log_a = torch.addcmul(hs, u[..., None], Bs[:, :, None, :], value=-1).mul_(g)
            g_u = torch.einsum("btdn,btn->btd", g, Bs)
            grads["C"].append(torch.einsum("btd,btdn->btn", gys, hs))
            grads["B"].append(torch.einsum("btdn,btd->btn", g, u))
            grads["dt"].append(torch.einsum("btdn,dn->btd", g_log_a, A) + g_u * xs)
            grads["x"].append(g_u * dts)
            grad_A += (g_log_a * dts[..., None]).sum((0, 1))  # (einsum's bmm for this one is 20× slower)
            g_next, a_next = g[:, 0], decay[:, 0]
        gx, gdt, gB, gC = (torch.cat(grads[k][::-1], dim=1) for k in ("x", "dt", "B", "C"))
        return gx, gdt, grad_A, gB, gC, a_next * g_next, None
