"""Byte generation from a trained causal LM, in two modes that must agree:

- ``parallel``: re-run the whole context through ``forward`` for every new byte (no state);
- ``recurrent``: ``prefill`` the prompt once, then one ``step`` per byte through each mixer's state
  (a KV cache for softmax attention, a constant-size state for the recurrent mixers).

A model with a memory across segments (Transformer-XL, RMT, Memorizing Transformer …,
``trevo.models.segment_memory``) reads the context segment by segment in both: ``parallel`` re-reads
the whole stream from the empty memory, ``recurrent`` carries the memory and the current segment's
tokens, and updates the memory when a segment fills, as in training.
"""

from __future__ import annotations

import math

import torch

from trevo.components.base import state_nbytes
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import get
from trevo.segments import init_memory, memory_kind, model_dtype, run_stream
from trevo.tasks.base import TaskInfo

MODES = ("parallel", "recurrent")
BYTE_TASKS = ("byte_lm", "long_document_lm")  # language models whose token ids are bytes


def check_generates_text(task_name: str, info: TaskInfo, model: torch.nn.Module) -> None:
    """Refuse a model whose outputs are not text: one not trained as a causal language model, or one
    whose token ids are neither bytes (byte_lm) nor decodable by the run's tokenizer (token_lm)."""
    if not (info.head == "lm" and get("task", task_name).family == "language_model"):
        raise IncompatibleError(f"generation writes text, so it needs a causal language model (a run on task "
                                f"byte_lm or token_lm); this run's task is {task_name!r}")
    if getattr(model, "tokenizer", None) is None and (task_name not in BYTE_TASKS or info.vocab_size != 256):
        raise IncompatibleError(f"this {task_name!r} run has no tokenizer to turn its {info.vocab_size:,} token ids "
                                f"into text (its ids are not bytes); train it with task.tokenizer=bpe or a "
                                f"tokenizer.json")


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def stream_logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The teacher-forced logits of ``tokens``: one forward pass, or, for a model with a memory across
    segments (``trevo.segments``), the stream read segment by segment from the empty memory, as in
    evaluation (the last segment may be partial)."""
    if memory_kind(model) != "model":
        return model(tokens)
    seg_len = model.info.seq_len
    memory = init_memory(model, tokens.shape[0], tokens.device, model_dtype(model))
    return run_stream(model, {"input": tokens}, seg_len, 0, -(-tokens.shape[1] // seg_len), memory)[0]


@torch.no_grad()
def generate_ids(model: torch.nn.Module, prompt: torch.Tensor, n_new: int, *, mode: str = "recurrent",
                 temperature: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, int]:
    """``n_new`` token ids ``[B, n_new]`` after the prompt ids ``[B, T]``; also the bytes of generation
    state held at the end (0 in parallel mode, which keeps none)."""
    if mode not in MODES:
        raise TrevoError(f"generation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 0:
        raise TrevoError(f"the number of bytes to generate must be an integer ≥ 0, got {n_new!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise TrevoError(f"temperature must be a finite number ≥ 0 (0 = greedy), got {temperature!r}")
    if not getattr(model, "causal", False):
        raise IncompatibleError("generation needs a causal language model (trained on byte_lm or token_lm)")
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise TrevoError("the prompt is empty; give at least one token to start from")
    model.eval()
    device = next(model.parameters()).device
    # multinomial draws with a generator of the probabilities' own device (a CPU generator on CUDA
    # probabilities is an error); the same seed gives the same text on one device, not across devices
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = prompt.to(device)
    out: list[torch.Tensor] = []
    if mode == "parallel":
        for _ in range(n_new):
            nxt = _pick(stream_logits(model, tokens)[:, -1], temperature, generator)
            out.append(nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        return torch.stack(out, dim=1) if out else tokens[:, :0], 0
    logits, state = model.prefill(tokens)
    logits = logits[:, -1]
    for i in range(n_new):
        nxt = _pick(logits, temperature, generator)
        out.append(nxt)
        if i + 1 < n_new:
            logits, state = model.step(nxt, state)
    return torch.stack(out, dim=1) if out else tokens[:, :0], state_nbytes(state["layers"])


@torch.no_grad()
def generate(model: torch.nn.Module, prompt: bytes, n_new: int, *, mode: str = "recurrent",
             temperature: float = 0.0, seed: int = 0) -> tuple[bytes, int]:
    """``n_new`` bytes after ``prompt`` (``n_new`` tokens, decoded, for a model with a ``tokenizer``:
    a token_lm run); also returns the bytes of generation state held at the end (0 in parallel mode)."""
    if not prompt:
        raise TrevoError("the prompt is empty; give at least one byte to start from")
    tokenizer = getattr(model, "tokenizer", None)
    ids = tokenizer.encode(prompt.decode("utf-8", errors="replace")).ids if tokenizer is not None else list(prompt)
    new, state = generate_ids(model, torch.tensor([ids]), n_new, mode=mode, temperature=temperature, seed=seed)
    if tokenizer is not None:
        return tokenizer.decode(new[0].tolist()).encode(), state
    return bytes(new[0].tolist()), state


@torch.no_grad()
def state_bytes_at(model: torch.nn.Module, context: int) -> int:
    """Bytes of generation state after prefilling ``context`` tokens (KV cache or RNN state)."""
    tokens = torch.zeros(1, context, dtype=torch.long, device=next(model.parameters()).device)
    _, state = model.prefill(tokens)
    return state_nbytes(state["layers"])
