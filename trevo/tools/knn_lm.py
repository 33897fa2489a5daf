"""kNN-LM: a trained language model interpolated with nearest-neighbour retrieval from a datastore of
its own context vectors (Khandelwal, Levy, Jurafsky, Zettlemoyer, Lewis 2020, "Generalization through
Memorization: Nearest Neighbor Language Models", arXiv:1911.00172, §2).

The datastore holds one (key, value) pair per training position: the key is the model's final
hidden state f(c_t) (the input of its output head), the value the next token w_{t+1}. At a test
context the k nearest keys by squared L2 distance d vote for their values::

    p_kNN(y | c) ∝ Σ_{(k_i, v_i) ∈ N(c)} 1[y = v_i] · exp(−d(f(c), k_i) / τ),
    p(y | c) = λ·p_kNN(y | c) + (1 − λ)·p_LM(y | c).

Retrieval is exact brute force (a blocked matrix of distances, then top-k): an approximate index
(FAISS in the paper) only pays for itself far beyond the datastores a CPU run builds.

Use: ``KNNLM(model, k=8, lam=0.25).build(task, n_batches=64)`` then ``.evaluate(task)`` (bits per
token with and without retrieval) or ``.log_probs(tokens)``; on the command line
``trevo knn RUN --store-batches 64 --lam 0.25``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import Paper, register
from trevo.tasks.base import BITS_PER_NAT

KNN_PAPER = Paper("Generalization through Memorization: Nearest Neighbor Language Models", "1911.00172", 2020)


def nearest_neighbours(queries: torch.Tensor, keys: torch.Tensor, k: int,
                       block: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest squared L2 distances from each query ``[N, d]`` to ``keys`` ``[M, d]`` and their
    indices (both ``[N, k]``, nearest first), exactly: distances in blocks of ``block`` queries."""
    k = min(k, keys.shape[0])
    key_sq = (keys * keys).sum(-1)
    dists, idx = [], []
    for q in queries.split(block):
        d = ((q * q).sum(-1, keepdim=True) - 2 * q @ keys.T + key_sq).clamp_min(0)
        top = d.topk(k, dim=-1, largest=False)
        dists.append(top.values)
        idx.append(top.indices)
    return torch.cat(dists), torch.cat(idx)


@register("tool", "knn_lm", paper=KNN_PAPER, category="Arch", family="knn_lm",
          time="O(N·M·d) retrieval for N queries over M stored contexts", memory="O(M·d) datastore")
class KNNLM:
    """kNN-LM (Khandelwal et al. 2020, eq. 1-2): p = λ·p_kNN + (1 − λ)·p_LM, with p_kNN from the k
    nearest stored contexts weighted by exp(−d/τ) (d the squared L2 distance between final hidden
    states). Wraps a trained causal LM whose ``head`` is its output layer (metaformer, hourglass)."""

    def __init__(self, model: nn.Module, *, k: int = 8, lam: float = 0.25, temperature: float = 1.0) -> None:
        head = getattr(model, "head", None)
        if not isinstance(head, nn.Linear) or getattr(getattr(model, "info", None), "head", "lm") != "lm":
            raise IncompatibleError("kNN-LM needs a causal language model with an output layer `head` "
                                    "(a metaformer or hourglass run on byte_lm or token_lm)")
        if k < 1 or not 0 <= lam <= 1 or temperature <= 0:
            raise TrevoError(f"kNN-LM needs k >= 1, 0 <= lam <= 1 and temperature > 0; got k={k}, lam={lam}, "
                             f"temperature={temperature}")
        self.model, self.k, self.lam, self.temperature = model.eval(), k, lam, temperature
        self.keys = torch.zeros(0, head.in_features)
        self.values = torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def context_vectors(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states f(c_t) ``[B, T, d]`` — the head's input —, the LM's logits ``[B, T, V]``)."""
        seen: list[torch.Tensor] = []
        hook = self.model.head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
        try:
            logits = self.model(tokens)
        finally:
            hook.remove()
        return seen[0].float(), logits.float()

    def add(self, tokens: torch.Tensor, targets: torch.Tensor) -> None:
        """Store (f(c_t), w_{t+1}) for every position of ``tokens`` ``[B, T]`` (``targets`` the next tokens)."""
        hidden, _ = self.context_vectors(tokens)
        self.keys = torch.cat([self.keys, hidden.flatten(0, 1).cpu()])
        self.values = torch.cat([self.values, targets.flatten().cpu()])

    def build(self, task, n_batches: int, batch_size: int = 16, seed: int = 0) -> KNNLM:
        """Fill the datastore from ``n_batches`` training batches of ``task``."""
        for step in range(n_batches):
            batch = task.train_batch(step, batch_size, seed)
            self.add(batch["input"], batch["target"])
        return self

    @torch.no_grad()
    def log_probs(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p of the interpolation, log p_LM), each ``[B, T, V]``."""
        if self.keys.shape[0] == 0:
            raise TrevoError("the kNN-LM datastore is empty: call build() or add() first")
        hidden, logits = self.context_vectors(tokens)
        log_lm = torch.log_softmax(logits, dim=-1)
        dist, idx = nearest_neighbours(hidden.flatten(0, 1).cpu(), self.keys, self.k)
        weights = torch.softmax(-dist / self.temperature, dim=-1)  # exp(−d/τ), normalised over the k
        p_knn = torch.zeros(dist.shape[0], log_lm.shape[-1]).scatter_add_(1, self.values[idx], weights)
        log_knn = torch.log(p_knn).view_as(log_lm).to(log_lm.device)
        if self.lam == 0:
            return log_lm, log_lm
        if self.lam == 1:
            return log_knn, log_lm
        mixed = torch.logaddexp(math.log(self.lam) + log_knn, math.log1p(-self.lam) + log_lm)
        return mixed, log_lm

    def evaluate(self, batches: Iterator[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Bits per token of the LM alone and of the kNN-LM over ``batches`` (input/target pairs)."""
        total = {"lm": 0.0, "knn_lm": 0.0}
        count = 0
        for batch in batches:
            mixed, lm = self.log_probs(batch["input"])
            target = batch["target"][..., None].to(mixed.device)
            total["knn_lm"] -= mixed.gather(-1, target).sum().item()
            total["lm"] -= lm.gather(-1, target).sum().item()
            count += target.numel()
        return {f"bits_{name}": value / count * BITS_PER_NAT for name, value in total.items()} | {
            "tokens": count, "datastore": int(self.keys.shape[0])}
