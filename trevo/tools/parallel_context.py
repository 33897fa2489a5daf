"""Context longer than a model's window, read as several windows encoded apart and attended to together:
Parallel Context Windows (Ratner et al. 2023, "Parallel Context Windows for Large Language Models",
arXiv:2212.10947) and structured prompting (Hao et al. 2022, "Structured Prompting: Scaling In-Context
Learning to 1,000 Examples", arXiv:2212.06713).

Both split the context into windows (PCW: of at most ``window`` tokens; structured prompting: the groups
of demonstrations given), encode each window alone with the causal LM — each window's tokens attend only
within it, at positions that every window reuses —, concatenate the windows' key/value caches, and let
the task tokens (the prompt to continue, then each generated token) attend to all of them and to
themselves. They differ in two things:

- positions: PCW's windows start at 0 (left-aligned) and the task continues from the longest window's
  length N; structured prompting right-aligns every group so that all of them end at N − 1;
- structured prompting's rescaled attention: the task tokens' attention to the M groups'
  keys is divided by M in the softmax normaliser, exp(s)/M, i.e. a score bias of −log M on every context
  key; PCW adds none.

With one window (a context that fits) both are plain decoding: prefill the context, then the task
tokens, through the same KV cache, with bitwise equal logits. They need every layer to be softmax
attention (its KV cache is what is concatenated) with no position or an absolute or rotary one (a bias
computed from the cache length, ALiBi or T5, would be wrong here), and stateless channel mixers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.mixers.softmax_attention import SoftmaxAttention
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import Paper, register

PCW = Paper("Parallel Context Windows for Large Language Models", "2212.10947", 2023)
STRUCTURED = Paper("Structured Prompting: Scaling In-Context Learning to 1,000 Examples", "2212.06713", 2022)


def check_concatenable(model: nn.Module, tool: str) -> None:
    """Refuse a model whose generation state is not one KV cache per layer that windows can share."""
    if not getattr(model, "causal", False) or not hasattr(model, "blocks") or not callable(getattr(model, "prefill",
                                                                                                  None)):
        raise IncompatibleError(f"{tool} wraps a causal LM with blocks and prefill/step (a metaformer trained on "
                                f"byte_lm or token_lm)")
    for i, block in enumerate(model.blocks):
        mixer = block.mixer
        plain = (type(mixer).causal_forward is SoftmaxAttention.causal_forward
                 and type(mixer)._attend is SoftmaxAttention._attend)
        position = getattr(mixer, "position", None)
        if not plain or position is not None and not hasattr(position, "rotate"):
            entry = getattr(type(mixer), "registry_entry", None)
            what = f"{entry.name if entry else type(mixer).__name__!r}"
            if plain:
                what += f" with position {type(position).registry_entry.name!r}"
            raise IncompatibleError(f"{tool} concatenates the KV caches of windows encoded apart, so every layer must "
                                    f"be softmax attention (or MQA/GQA) with no position, an absolute one or RoPE/"
                                    f"xPos; layer {i} is {what}")
        if block.channel is not None and block.channel.init_state(1, "cpu", torch.float32):
            raise IncompatibleError(f"{tool}: layer {i}'s channel mixer keeps a generation state (token shift); "
                                    f"windows cannot share it")


class ParallelContext:
    """Windows encoded apart, their caches concatenated, then the task tokens decoded over all of them."""

    right_aligned = False
    name = ""

    def __init__(self, model: nn.Module) -> None:
        check_concatenable(model, self.name)
        self.model = model.eval()

    def key_bias(self, n_windows: int) -> float:
        """The score added to every context key for the task tokens (0: none)."""
        return 0.0

    @torch.no_grad()
    def encode(self, windows: list[torch.Tensor]) -> dict:
        """The generation state after the windows ``[1, n_i]``, each encoded alone and then concatenated."""
        if not windows or any(w.dim() != 2 or w.shape[0] != 1 or w.shape[1] == 0 for w in windows):
            raise TrevoError(f"{self.name} takes one or more non-empty windows of token ids, each [1, n]")
        longest = max(w.shape[1] for w in windows)
        device, dtype = windows[0].device, self.model.embed.weight.dtype
        states = []
        for w in windows:
            start = longest - w.shape[1] if self.right_aligned else 0
            state = self.model.init_state(1, device, dtype)
            state["offset"] = start
            for layer in state["layers"]:
                layer["mixer"]["pos"] = torch.tensor(start)
            states.append(self.model.prefill(w, state)[1])
        bias = self.key_bias(len(windows))
        layers = []
        for i, layer in enumerate(states[0]["layers"]):
            mixer = {key: torch.cat([s["layers"][i]["mixer"][key] for s in states], dim=2) for key in ("k", "v")}
            mixer["pos"] = torch.tensor(longest)
            if bias:
                mixer["key_bias"] = torch.full(mixer["k"].shape[:1] + mixer["k"].shape[2:3], bias, dtype=dtype,
                                               device=device)
            layers.append({"mixer": mixer, "channel": layer["channel"]})
        return {"offset": longest, "layers": layers}

    @torch.no_grad()
    def logits(self, windows: list[torch.Tensor], task: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[1, T, V]`` at each of the task tokens ``[1, T]`` after the windows."""
        return self.model.prefill(task, self.encode(windows))[0]

    @torch.no_grad()
    def continuation_log_probs(self, windows: list[torch.Tensor], prompt: torch.Tensor,
                               continuation: torch.Tensor) -> torch.Tensor:
        """log p(y_i | windows, prompt, y_<i) ``[m]`` of the tokens ``continuation`` ``[1, m]`` (teacher forced)."""
        task = torch.cat([prompt, continuation[:, :-1]], dim=1)
        log_probs = torch.log_softmax(self.logits(windows, task)[0, prompt.shape[1] - 1:].float(), -1)
        return log_probs.gather(-1, continuation[0, :, None])[:, 0]

    @torch.no_grad()
    def generate(self, windows: list[torch.Tensor], prompt: torch.Tensor, n_new: int) -> torch.Tensor:
        """``n_new`` greedy tokens ``[1, n_new]`` after the windows and the prompt ``[1, T]``."""
        logits, state = self.model.prefill(prompt, self.encode(windows))
        out = []
        for i in range(n_new):
            out.append(logits[:, -1].argmax(-1) if i == 0 else logits.argmax(-1))
            if i + 1 < n_new:
                logits, state = self.model.step(out[-1], state)
        return torch.stack(out, dim=1) if out else prompt[:, :0]


