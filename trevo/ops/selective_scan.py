"""Mamba's selective scan (S6): a diagonal SSM whose step Δ and input/output maps B, C depend on the
input (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
arXiv:2312.00752, Algorithm 2, with the ZOH/Euler discretisation of its code)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t x_t) B_t,   y_t = h_t C_t        (per channel d, state n)

Layout: x, Δ ``[B, T, D]``; A ``[D, N]`` (negative); B, C ``[B, T, N]``; state ``[B, D, N]``.
``chunked_selective_scan`` is the chunk form for any decay given as a function of per-token inputs
(Longhorn's, ``trevo.components.mixers.longhorn``).

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

from collections.abc import Callable, Sequence

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
        if triton_kernels.enabled(x, dt, A, B, C, h0):
            from trevo.ops.triton.selective_scan import chunk_selective_scan

            return chunk_selective_scan(x, dt, A, B, C, h0, chunk_size)
        return chunked_selective_scan(_mamba_log_decay, (dt,), (A,), dt * x, B, C, h0, chunk_size)
    if form == "scan":
        log_a = dt[..., None] * A  # [B, T, D, N]
        inputs = (dt * x)[..., None] * B[:, :, None, :]
        h, last = linear_scan(log_a, inputs, h0, form="scan")
        return torch.einsum("btdn,btn->btd", h, C), last
    raise TrevoError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")


def chunked_selective_scan(log_decay: Callable[..., torch.Tensor], per_token: Sequence[torch.Tensor],
                           shared: Sequence[torch.Tensor], u: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                           h0: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk form of any selective (vector-gated, rank-one-input) scan, y_t = h_t C_t with
    h_t = exp(log a_t) ⊙ h_{t−1} + u_t B_tᵀ, in O(T·(D + N) + STATE_ELEMENTS) memory.

    u ``[B, T, D]``; B, C ``[B, T, N]``; h0 ``[B, D, N]``. ``log_decay(*per_token, *shared)`` gives
    log a ``[B, S, D, N]`` (<= 0) for a segment of S steps: ``per_token`` tensors ``[B, T, ...]`` are
    split along time with the segment, ``shared`` ones (parameters) are passed whole. It is called again
    in the backward pass, so it must be a pure function of its arguments."""
    if u.shape[1] == 0:
        return u, h0
    return _ChunkedSelectiveScan.apply(log_decay, len(per_token), chunk_size, u, B, C, h0, *per_token, *shared)


def _mamba_log_decay(dt: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    return dt[..., None] * A


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
    g_t = C_t ∂y_t + a_{t+1} ⊙ g_{t+1} through the same chunked sweep. The log decay's own inputs get
    their gradients from ∂loss/∂log a_t through autograd, one segment at a time."""

    @staticmethod
    def forward(ctx, log_decay, n_per_token, chunk_size, u, B, C, h0, *decay_args):
        per_token, shared = decay_args[:n_per_token], decay_args[n_per_token:]
        ys, starts, h = [], [], h0
        steps = segment_steps(u.shape[0], u.shape[-1], B.shape[-1], chunk_size)
        for us, Bs, Cs, *ts in zip(*(t.split(steps, dim=1) for t in (u, B, C, *per_token)), strict=True):
            starts.append(h)
            hs = _states(torch.exp(log_decay(*ts, *shared)), us, Bs, h, chunk_size)
            ys.append(torch.einsum("btdn,btn->btd", hs, Cs))
            h = hs[:, -1]
        ctx.log_decay, ctx.n_per_token, ctx.chunk_size = log_decay, n_per_token, chunk_size
        ctx.save_for_backward(u, B, C, torch.stack(starts), *decay_args)
        return torch.cat(ys, dim=1), h.clone()

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        u, B, C, starts, *decay_args = ctx.saved_tensors
        L, n = ctx.chunk_size, ctx.n_per_token
        shared = [t.detach().requires_grad_(need) for t, need in zip(decay_args[n:], ctx.needs_input_grad[7 + n:],
                                                                     strict=True)]
        steps = segment_steps(u.shape[0], u.shape[-1], B.shape[-1], L)
        segments = list(zip(*(t.split(steps, dim=1) for t in (u, B, C, grad_y, *decay_args[:n])),
                            starts.unbind(0), strict=True))
        # ∂loss/∂(the state after a segment), and the decay that carries it into the next segment
        g_next = torch.zeros_like(starts[0]) if grad_last is None else grad_last
        a_next = torch.ones_like(starts[0])
        grads = {"u": [], "B": [], "C": [], "per_token": []}
        grad_shared = [torch.zeros_like(t) for t in shared]
        for us, Bs, Cs, gys, *ts, start in reversed(segments):
            ts = [t.detach().requires_grad_(need) for t, need in zip(ts, ctx.needs_input_grad[7:7 + n], strict=True)]
            with torch.enable_grad():
                log_a = ctx.log_decay(*ts, *shared)
            decay = torch.exp(log_a.detach())
            hs = _states(decay, us, Bs, start, L)
            # g_t = C_t ∂y_t + a_{t+1} g_{t+1}: the same recurrence backwards in time.
            following = torch.cat([decay[:, 1:], a_next[:, None]], dim=1)
            g = _states(following, gys, Cs, g_next, L, reverse=True)
            # ∂loss/∂log a_t = a_t h_{t−1} ⊙ g_t, with a_t h_{t−1} = h_t − u_t B_tᵀ
            g_log_a = torch.addcmul(hs, us[..., None], Bs[:, :, None, :], value=-1).mul_(g)
            grads["u"].append(torch.einsum("btdn,btn->btd", g, Bs))
            grads["B"].append(torch.einsum("btdn,btd->btn", g, us))
            grads["C"].append(torch.einsum("btd,btdn->btn", gys, hs))
            wanted = [t for t in (*ts, *shared) if t.requires_grad]
            got = iter(torch.autograd.grad(log_a, wanted, g_log_a) if wanted else ())
            grads["per_token"].append([next(got) if t.requires_grad else None for t in ts])
            for i, t in enumerate(shared):
                if t.requires_grad:
                    grad_shared[i] += next(got)
            g_next, a_next = g[:, 0], decay[:, 0]
        gu, gB, gC = (torch.cat(grads[k][::-1], dim=1) for k in ("u", "B", "C"))
        g_per_token = [None if parts[0] is None else torch.cat(parts, dim=1)
                       for parts in zip(*grads["per_token"][::-1], strict=True)]
        g_shared = [g if t.requires_grad else None for g, t in zip(grad_shared, shared, strict=True)]
        return None, None, None, gu, gB, gC, a_next * g_next, *g_per_token, *g_shared
