"""Attention Free Transformer: AFT-full, AFT-simple, AFT-local and AFT-conv.

Zhai et al., "An Attention Free Transformer" (arXiv:2105.14103). Every variant computes
Y_t = σ(Q_t) ⊙ Σ_t' exp(K_t' + b_{t,t'}) ⊙ V_t' / Σ_t' exp(K_t' + b_{t,t'}) (eq. 2) with its own
position bias b; the math lives in ``trevo.ops.aft``. The biases start at zero (every variant then
equals AFT-simple) and are learned.

DAFT, "A Dot Product Attention Free Transformer" (OpenReview JVR4JswsEM, an ICLR 2022 submission), is this
paper retitled by its seven authors: its abstract describes an attention map decomposed per feature dimension
and the same benchmarks, and its variants DAFT-full and DAFT-conv are AFT-full and AFT-conv, so they are
not registered a second time (``aft_full``, ``aft_conv``).
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache
from trevo.components.multihead import head_dim_of
from trevo.errors import IncompatibleError, TrevoError
from trevo.ops.aft import (
    absorb,
    aft_blockwise,
    aft_causal,
    aft_causal_banded,
    aft_partial,
    aft_quadratic,
    aft_simple_chunked,
    aft_simple_global,
    aft_simple_init_state,
    aft_simple_recurrent,
    banded_bias,
    merge,
    near_band_bias,
)
from trevo.registry import Paper, register

AFT_PAPER = Paper("An Attention Free Transformer", "2105.14103", 2021)
_META = dict(paper=AFT_PAPER, category="MHA/RightProduct", family="aft", causal=True, bidirectional=True)


class _AFT(TokenMixer):
    """Shared parts: the Q, K, V and output projections and the σ(Q) gate."""

    def __init__(self, d_model: int, *, causal: bool, chunk_size: int, form: str) -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.qkv(x).chunk(3, dim=-1)

    def _out(self, q: torch.Tensor, avg: torch.Tensor) -> torch.Tensor:
        return self.out_proj(torch.sigmoid(q) * avg)

    def _check_length(self, stop: int) -> None:
        max_len = getattr(self, "max_len", None)
        if max_len is not None and stop > max_len:
            raise TrevoError(f"{type(self).__name__} learns a position bias for {max_len} positions "
                             f"(model.max_len) but got position {stop - 1}; raise model.max_len or "
                             f"use aft_simple / aft_conv, which take any length")


class _AFTWithBias(_AFT):
    """AFT-full, -local and -conv: a dense bias block for (query rows, key columns)."""

    forms = ("chunk", "quadratic")

    def bias(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _mix(self, k, v, start: int, padding_mask=None) -> torch.Tensor:
        """Weighted averages for the last ``Tq = Tk - start`` positions of keys k, v ``[B, Tk, D]``."""
        tk = k.shape[1]
        self._check_length(tk)
        if self.causal and start == 0 and self.form_for(tk) == "chunk" and hasattr(self, "window"):
            # A band: the bias is zero beyond the window, so only the last chunk's keys need it.
            c = max(self.chunk_size, self.window)
            return aft_causal_banded(k, v, near_band_bias(self.band, tk, c, self.window), chunk_size=c)
        rows = torch.arange(start, tk, device=k.device)
        bias = self.bias(rows, torch.arange(tk, device=k.device)).to(k.dtype)
        if self.form_for(tk) == "quadratic":
            return aft_quadratic(k, v, bias, causal=self.causal, key_padding_mask=padding_mask)
        if self.causal:
            return aft_causal(k, v, bias, chunk_size=self.chunk_size)
        return aft_blockwise(k, v, bias, causal=False, key_padding_mask=padding_mask, chunk_size=self.chunk_size)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._qkv(x)
        return self._out(q, self._mix(k, v, 0, padding_mask))


@register("mixer", "aft_full", **_META, recurrent=False, fixed_length=True,
          time="O(T²·d)", memory="O(T²) bias + O(T·d); KV cache O(T·d) in generation",
          test_options={"chunk_size": 8})
class AFTFull(_AFTWithBias):
    """AFT-full (eq. 2; DAFT-full): a learned pairwise bias w ∈ R^{max_len × max_len}.

    Forms: ``quadratic`` (the naive reference, O(T²·d) memory) and ``chunk`` (exp(w) @ (exp(K) ⊙ V),
    eq. 3, chunked over queries so that causal outputs use only past keys, with a backward pass that
    keeps O(T·d + T²)). Generation keeps the past K, V (a cache) because w couples every pair of
    positions."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, chunk_size: int = 16,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, chunk_size=chunk_size, form=form)
        self.max_len = max_len
        self.w = nn.Parameter(torch.zeros(max_len, max_len))

    def bias(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return self.w[rows][:, cols][None]

    def init_state(self, batch: int, device, dtype) -> State:
        return empty_kv_cache((batch, 0, self.d_model), device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._qkv(x)
        k, v = extend_kv_cache(state, k, v, dim=1)
        return self._out(q, self._mix(k, v, state["k"].shape[1])), {"k": k, "v": v}


@register("mixer", "aft_simple", **_META, recurrent=True,
          time="O(T·d) chunk/recurrent, O(T²·d) quadratic", memory="O(d) state",
          test_options={"chunk_size": 8})
class AFTSimple(_AFT):
    """AFT-simple (eq. 5, s = 0): no position bias, Y_t = σ(Q_t) ⊙ Σ_t' softmax_t'(K) ⊙ V_t'.

    Causal: the sums run over t' <= t, an RNN with state (running max m, Σ e^(K−m)V, Σ e^(K−m)).
    Forms (causal): ``quadratic`` (one naive lower-triangular block), ``chunk`` (naive blocks plus the
    carried state) and ``recurrent`` (one step at a time). Bidirectional: one global context vector
    (``quadratic`` computes it position by position, the others once)."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, chunk_size=chunk_size, form=form)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._qkv(x)
        if self.form_for(x.shape[1]) == "quadratic":
            zero = torch.zeros(1, x.shape[1], x.shape[1], device=x.device, dtype=x.dtype)
            return self._out(q, aft_quadratic(k, v, zero, causal=False, key_padding_mask=padding_mask))
        return self._out(q, aft_simple_global(k, v, padding_mask))

    def init_state(self, batch: int, device, dtype) -> State:
        return aft_simple_init_state(batch, self.d_model, device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._qkv(x)
        form = self.form_for(x.shape[1])
        if form == "recurrent":
            avg, state = aft_simple_recurrent(k, v, state)
        else:
            avg, state = aft_simple_chunked(k, v, state, self.chunk_size if form == "chunk" else x.shape[1])
        return self._out(q, avg), state


class _AFTBanded(_AFTWithBias):
    """AFT-local and AFT-conv: b = 0 outside a window of ``window`` positions. Generation keeps the
    running AFT-simple sums of the keys that left the window plus the window's last s − 1 keys."""

    window: int
    band: nn.Parameter  # [G, R, n_offsets]

    def bias(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return banded_bias(self.band, rows, cols, self.window, self.causal)

    def init_state(self, batch: int, device, dtype) -> State:
        state = aft_simple_init_state(batch, self.d_model, device, dtype)
        empty = torch.zeros(batch, 0, self.d_model, device=device, dtype=dtype)
        return {**state, "k": empty, "v": empty.clone(), "pos": torch.zeros((), dtype=torch.long, device=device)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if int(state["pos"]) > 0:  # a continuation: token by token through the window's state
            return super().causal_forward(x, state)
        q, k, v = self._qkv(x)
        y = self._out(q, self._mix(k, v, 0))
        old = x.shape[1] - min(x.shape[1], self.window - 1)  # keys that have left the window
        prefix = {key: state[key] for key in ("m", "num", "den")}
        if old:
            prefix = absorb(prefix, k[:, :old], v[:, :old])
        return y, {**prefix, "k": k[:, old:], "v": v[:, old:], "pos": state["pos"] + x.shape[1]}

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._qkv(x_t[:, None])
        pos = int(state["pos"])
        self._check_length(pos + 1)
        kw, vw = extend_kv_cache(state, k, v, dim=1)
        cols = torch.arange(pos + 1 - kw.shape[1], pos + 1, device=k.device)
        bias = self.bias(cols[-1:], cols).to(k.dtype)
        prefix = {key: state[key] for key in ("m", "num", "den")}
        num, den, _ = merge(aft_partial(kw, vw, bias, causal=False),
                            (prefix["num"][:, None], prefix["den"][:, None], prefix["m"][:, None]))
        if kw.shape[1] == self.window:  # the oldest key leaves the window for the running sums
            prefix = absorb(prefix, kw[:, :1], vw[:, :1])
            kw, vw = kw[:, 1:], vw[:, 1:]
        y = self._out(q, num / den)[:, 0]
        return y, {**prefix, "k": kw, "v": vw, "pos": state["pos"] + 1}


@register("mixer", "aft_local", **_META, recurrent=True, fixed_length=True,
          time="O(T·max(c, s)·d) causal chunk, O(T²·d) bidirectional",
          memory="O(T·s) bias, O(T·d); O(s·d) state in generation",
          test_options={"window": 4, "chunk_size": 8})
class AFTLocal(_AFTBanded):
    """AFT-local (eq. 4): w_{t,t'} learned where |t − t'| < s (t − t' < s causally), 0 elsewhere;
    keys outside the window still contribute, with bias 0.

    Stored as a band ``[max_len, n_offsets]`` (the masked entries of the paper's T×T w are never
    learned). Forms: ``quadratic`` (naive) and ``chunk``: causally, each query chunk (of
    max(chunk_size, s)) takes the previous and its own chunk with their bias and every older key
    through AFT-simple's running sums (bias 0 there), O(T·max(c, s)·d); bidirectionally eq. 3 with the
    dense banded bias."""

    def __init__(self, d_model: int, *, causal: bool, max_len: int = 1024, window: int = 32,
                 chunk_size: int = 16, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, chunk_size=chunk_size, form=form)
        if window < 1:
            raise IncompatibleError(f"aft_local needs window >= 1, got {window}")
        self.max_len, self.window = max_len, window
        self.band = nn.Parameter(torch.zeros(1, max_len, window if causal else 2 * window - 1))


@register("mixer", "aft_conv", **_META, recurrent=True,
          time="O(T·max(c, s)·d) causal chunk, O(T²·d) bidirectional (dense banded bias)",
          memory="O(T·d) causal, O(T²) bias bidirectional; O(s·d) state in generation",
          test_options={"window": 4, "n_heads": 2, "chunk_size": 8})
class AFTConv(_AFTBanded):
    """AFT-conv (eq. 6; DAFT-conv): per head i a kernel w^i of size s shared across positions,
    Y_t = σ(Q_t) ⊙ [conv(e^K ⊙ V, e^{w^i} − 1) + Σ e^K ⊙ V] / [conv(e^K, e^{w^i} − 1) + Σ e^K],
    i.e. b_{t,t'} = w^i_{t'−t} inside the window (past window causally) and 0 outside.

    Causally the convolution is computed directly, O(T·max(c, s)·d) (for a window of s taps a direct
    band beats an FFT): each query chunk takes the previous and its own chunk with the kernel, and
    every older key through AFT-simple's running sums (bias 0 there), exactly causal. Bidirectionally
    eq. 3 with the dense Toeplitz bias. The paper's kernel re-parameterisation is not applied."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, window: int = 16,
                 chunk_size: int = 8, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, chunk_size=chunk_size, form=form)
        head_dim_of(d_model, n_heads)
        if window < 1:
            raise IncompatibleError(f"aft_conv needs window >= 1, got {window}")
        self.window = window
        self.band = nn.Parameter(torch.zeros(n_heads, 1, window if causal else 2 * window - 1))
