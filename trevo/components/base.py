"""The contracts every token mixer and channel mixer follows (DESIGN.md, "Token mixers").

A token mixer maps ``(batch, seq, d_model)`` to the same shape. Built with ``causal=True`` it never
lets position t see positions > t and supports recurrent generation through

    state = mixer.init_state(batch, device, dtype)
    y, state = mixer.prefill(x, state)      # a whole chunk at once
    y_t, state = mixer.step(x_t, state)     # one token: x_t is (batch, d_model)

where ``state`` is a dict of tensors (a KV cache for softmax attention, a constant-size state for an
RNN). ``prefill`` on x[:t] then on x[t:] with the carried state equals ``forward`` on x.

Mixers with several exact forms (``parallel``, ``chunk``, ``recurrent`` …) select one with the
``impl`` attribute; ``"auto"`` picks the fastest for the input.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from trevo.registry import IncompatibleError, TrevoError

State = dict[str, torch.Tensor]


class TokenMixer(nn.Module):
    """Base class of token mixers: shape checks, the generation contract and form selection."""

    forms: tuple[str, ...] = ("parallel",)

    def __init__(self, d_model: int, *, causal: bool, impl: str = "auto") -> None:
        super().__init__()
        self.d_model = d_model
        self.causal = causal
        self.impl = impl
        if impl != "auto" and impl not in self.forms:
            raise IncompatibleError(
                f"{type(self).__name__} has no form {impl!r}; its forms are: auto, {', '.join(self.forms)}"
            )

    def pick_form(self, seq_len: int) -> str:
        """The form for ``seq_len`` tokens: ``impl``, or for ``auto`` the first of ``forms`` (each mixer
        lists its fastest training form first), except that a causal one-token step uses the
        ``recurrent`` form where there is one."""
        if self.impl != "auto":
            return self.impl
        if seq_len == 1 and self.causal and "recurrent" in self.forms:
            return "recurrent"
        return self.forms[0]

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise TrevoError(
                f"{type(self).__name__} expects input of shape (batch, seq, {self.d_model}), "
                f"got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TrevoError(f"{type(self).__name__} expects a floating-point input, got {x.dtype}")

    # The generation contract. Recurrent mixers override all three; the default prefill loops step.
    def init_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        raise NotImplementedError(f"{type(self).__name__} does not support recurrent generation")

    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        self._require_causal("prefill")
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        ys = []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            ys.append(y)
        return torch.stack(ys, dim=1), state

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, state = self.prefill(x_t[:, None], state)
        return y[:, 0], state

    def _require_causal(self, what: str) -> None:
        if not self.causal:
            raise IncompatibleError(
                f"{type(self).__name__} was built with causal=False; {what} is only defined for causal mixers"
            )


class ChannelMixer(nn.Module):
    """Base class of channel mixers (FFNs). Most are position-wise and so stateless; those that look
    at the previous token (RWKV's channel-mix) override the generation methods."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model

    def init_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return {}

    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return self(x), {} if state is None else state

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self(x_t[:, None])[:, 0], state


def empty_kv_cache(shape: tuple[int, ...], device, dtype: torch.dtype) -> State:
    """A key/value cache holding no tokens yet: ``shape`` has a time axis of size 0."""
    empty = torch.zeros(shape, device=device, dtype=dtype)
    return {"k": empty, "v": empty.clone()}


def extend_kv_cache(state: State, k: torch.Tensor, v: torch.Tensor, dim: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached keys and values followed by the new ones along the time axis ``dim``."""
    return torch.cat([state["k"], k], dim=dim), torch.cat([state["v"], v], dim=dim)


def state_nbytes(state: Mapping[str, object] | list | tuple | torch.Tensor | None) -> int:
    """Bytes held by a (nested) generation state: what recurrent decoding keeps in memory."""
    if state is None:
        return 0
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, Mapping):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    return 0


def token_shift(x: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
    """x shifted one step along time: out[:, t] = x[:, t-1], out[:, 0] = ``last`` (zeros if None).

    The "time-mix" interpolation of RWKV and friends mixes each token with its predecessor."""
    first = torch.zeros_like(x[:, :1]) if last is None else last[:, None].to(x.dtype)
    return torch.cat([first, x[:, :-1]], dim=1)
