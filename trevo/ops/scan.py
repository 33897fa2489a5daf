"""The diagonal linear recurrence h_t = a_t ⊙ h_{t-1} + b_t, for real or complex a, in three forms.

It is the core of the linear RNNs and diagonal state-space models (LRU, S4D's recurrent mode, S5,
Mamba's selective scan). Both forms take the decay in log space, ``log_a`` (a_t = exp(log_a_t)):
every caller has it at hand (LRU: log λ = −exp(ν) + i·exp(θ); ZOH: ΔA), and the chunked form needs
it to build decay products without dividing by vanishing cumulative products.

``linear_scan(log_a, b, h0, form=...)`` runs one of them:

- ``recurrent``: one step at a time, the reference and the generation form;
- ``chunk``: time-parallel inside chunks of ``chunk_size`` — the decay from step s to
  step t is exp(Σ_{s<r<=t} log a_r), a difference of in-chunk cumulative sums, so nothing is divided
  by a vanishing product — with the state carried across chunks. Memory O(B·L²·|state|);
- ``scan``: the whole sequence in ⌈log2 T⌉ steps of recursive doubling (a parallel
  prefix scan), O(T·log T·|state|) work and no L² term — the form for large states (Mamba).

Layout: ``b`` is ``[B, T, *S]``; ``log_a`` broadcasts to it (``[*S]`` for a time-invariant decay,
``[B, T, *S]`` for an input-dependent one); ``h0`` is ``[B, *S]``. Every form returns (all states
``[B, T, *S]``, last state ``[B, *S]``).
"""

from __future__ import annotations

import torch

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


def _chunk(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None,
           chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same recurrence, time-parallel inside chunks: inside a chunk starting from state h,
    h_t = exp(c_t) h + Σ_{s<=t} exp(c_t − c_s) b_s with c the in-chunk cumulative sum of log a."""
    log_a, b, h = _prepare(log_a, b, h0)
    T = b.shape[1]
    if log_a.shape[1] == 1:
        log_a = log_a.expand(log_a.shape[0], T, *log_a.shape[2:])
    extra = b.dim() - 2
    outs = []
    # split, not x[:, a:b]: a slice's gradient is a zero tensor of x's full size per chunk.
    for la, bb in zip(log_a.split(chunk_size, dim=1), b.split(chunk_size, dim=1), strict=True):
        L = bb.shape[1]
        cum = la.cumsum(dim=1)
        diff = cum[:, :, None] - cum[:, None, :]  # [B, t, s, *S]
        past = torch.ones(L, L, dtype=torch.bool, device=b.device).tril()
        past = past.reshape(1, L, L, *([1] * extra))
        # Zero the future before exp (it could overflow) and after (its gradient must vanish too);
        # the zeros keep the chunk exactly causal.
        decay = torch.where(past, torch.exp(torch.where(past, diff, torch.zeros_like(diff))),
                            torch.zeros_like(diff))
        hs = (decay * bb[:, None]).sum(dim=2) + torch.exp(cum) * h[:, None]
        outs.append(hs)
        h = hs[:, -1]
    if not outs:
        return b, h
    return torch.cat(outs, dim=1), h


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
