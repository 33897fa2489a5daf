"""The contracts every token mixer and channel mixer follows (DESIGN.md, "Token mixers").

A token mixer maps ``(batch, seq, d_model)`` to the same shape. The base class owns the contract;
a mixer implements its forms and its state, nothing else:

- ``causal_forward(x, state) -> (y, state)``: the causal computation from a generation state (a KV
  cache for softmax attention, a constant-size state for an RNN), and ``init_state(batch, device,
  dtype)``. ``forward`` of a causal mixer is ``causal_forward`` from the initial state; ``prefill``
  and ``step`` are ``causal_forward`` on a chunk and on one token. A mixer whose incremental path is
  one token at a time may implement ``step`` instead (``causal_forward`` then loops it).
- ``bidirectional_forward(x, padding_mask, layout) -> y`` for a mixer that can see both sides.

Which of the two a mixer supports is its registry metadata (``causal``, ``bidirectional``); building
it the other way is refused. Mixers with several exact forms list them in the class attribute
``forms`` (names from ``trevo.registry.FORMS``, the training default first); ``form=`` picks one,
``"auto"`` lets ``form_for`` choose by the input.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from trevo.errors import IncompatibleError, TrevoError

State = dict[str, torch.Tensor]


def keep_init(*modules: nn.Module) -> None:
    """Exempt ``modules`` from a model's unit-scale initialisation (``trevo.models.init``): their own
    initialisation is the paper's (gate biases, a kernel network's frequencies) and must survive it."""
    for module in modules:
        module.keeps_init = True


def _measured(mixer: str, causal: bool, seq_len: int, device: str, training: bool) -> tuple[str, int]:
    """``trevo.bench.form_table.measured``'s form and chunk size ("" and 0 where none)."""
    from trevo.bench.form_table import measured  # the table is data of the benchmark

    form, chunk_size = measured(mixer, causal, seq_len, device=device, training=training)
    return form or "", chunk_size or 0


def trace_form_lookup_as_constant() -> None:
    """Make the table lookup of ``form="auto"`` and ``chunk_size=None`` a constant of ``torch.compile``
    traces, read once when a graph is traced (the table is JSON files behind an lru_cache, which dynamo
    would trace into and break the graph at the file read). The lookup's arguments are the graph's guards
    (the length a shape, the mode the grad mode), so a compiled block picks the form and chunk size an
    eager one picks; a table recalibrated after compiling is seen after ``torch._dynamo.reset()``. Called
    before compiling (``trevo.train.compile_blocks``) rather than at import, since
    ``torch.compiler.assume_constant_result`` imports torch._dynamo and Triton, which doubles trevo's
    import time and defines Triton's library functions before ``TRITON_INTERPRET`` can be set. A model
    compiled without it still runs; its graph breaks at the lookup."""
    torch.compiler.assume_constant_result(_measured)


