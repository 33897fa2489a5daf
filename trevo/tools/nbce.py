"""NBCE, naive-Bayes context extension (Su, Ahmed, Wen, Ao, Zhu, Liu 2024, "Naive Bayes-based Context
Extension for Large Language Models", arXiv:2403.17552; first in J. Su's blog, 2023).

The context is split into windows S_1 … S_n that each fit the model; the model reads every window followed
by the prompt on its own (any causal LM: no state is shared), and the next-token distributions combine by
Bayes' rule under the assumption that the windows are independent given the continuation T::

    log p(T | S_1 … S_n) = Σ_k log p(T | S_k) − (n − 1) log p(T) + const          (naive Bayes)
                         = (β + 1) · P[log p(T | S)] − β log p(T) + const          (NBCE)

with β = n − 1 and P the mean over the windows in the exact naive-Bayes form. NBCE treats β as a
hyper-parameter and pools by choosing the window of minimum entropy (its "voting"); both are options
here (``beta=0.25, pooling="min_entropy"`` is the released code's setting). The defaults are the naive-Bayes
form, so that one window (a context that fits) is plain decoding: log p(T | S_1), bitwise. p(T) is the
model's distribution after the prompt alone.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import Paper, register

NBCE_PAPER = Paper("Naive Bayes-based Context Extension for Large Language Models", "2403.17552", 2024)
POOLINGS = ("mean", "min_entropy")


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """H = −Σ p log p over the last axis."""
    return -(log_probs.exp() * log_probs).sum(-1)


@register("tool", "nbce", paper=NBCE_PAPER, category="Arch", family="nbce",
          time="O(n) model passes over a window + prompt each, and one over the prompt", memory="n + 1 states")
class NBCE:
    """NBCE (Su et al. 2024): (β + 1)·P[log p(T | S_k)] − β·log p(T) over windows of at most ``window``
    tokens; β = n − 1 and P = mean by default (naive Bayes)."""

    def __init__(self, model: nn.Module, *, window: int, beta: float | None = None, pooling: str = "mean") -> None:
        if not getattr(model, "causal", False) or not callable(getattr(model, "prefill", None)):
            raise IncompatibleError("nbce wraps a causal LM with prefill/step (a run on byte_lm or token_lm)")
        if window < 1 or pooling not in POOLINGS or beta is not None and beta < 0:
            raise TrevoError(f"nbce needs window ≥ 1, beta ≥ 0 (or None: n − 1) and pooling in {', '.join(POOLINGS)}; "
                             f"got window={window}, beta={beta}, pooling={pooling!r}")
        self.model, self.window, self.beta, self.pooling = model.eval(), window, beta, pooling

    def split(self, context: torch.Tensor) -> list[torch.Tensor]:
        """The context ``[1, T]`` cut into consecutive windows of ``window`` tokens (the last may be shorter)."""
        return list(context.split(self.window, dim=1))

    def combine(self, window_log_probs: torch.Tensor, prior_log_probs: torch.Tensor | None) -> torch.Tensor:
        """Scores ``[V]`` (log-probabilities up to a constant) from the windows' ``[n, V]`` and the prior's ``[V]``."""
        n = window_log_probs.shape[0]
        beta = n - 1 if self.beta is None else self.beta
        if self.pooling == "mean":
            pooled = window_log_probs.mean(0)
        else:
            pooled = window_log_probs[entropy(window_log_probs).argmin()]
        scores = (beta + 1) * pooled
        return scores if beta == 0 else scores - beta * prior_log_probs

    def _next(self, window_logits: list[torch.Tensor], prior_logits: torch.Tensor | None) -> torch.Tensor:
        windows = torch.log_softmax(torch.cat(window_logits).float(), dim=-1)
        prior = None if prior_logits is None else torch.log_softmax(prior_logits[0].float(), dim=-1)
        return self.combine(windows, prior)

    def _needs_prior(self, n: int) -> bool:
        return (n - 1 if self.beta is None else self.beta) != 0

    @torch.no_grad()
    def scores(self, windows: list[torch.Tensor], prompt: torch.Tensor) -> torch.Tensor:
        """The combined next-token scores ``[V]`` after the windows and the prompt ``[1, T]``."""
        return next(self._decode(windows, prompt, 0, []))

    @torch.no_grad()
    def generate(self, windows: list[torch.Tensor], prompt: torch.Tensor, n_new: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_new`` greedy tokens ``[1, n_new]`` from the combined distribution, each appended to every
        window's continuation, and the scores ``[V]`` of the first."""
        tokens, first = [], None
        for scores in self._decode(windows, prompt, n_new, tokens):
            first = scores if first is None else first
            tokens.append(scores.argmax(-1).view(1))
        return (torch.stack(tokens, dim=1) if tokens else prompt[:, :0]), first

    @torch.no_grad()
    def continuation_log_probs(self, windows: list[torch.Tensor], prompt: torch.Tensor,
                               continuation: torch.Tensor) -> torch.Tensor:
        """log p(y_i | S_1 … S_n, prompt, y_<i) ``[m]`` of the tokens ``continuation`` ``[1, m]`` (teacher forced)."""
        tokens, out = [], []
        for i, scores in enumerate(self._decode(windows, prompt, continuation.shape[1], tokens)):
            out.append(torch.log_softmax(scores, -1)[continuation[0, i]])
            tokens.append(continuation[0, i].view(1))
        return torch.stack(out)

    def _decode(self, windows: list[torch.Tensor], prompt: torch.Tensor, n: int, chosen: list[torch.Tensor]):
        """Yield the combined scores ``[V]`` of each next token (the first once, if ``n`` is 0), stepping every
        window's state (and the prior's) with the token the caller appended to ``chosen`` in between."""
        if not windows or prompt.dim() != 2 or prompt.shape[0] != 1 or prompt.shape[1] == 0:
            raise TrevoError("nbce takes one or more windows [1, n] and a non-empty prompt [1, T]")
        runs = [self.model.prefill(torch.cat([w, prompt], dim=1)) for w in windows]
        logits, states = [r[0][:, -1] for r in runs], [r[1] for r in runs]
        prior, prior_state = None, None
        if self._needs_prior(len(windows)):
            out, prior_state = self.model.prefill(prompt)
            prior = out[:, -1]
        for i in range(max(n, 1)):
            yield self._next(logits, prior)
            if i + 1 >= n:
                return
            token = chosen[-1]
            stepped = [self.model.step(token, s) for s in states]
            logits, states = [s[0] for s in stepped], [s[1] for s in stepped]
            if prior_state is not None:
                prior, prior_state = self.model.step(token, prior_state)
