"""The diagonal linear recurrence h_t = a_t ⊙ h_{t-1} + b_t, for real or complex a, in three forms.

It is the core of the linear RNNs and diagonal state-space models (LRU, S4D's recurrent mode, S5,
Mamba's selective scan). Both forms take the decay in log space, ``log_a`` (a_t = exp(log_a_t)):
every caller has it at hand (LRU: log λ = −exp(ν) + i·exp(θ); ZOH: ΔA), and the chunked form needs
it to build decay products without dividing by vanishing cumulative products.

``linear_scan(log_a, b, h0, form=...)`` runs one of them:

- ``recurrent``: one step at a time, the reference and the generation form;
- ``chunk``: time-parallel inside chunks of ``chunk_size`` — the decay from step s to
  step t is exp(Σ_{s<r<=t} log a_r), a difference of in-chunk cumulative sums, so nothing is divided
  by a vanishing product — with the state carried across chunks. Memory O(B·L²·|state|) per chunk;
  for a time-invariant decay (LRU, S4D, S5) one matrix of powers serves every chunk and the chunks
  are one batched matmul, O(T·L·|state|) work and O(L²·|state| + T·|state|) memory;
- ``scan``: the whole sequence in ⌈log2 T⌉ steps of recursive doubling (a parallel
  prefix scan), O(T·log T·|state|) work and no L² term — the form for large states (Mamba).

Layout: ``b`` is ``[B, T, *S]``; ``log_a`` broadcasts to it (``[*S]`` for a time-invariant decay,
``[B, T, *S]`` for an input-dependent one); ``h0`` is ``[B, *S]``. Every form returns (all states
``[B, T, *S]``, last state ``[B, *S]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.errors import TrevoError

FORMS = ("chunk", "scan", "recurrent")


def _prepare(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None):
    if log_a.dim() < b.dim():
        log_a = log_a.reshape((1,) * (b.dim() - log_a.dim()) + tuple(log_a.shape))
    dtype = torch.promote_types(log_a.dtype, b.dtype)
    log_a, b = log_a.to(dtype), b.to(dtype)
    if h0 is None:
        h0 = torch.zeros((b.shape[0], *b.shape[2:]), dtype=dtype, device=b.device)
    return log_a, b, h0.to(dtype)


def _recurrent(log_a: torch.Tensor, b: torch.Tensor,
        h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = exp(log_a_t) ⊙ h_{t-1} + b_t, one step at a time."""
    log_a, b, h = _prepare(log_a, b, h0)
    a = torch.exp(log_a).expand(b.shape[0], b.shape[1], *log_a.shape[2:])
    hs = []
    # unbind, not indexing: the gradient of x[:, t] is a zero tensor of x's full size per step
    for a_t, b_t in zip(a.unbind(1), b.unbind(1), strict=True):
        h = a_t * h + b_t
        hs.append(h)
    if not hs:
        return b, h
    return torch.stack(hs, dim=1), h


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b; complex operands as one real product of [[Re, −Im], [Im, Re]] blocks (torch's complex
    batched matmul copies every batch in its backward pass)."""
    if not a.is_complex():
        return a @ b
    blocks = torch.cat([torch.cat([a.real, -a.imag], dim=-1), torch.cat([a.imag, a.real], dim=-1)], dim=-2)
    out = blocks @ torch.cat([b.real, b.imag], dim=-2)
    re, im = out.chunk(2, dim=-2)
    return torch.complex(re, im)


def _chunk_time_invariant(log_a: torch.Tensor, b: torch.Tensor, h: torch.Tensor,
                          L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked recurrence for a decay that is the same at every step (an LTI system): inside a
    chunk h_t = Σ_{s<=t} a^{t−s} b_s + a^{t+1} h_start, where the lower-triangular matrix of powers
    a^{t−s} is one ``[L, L]`` matrix per state element, shared by every chunk and batch row — so the
    work inside the chunks is one batched matmul. The states at the chunk boundaries obey the same
    recurrence with decay a^L, solved by this function again (log_L(T) levels, no loop over chunks)."""
    B, T = b.shape[:2]
    shape = b.shape[2:]
    la = log_a.reshape(-1)  # [n]
    n = la.shape[0]
    L = max(L, 2)  # chunks of one step would never shorten the boundary recurrence
    nc = -(-T // L)
    if nc == 1:
        L = T
    bb = torch.cat([b, b.new_zeros(B, nc * L - T, *shape)], dim=1) if nc * L > T else b
    bb = bb.reshape(B * nc, L, n).permute(2, 1, 0).contiguous()  # [n, L(s), B·nc]
    idx = torch.arange(L, device=b.device)
    lag = idx[:, None] - idx[None, :]
    # L powers per mode (a^0 … a^{L−1}, plus a zero for the future), laid out as the Toeplitz matrix.
    steps = torch.exp(idx.to(la.real.dtype)[None] * la[:, None])  # [n, L]
    steps = torch.cat([steps, steps.new_zeros(n, 1)], dim=1)
    powers = steps[:, torch.where(lag >= 0, lag, L)]  # [n, L(t), L(s)]
    local = _matmul(powers, bb).permute(2, 1, 0).reshape(B, nc, L, n)  # states from a zero start, per chunk
    h = h.reshape(B, n)
    if nc == 1:
        before = h[:, None]
    else:
        ends, _ = _chunk_time_invariant(L * la, local[:, :, -1], h, L)  # [B, nc, n]
        before = torch.cat([h[:, None], ends[:, :-1]], dim=1)  # the state each chunk starts from
    carry = torch.cat([steps[:, 1:L], torch.exp(L * la)[:, None]], dim=1).T  # a^{t+1}, [L, n]
    hs = (local + carry * before[:, :, None]).reshape(B, nc * L, n)[:, :T]
    return hs.reshape(B, T, *shape), hs[:, -1].reshape(B, *shape)


def _chunk(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None,
           chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same recurrence, time-parallel inside chunks: inside a chunk starting from state h,
    h_t = exp(c_t) h + Σ_{s<=t} exp(c_t − c_s) b_s with c the in-chunk cumulative sum of log a."""
    log_a, b, h = _prepare(log_a, b, h0)
    T = b.shape[1]
    if T == 0:
        return b, h
    if log_a.shape[0] == 1 and log_a.shape[1] == 1:
        return _chunk_time_invariant(log_a.expand(1, 1, *b.shape[2:]), b, h, chunk_size)
    return chunk_time_varying(log_a.expand(b.shape[0], T, *b.shape[2:]), b, h, chunk_size)


def chunk_time_varying(log_a: torch.Tensor, b: torch.Tensor, h: torch.Tensor,
                       L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked recurrence for a decay that changes with the step (``log_a`` ``[B, T, *S]``); see
    ``chunked_recurrence``. Returns (all states, last state)."""
    hs = chunked_recurrence(torch.exp(log_a), b, h, L)
    return hs, hs[:, -1]


def chunked_recurrence(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor, L: int,
                       reverse: bool = False) -> torch.Tensor:
    """All states of h_t = a_t ⊙ h_{t−1} + b_t from h (``reverse``: h_t = a_t ⊙ h_{t+1} + b_t from h
    after the end), for multipliers ``a`` ``[B, T, *S]``. Inside every chunk of L steps the recurrence
    runs from a zero state, all chunks at once (L steps on ``[B, T/L, *S]`` slices), together with each
    chunk's running product of decays; those products then carry the states from chunk to chunk — and
    the states at the chunk boundaries obey the same recurrence, solved by this function again.
    O(T·|state|) work like the recurrent form, in about L·log_L(T) sequential steps instead of T."""
    B, T = b.shape[:2]
    shape = b.shape[2:]
    L = max(L, 2)  # chunks of one step would never shorten the boundary recurrence
    nc = -(-T // L)
    if nc == 1:
        L = T
    if nc * L > T:  # padded steps keep the state (a = 1) and add nothing
        pad = (0, 0) * len(shape) + (0, nc * L - T)
        a, b = F.pad(a, pad, value=1.0), F.pad(b, pad)
    a, b = a.reshape(B, nc, L, *shape), b.reshape(B, nc, L, *shape)
    local, through = [None] * L, [None] * L  # states from a zero start, products of decays
    state, product = torch.zeros_like(b[:, :, 0]), torch.ones_like(a[:, :, 0])
    # unbind, not indexing: the gradient of x[:, :, i] is a zero tensor of x's full size per step
    steps = list(zip(a.unbind(2), b.unbind(2), strict=True))
    for i in (reversed(range(L)) if reverse else range(L)):
        state = steps[i][0] * state + steps[i][1]
        product = steps[i][0] * product
        local[i], through[i] = state, product
    local, through = torch.stack(local, dim=2), torch.stack(through, dim=2)
    edge = 0 if reverse else -1  # the step where a chunk hands its state on
    if nc == 1:
        entering = h[:, None]
    else:
        handed = chunked_recurrence(through[:, :, edge], local[:, :, edge], h, L, reverse)
        entering = (torch.cat([handed[:, 1:], h[:, None]], dim=1) if reverse
                    else torch.cat([h[:, None], handed[:, :-1]], dim=1))  # the state each chunk starts from
    return (local + through * entering[:, :, None]).reshape(B, nc * L, *shape)[:, :T]


def _doubling(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence by recursive doubling (Hillis & Steele 1986; Blelloch 1990's scan with the
    associative operator (a1, b1) ∘ (a2, b2) = (a1·a2, a2·b1 + b2)): after the step of stride s every
    h_t holds the sum over its last 2s inputs. Decays combine by adding their logs, so products of
    |a| <= 1 only shrink towards 0, never overflow."""
    log_a, b, h = _prepare(log_a, b, h0)
    T = b.shape[1]
    if T == 0:
        return b, h
    if log_a.shape[1] == 1:
        log_a = log_a.expand(log_a.shape[0], T, *log_a.shape[2:])
    # The initial state enters as part of the first input.
    b = torch.cat([b[:, :1] + torch.exp(log_a[:, :1]) * h[:, None], b[:, 1:]], dim=1)
    stride = 1
    while stride < T:
        b = torch.cat([b[:, :stride], b[:, stride:] + torch.exp(log_a[:, stride:]) * b[:, :-stride]], dim=1)
        log_a = torch.cat([log_a[:, :stride], log_a[:, stride:] + log_a[:, :-stride]], dim=1)
        stride *= 2
    return b, b[:, -1]


def linear_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, *, form: str = "chunk",
                chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(all states ``[B, T, *S]``, last state ``[B, *S]``) of the recurrence in the named form."""
    if form == "recurrent":
        return _recurrent(log_a, b, h0)
    if form == "chunk":
        if chunk_size < 1:
            raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
        return _chunk(log_a, b, h0, chunk_size)
    if form == "scan":
        return _doubling(log_a, b, h0)
    raise TrevoError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
