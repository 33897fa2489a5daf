"""Attention functions against a per-query loop of each paper's formula (causal, bidirectional with padding,
with a position bias), the property each paper claims, causality and the KV cache inside softmax
attention, and the clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.registry import build, create, names

D, H, TQ, TK = 4, 2, 5, 7
ALTERNATIVES = [n for n in names("attention_fn") if n != "softmax"]


def _reference_weights(name: str, s: list[float], fn) -> list[float]:
    """The weights one query gives its visible keys (scores ``s`` in key order, the query's own key last)."""
    n = len(s)
    if name == "softmax":
        z = sum(math.exp(x) for x in s)
        return [math.exp(x) / z for x in s]
    if name == "relu":
        return [max(x, 0.0) / n for x in s]
    if name == "sigmoid":
        return [1 / (1 + math.exp(-(x - math.log(n)))) for x in s]
    if name == "softpick":
        z = sum(abs(math.exp(x) - 1) for x in s) + fn.eps
        return [max(math.exp(x) - 1, 0.0) / z for x in s]
    if name == "normalized":
        mean = sum(s) / n
        var = sum((x - mean) ** 2 for x in s) / n
        return [(x - mean) / math.sqrt(var + fn.eps) for x in s]
    if name == "stick_breaking":  # from the nearest key back; the query's own key excluded
        beta = [1 / (1 + math.exp(-x)) for x in s]
        weights, stick = [0.0] * n, 1.0
        for j in range(n - 2, -1, -1):
            weights[j] = beta[j] * stick
            stick *= 1 - beta[j]
        return weights
    raise AssertionError(name)


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(2, H, t, D, generator=generator, dtype=torch.float64) for t in (TQ, TK))
    bias = torch.randn(H, TQ, TK, generator=generator, dtype=torch.float64)
    return 2 * q, 2 * k, bias


def _weights(fn, q, k, *, causal, bias=None, key_padding_mask=None) -> torch.Tensor:
    """The weights an attention function uses, read out with the identity as the values."""
    eye = torch.eye(k.shape[-2], dtype=q.dtype).expand(q.shape[0], q.shape[1], -1, -1)
    return fn(q, k, eye, causal=causal, bias=bias, key_padding_mask=key_padding_mask)


@pytest.mark.parametrize("name", [n for n in names("attention_fn") if n != "cosine"])
@pytest.mark.parametrize("causal", [True, False])
def test_weights_match_the_formula_per_query(name, causal):
    fn = create("attention_fn", name)
    if name == "stick_breaking" and not causal:
        with pytest.raises(IncompatibleError, match="causal attention only"):
            fn.attach(n_heads=H, head_dim=D, causal=False)
        return
    fn.attach(n_heads=H, head_dim=D, causal=causal)
    q, k, bias = _inputs()
    mask = None if causal else torch.tensor([[True] * TK, [True] * 5 + [False] * 2])
    got = _weights(fn, q, k, causal=causal, bias=bias, key_padding_mask=mask)
    for b in range(2):
        for h in range(H):
            for i in range(TQ):
                position = TK - TQ + i  # the queries are the last TQ positions
                keys = [j for j in range(TK) if (j <= position or not causal) and (mask is None or mask[b, j])]
                if not causal:  # stick-breaking is causal only; the others take keys in any order
                    keys = sorted(keys, key=lambda j: j == position)
                s = [float(q[b, h, i] @ k[b, h, j]) / math.sqrt(D) + float(bias[h, i, j]) for j in keys]
                expected = _reference_weights(name, s, fn)
                for j, w in zip(keys, expected, strict=True):
                    assert float(got[b, h, i, j]) == pytest.approx(w, rel=1e-9, abs=1e-12), (name, b, h, i, j)
                hidden = [j for j in range(TK) if j not in keys]
                assert all(float(got[b, h, i, j]) == 0.0 for j in hidden)


