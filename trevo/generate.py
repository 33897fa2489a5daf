"""Byte generation from a trained causal LM, in two modes that must agree:

- ``parallel``: re-run the whole context through ``forward`` for every new byte (no state);
- ``recurrent``: ``prefill`` the prompt once, then one ``step`` per byte through each mixer's state
  (a KV cache for softmax attention, a constant-size state for the recurrent mixers).
"""

from __future__ import annotations

import math

import torch

from trevo.components.base import state_nbytes
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import get
from trevo.tasks.base import TaskInfo

MODES = ("parallel", "recurrent")


def check_byte_lm(task_name: str, info: TaskInfo) -> None:
    """Refuse a model that was not trained to predict bytes of text: its ids are not bytes."""
    if not (info.head == "lm" and info.vocab_size == 256 and get("task", task_name).family == "language_model"):
        raise IncompatibleError(f"generation writes bytes, so it needs a causal byte language model (a run on "
                                f"task byte_lm); this run's task is {task_name!r}, whose {info.vocab_size} token ids "
                                f"are not bytes")


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def generate(model: torch.nn.Module, prompt: bytes, n_new: int, *, mode: str = "recurrent",
             temperature: float = 0.0, seed: int = 0) -> tuple[bytes, int]:
    """``n_new`` bytes after ``prompt``; also returns the bytes of generation state held at the end
    (0 in parallel mode, which keeps none)."""
    if mode not in MODES:
        raise TrevoError(f"generation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 0:
        raise TrevoError(f"the number of bytes to generate must be an integer ≥ 0, got {n_new!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise TrevoError(f"temperature must be a finite number ≥ 0 (0 = greedy), got {temperature!r}")
    if not getattr(model, "causal", False):
        raise IncompatibleError("generation needs a causal language model (trained on byte_lm)")
    if not prompt:
        raise TrevoError("the prompt is empty; give at least one byte to start from")
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.tensor([list(prompt)], device=device)
    out: list[int] = []
    if mode == "parallel":
        for _ in range(n_new):
            nxt = _pick(model(tokens)[:, -1], temperature, generator)
            out.append(int(nxt))
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        return bytes(out), 0
    logits, state = model.prefill(tokens)
    logits = logits[:, -1]
    for i in range(n_new):
        nxt = _pick(logits, temperature, generator)
        out.append(int(nxt))
        if i + 1 < n_new:
            logits, state = model.step(nxt, state)
    return bytes(out), state_nbytes(state["layers"])


@torch.no_grad()
def state_bytes_at(model: torch.nn.Module, context: int) -> int:
    """Bytes of generation state after prefilling ``context`` tokens (KV cache or RNN state)."""
    tokens = torch.zeros(1, context, dtype=torch.long, device=next(model.parameters()).device)
    _, state = model.prefill(tokens)
    return state_nbytes(state["layers"])
