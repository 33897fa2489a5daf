"""Value-aware approximate attention: an analysis of trained attention, not a layer.

Gupta & Berant, "Value-aware Approximate Attention" (arXiv:2103.09857, EMNLP 2021). For one attention
row a (a distribution over keys) and the values V, the layer's output is o = aV. An r-sparse
approximation â (at most r non-zero weights) can be chosen two ways:

- value-oblivious: the â closest to a, min ‖a − â‖ — the r largest weights of a, kept as they are;
- value-aware: the â whose output is closest to o, min ‖(a − â)V‖ — for a support S the weights are
  the least-squares fit of o by the rows V_S, and the support is the best one.

The paper's finding is that the value-aware optimum has a much smaller output error. Here the best
support is found by trying every support of r of a row's keys while there are at most ``exact_limit``
of them, and otherwise by orthogonal matching pursuit (greedy, not guaranteed optimal) with the
oblivious support also tried, so the value-aware error is never above the oblivious one. The weights are
unconstrained reals (not kept in the simplex); with r at least the rank of V both reach zero error only
for the value-aware fit, so the regime that tells them apart is r below the head width.

``attention_rows`` reads the weights and values of one softmax-attention layer of a metaformer run;
``analyse`` reports both errors over sampled rows; ``trevo inspect value-aware RUN`` prints them.
"""

from __future__ import annotations

import itertools
import math
import random

import torch
from torch import nn

from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import Paper, register

VALUE_AWARE_PAPER = Paper("Value-aware Approximate Attention", "2103.09857", 2021)


def value_oblivious(a: torch.Tensor, r: int) -> torch.Tensor:
    """The r-sparse ``â`` nearest to the row ``a`` ``[T]``: its r largest weights, the rest zero."""
    keep = a.topk(min(r, a.numel())).indices
    out = torch.zeros_like(a)
    out[keep] = a[keep]
    return out