@register("tool", "parallel_context_windows", paper=PCW, category="Arch", family="parallel_context",
          time="O(Σ n_i² + T·Σ n_i) for windows n_i and T task tokens", memory="O(Σ n_i) KV cache")
class ParallelContextWindows(ParallelContext):
    """PCW (Ratner et al. 2023): windows of at most ``window`` tokens encoded apart at positions 0 … n−1,
    the task tokens attending to every window from position N (the longest window's length)."""

    name = "parallel_context_windows"

    def __init__(self, model: nn.Module, *, window: int) -> None:
        super().__init__(model)
        if window < 1:
            raise TrevoError(f"parallel_context_windows: window must be ≥ 1 token, got {window}")
        self.window = window

    def split(self, context: torch.Tensor) -> list[torch.Tensor]:
        """The context ``[1, T]`` cut into consecutive windows of ``window`` tokens (the last may be shorter)."""
        return list(context.split(self.window, dim=1))


@register("tool", "structured_prompting", paper=STRUCTURED, category="Arch", family="parallel_context",
          time="O(Σ n_i² + T·Σ n_i) for groups n_i and T task tokens", memory="O(Σ n_i) KV cache")
class StructuredPrompting(ParallelContext):
    """Structured prompting (Hao et al. 2022): M groups of demonstrations encoded apart, right-aligned to
    end together; the task tokens' attention to the groups rescaled by 1/M (a −log M score bias)."""

    right_aligned = True
    name = "structured_prompting"

    def key_bias(self, n_windows: int) -> float:
        return -math.log(n_windows)