def test_scaled_cosine_matches_its_formula_and_ignores_the_scale_of_q_and_k():
    fn = create("attention_fn", "cosine")
    fn.attach(n_heads=H, head_dim=D, causal=True)
    with torch.no_grad():
        fn.log_scale.copy_(torch.tensor([math.log(10.0), math.log(3.0)]).view(H, 1, 1))
    fn = fn.double()
    q, k, bias = _inputs()
    got = _weights(fn, q, k, causal=True, bias=bias).detach()
    for h, inv_tau in enumerate((10.0, 3.0)):
        for i in range(TQ):
            keys = range(TK - TQ + i + 1)
            logits = torch.tensor([float(torch.cosine_similarity(q[0, h, i], k[0, h, j], dim=0)) * inv_tau
                                   + float(bias[h, i, j]) for j in keys])
            torch.testing.assert_close(got[0, h, i, : len(keys)], torch.softmax(logits, dim=0).double())
    # cos(q, k)/τ does not change when q and k are rescaled: the logits are bounded by 1/τ
    torch.testing.assert_close(_weights(fn, 100 * q, 0.01 * k, causal=True, bias=bias).detach(), got)
    with torch.no_grad():
        fn.log_scale.fill_(10.0)  # τ clamped at 0.01: logit scale at most 100
    cosine = _weights(fn, q, k, causal=True)
    assert cosine.isfinite().all()


def test_each_paper_property():
    q, k, _ = _inputs()
    weights = {}
    for name in names("attention_fn"):
        fn = create("attention_fn", name)
        fn.attach(n_heads=H, head_dim=D, causal=True)
        weights[name] = _weights(fn.double(), q, k, causal=True).detach()
    rows = {name: w.sum(-1) for name, w in weights.items()}
    torch.testing.assert_close(rows["softmax"], torch.ones_like(rows["softmax"]))
    # sigmoid: rows need not sum to 1
    assert (rows["sigmoid"] - 1).abs().max() > 0.1
    # stick-breaking: rows sum to at most 1 — exactly 1 − ∏(1 − β) over the keys before the query
    assert (rows["stick_breaking"] <= 1 + 1e-12).all() and (rows["stick_breaking"] < 1 - 1e-3).any()
    # softpick: non-positive scores get exactly 0, and rows sum to at most 1
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)
    visible = torch.arange(TK)[None, :] <= torch.arange(TK - TQ, TK)[:, None]
    assert (weights["softpick"][(scores <= 0) & visible] == 0).all() and (rows["softpick"] <= 1).all()
    # normalized: each row has zero mean and unit variance over its visible keys (weights leave the simplex)
    w, n = weights["normalized"], visible.sum(-1)
    torch.testing.assert_close(w.sum(-1), torch.zeros_like(rows["softmax"]), atol=1e-9, rtol=0)
    torch.testing.assert_close(w.square().sum(-1) / n, torch.ones_like(rows["softmax"]), atol=1e-4, rtol=0)
    assert (w < 0).any()
    # relu: non-negative, zero on negative scores
    assert (weights["relu"] >= 0).all() and (weights["relu"][(scores < 0) & visible] == 0).all()


def _mixer(fn: str, causal: bool = True, **options):
    torch.manual_seed(0)
    mixer = build("mixer", "softmax_attention", {"n_heads": 2, "attention_fn": fn, **options}, d_model=16,
                  causal=causal).double()
    with torch.no_grad():
        for p in mixer.parameters():
            p.normal_(std=0.5)
    return mixer


@pytest.mark.parametrize("name", ALTERNATIVES)
def test_inside_softmax_attention_causal_and_through_the_kv_cache(name):
    mixer = _mixer(name)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    full = mixer(x)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 4, 16, dtype=torch.float64)
    torch.testing.assert_close(mixer(changed)[:, :5], full[:, :5])  # the future does not reach the past
    y, state = mixer.prefill(x[:, :3])
    steps = [y] + [None] * 6
    for t in range(3, 9):
        y_t, state = mixer.step(x[:, t], state)
        steps[t - 2] = y_t[:, None]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(_mixer("softmax")(x), full, atol=1e-3)  # the function is the one used
    full.sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in mixer.parameters())


def test_clear_errors():
    with pytest.raises(IncompatibleError, match="'stick_breaking' is defined for causal attention only"):
        _mixer("stick_breaking", causal=False)
    with pytest.raises(Exception, match="unknown attention_fn 'sigmiod'.*Did you mean 'sigmoid'"):
        _mixer("sigmiod")