def _fit(support: torch.Tensor, o: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares weights of the rows ``v[support]`` (each of ``support`` ``[S, r]``) fitting ``o`` ``[D]``,
    and the residual norms ``[S]``."""
    rows = v[support].transpose(-1, -2)  # [S, D, r]
    w = torch.linalg.lstsq(rows, o.expand(rows.shape[0], -1)[..., None], driver="gelsd").solution[..., 0]
    return w, (o - (rows @ w[..., None])[..., 0]).norm(dim=-1)


def value_aware(a: torch.Tensor, v: torch.Tensor, r: int, exact_limit: int = 4096) -> tuple[torch.Tensor, bool]:
    """The r-sparse ``â`` minimising ‖(a − â)V‖ for the row ``a`` ``[T]`` and values ``v`` ``[T, D]``, over
    the keys a weights (a > 0), and whether the search over supports was exhaustive."""
    keys = torch.nonzero(a > 0).flatten()
    o = a @ v
    if r >= keys.numel():
        return a.clone(), True
    if math.comb(keys.numel(), r) <= exact_limit:
        supports = keys[torch.tensor(list(itertools.combinations(range(keys.numel()), r)), dtype=torch.long)]
        exact = True
    else:
        supports = torch.stack([_pursuit(keys, o, v, r), a.topk(r).indices.sort().values])
        exact = False
    weights, errors = _fit(supports, o, v)
    best = int(errors.argmin())
    out = torch.zeros_like(a)
    out[supports[best]] = weights[best]
    return out, exact


def _pursuit(keys: torch.Tensor, o: torch.Tensor, v: torch.Tensor, r: int) -> torch.Tensor:
    """Orthogonal matching pursuit: r times, add the key whose value best matches the residual, refit."""
    chosen: list[int] = []
    residual = o
    norms = v[keys].norm(dim=-1).clamp_min(1e-30)
    for _ in range(r):
        score = (v[keys] @ residual).abs() / norms
        if chosen:
            score[torch.isin(keys, torch.tensor(chosen))] = -1
        chosen.append(int(keys[score.argmax()]))
        support = torch.tensor(sorted(chosen))[None]
        w, _ = _fit(support, o, v)
        residual = o - w[0] @ v[support[0]]
    return torch.tensor(sorted(chosen))


def output_errors(a: torch.Tensor, v: torch.Tensor, r: int, exact_limit: int = 4096) -> dict[str, float | bool]:
    """For one row: ‖(a − â)V‖ / ‖aV‖ of the value-oblivious and the value-aware r-sparse â."""
    o = a @ v
    scale = float(o.norm()) or 1.0
    aware, exact = value_aware(a, v, r, exact_limit)
    return {"oblivious": float(((a - value_oblivious(a, r)) @ v).norm()) / scale,
            "aware": float(((a - aware) @ v).norm()) / scale, "exact": exact}


def attention_rows(model: nn.Module, tokens: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention weights ``[B, H, T, T]`` and values ``[B, H, T, D]`` of layer ``layer`` of a metaformer
    on ``tokens``, computed as its softmax attention computes them (relative position biases included)."""
    from trevo.components.mixers.softmax_attention import SoftmaxAttention
    from trevo.components.multihead import repeat_kv_heads

    blocks = getattr(model, "blocks", None)
    if blocks is None or not 0 <= layer < len(blocks):
        depth = len(blocks) if blocks is not None else 0
        raise TrevoError(f"layer {layer} is not a layer of this model ({depth} metaformer layers)")
    mixer = blocks[layer].mixer
    if type(mixer).__name__ == "SkipAttention" or not isinstance(mixer, SoftmaxAttention) \
            or mixer.attention_fn is not None or mixer.score_carry is not None:
        raise IncompatibleError(f"layer {layer}'s mixer is {type(mixer).__name__}; the value-aware analysis reads "
                                f"softmax attention weights (softmax_attention, multi_query_attention, "
                                f"grouped_query_attention with attention_fn=softmax and no realformer residual)")
    seen: list[torch.Tensor] = []
    hook = mixer.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        hook.remove()
    with torch.no_grad():
        q, k, v = mixer._project(seen[0], 0)
        groups = mixer.n_heads // mixer.n_kv_heads
        k, v = repeat_kv_heads(k, groups), repeat_kv_heads(v, groups)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        bias = mixer.position_bias(q, k)
        if bias is not None:
            scores = scores + bias
        if mixer.causal:
            t = scores.shape[-1]
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        return scores.softmax(dim=-1), v


@register("tool", "value_aware_attention", paper=VALUE_AWARE_PAPER, category="MHA/Others", family="value_aware",
          time="per row: C(T, r) least-squares fits (exhaustive) or r (pursuit)", memory="O(T·D) per row",
          summary="An analysis, not a layer: the value-oblivious and the value-aware r-sparse approximation of "
                  "each attention row of a trained run, and their output errors")
def analyse(model: nn.Module, tokens: torch.Tensor, *, layer: int = 0, rank: int = 4, rows: int = 64,
            exact_limit: int = 4096, seed: int = 0) -> dict:
    """Mean relative output errors ‖(a − â)V‖ / ‖aV‖ over ``rows`` rows sampled from every head and example
    of ``tokens``, for the value-oblivious and the value-aware r-sparse â (Gupta & Berant, §2–3)."""
    if rank < 1 or rows < 1:
        raise TrevoError(f"the value-aware analysis needs rank >= 1 and rows >= 1; got rank={rank}, rows={rows}")
    weights, values = attention_rows(model, tokens, layer)
    b, h, t, _ = weights.shape
    every = [(i, j, q) for i in range(b) for j in range(h) for q in range(t)]
    picked = random.Random(seed).sample(every, min(rows, len(every)))
    results = [output_errors(weights[i, j, q].double(), values[i, j].double(), rank, exact_limit)
               for i, j, q in picked]
    return {"layer": layer, "rank": rank, "rows": len(results), "head_dim": values.shape[-1],
            "oblivious": sum(r["oblivious"] for r in results) / len(results),
            "aware": sum(r["aware"] for r in results) / len(results),
            "aware_better": sum(r["aware"] < r["oblivious"] - 1e-12 for r in results) / len(results),
            "exhaustive": sum(bool(r["exact"]) for r in results)}