class TokenMixer(nn.Module):
    """Base class of token mixers: input checks, forward dispatch, the generation contract, form choice."""

    forms: ClassVar[tuple[str, ...]] = ()
    # The chunk size of a mixer built with chunk_size=None where no calibration measured one.
    default_chunk_size: ClassVar[int] = 64

    def __init__(self, d_model: int, *, causal: bool, form: str = "auto") -> None:
        super().__init__()
        self.d_model = d_model
        self.causal = causal
        self.form = form
        what = type(self).__name__
        if form != "auto" and form not in self.forms:
            choices = f"auto, {', '.join(self.forms)}" if self.forms else "auto (it has one form)"
            raise IncompatibleError(f"{what} has no form {form!r}; its forms are: {choices}")
        entry = getattr(type(self), "registry_entry", None)
        if entry is not None and causal and not entry.causal:
            raise IncompatibleError(f"mixer {entry.name!r} is bidirectional only (it mixes every position "
                                    f"together) and cannot be built with causal=True; choose a causal mixer")
        if entry is not None and not causal and not entry.bidirectional:
            raise IncompatibleError(f"mixer {entry.name!r} is causal only and cannot be built with causal=False; "
                                    f"choose a bidirectional mixer")

    def form_for(self, seq_len: int) -> str:
        """The form for ``seq_len`` tokens: ``form``, or for ``auto`` the form measured fastest on this
        device kind at the nearest calibrated length, with gradients (training) or without (inference)
        as now (``trevo.bench.form_table``, written by ``trevo bench calibrate``); where no measurement
        covers the mixer, the first of ``forms`` (the training default). A causal one-token step uses
        the ``recurrent`` form where there is one."""
        if self.form != "auto":
            return self.form
        if seq_len == 1 and self.causal and "recurrent" in self.forms:
            return "recurrent"
        if len(self.forms) < 2:
            return self.forms[0] if self.forms else ""
        form = self._table_choice(seq_len)[0]
        return form if form in self.forms else self.forms[0]

    def chunk_size_for(self, seq_len: int) -> int:
        """The chunk size of the chunk form for ``seq_len`` tokens: ``chunk_size``, or where it is None
        the size measured fastest for this mixer on this device kind at the nearest calibrated length
        (``trevo bench calibrate --chunk-sizes``), else ``default_chunk_size``. Every size gives the
        same numbers up to rounding; only the time differs."""
        if self.chunk_size is not None:
            return self.chunk_size
        return self._table_choice(seq_len)[1] or self.default_chunk_size

    def _table_choice(self, seq_len: int) -> tuple[str, int]:
        entry = getattr(type(self), "registry_entry", None)
        if entry is None:
            return "", 0
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        device = tensor.device.type if tensor is not None else "cpu"
        return _measured(entry.name, self.causal, seq_len, device, torch.is_grad_enabled())

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise TrevoError(f"{type(self).__name__} expects input of shape (batch, seq, {self.d_model}), "
                             f"got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TrevoError(f"{type(self).__name__} expects a floating-point input, got {x.dtype}")

    def grid(self, x: torch.Tensor, layout: tuple[int, ...] | None) -> tuple[int, int]:
        """(H, W) of the 2-D ``layout`` of x's positions; a clear error for a 1-D or mismatched one."""
        if layout is None or len(layout) != 2:
            raise TrevoError(f"{type(self).__name__} needs a 2-D layout (H, W) of the positions (an image task); "
                             f"got layout={layout}")
        if layout[0] * layout[1] != x.shape[1]:
            raise TrevoError(f"{type(self).__name__} got layout {tuple(layout)} ({layout[0] * layout[1]} positions) "
                             f"for an input of {x.shape[1]} positions")
        return int(layout[0]), int(layout[1])

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        """``y`` for ``x``; ``padding_mask`` (True at real tokens) only matters bidirectionally, since
        causal positions never see the right padding after them."""
        self.check_input(x)
        if self.causal:
            return self.causal_forward(x, self.init_state(x.shape[0], x.device, x.dtype))[0]
        return self.bidirectional_forward(x, padding_mask, layout)

    # What a mixer implements.
    def init_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        raise NotImplementedError(f"{type(self).__name__} implements no generation state")

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if type(self).step is TokenMixer.step:
            raise NotImplementedError(f"{type(self).__name__} implements neither causal_forward nor step")
        ys = []
        for x_t in x.unbind(1):
            y, state = self.step(x_t, state)
            ys.append(y)
        return torch.stack(ys, dim=1), state

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} implements no bidirectional form")

    # The generation contract, written once.
    def prefill(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Outputs for a chunk ``x`` after the context held in ``state`` (None: no context), and the new state."""
        self._require_causal("prefill")
        self.check_input(x)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        return self.causal_forward(x, state)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token ``x_t`` ``(batch, d_model)`` after the context in ``state``."""
        self._require_causal("step")
        y, state = self.causal_forward(x_t[:, None], state)
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
