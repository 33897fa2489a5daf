"""NBCE: one window is plain decoding (bitwise); several windows combine as naive Bayes, Σ_k log p(T|S_k) −
(n−1) log p(T), against full forward passes; min-entropy pooling picks the sharpest window; the stateful
greedy decoding equals re-running everything for each token; it wraps recurrent models too."""

from __future__ import annotations

import pytest
import torch

from trevo.api import load
from trevo.tools.nbce import NBCE, entropy
from trevo.tools.parallel_context import ParallelContextWindows
from trevo.train import build, train


def _model(tiny_cfg, *more: str):
    torch.manual_seed(0)
    return build(tiny_cfg("model.n_layers=2", "model.position=rope", *more))[1].double().eval()


def _tokens(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (1, n), generator=torch.Generator().manual_seed(seed))


def _next_log_probs(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(tokens)[0, -1].float(), -1)


@pytest.mark.parametrize("mixer", ["softmax_attention", "gla"])
def test_one_window_is_plain_decoding(tiny_cfg, mixer):
    model = _model(tiny_cfg, f"model.mixer.name={mixer}", *(("model.position=none",) if mixer == "gla" else ()))
    context, prompt = _tokens(10, 1), _tokens(4, 2)
    nbce = NBCE(model, window=16)
    windows = nbce.split(context)
    with torch.no_grad():
        plain = model.prefill(torch.cat([context, prompt], dim=1))[0][:, -1]
    assert len(windows) == 1 and torch.equal(nbce.scores(windows, prompt), torch.log_softmax(plain[0].float(), -1))


def test_windows_combine_by_naive_bayes(tiny_cfg):
    model = _model(tiny_cfg)
    prompt = _tokens(3, 3)
    nbce = NBCE(model, window=6)
    windows = nbce.split(_tokens(18, 4))
    per_window = torch.stack([_next_log_probs(model, torch.cat([w, prompt], 1)) for w in windows])
    reference = per_window.sum(0) - 2 * _next_log_probs(model, prompt)
    got = nbce.scores(windows, prompt)
    torch.testing.assert_close(torch.log_softmax(got, -1), torch.log_softmax(reference, -1), rtol=0, atol=1e-5)
    tuned = NBCE(model, window=6, beta=0.25, pooling="min_entropy")
    sharpest = min(range(3), key=lambda k: float(entropy(per_window[k])))
    expected = 1.25 * per_window[sharpest] - 0.25 * _next_log_probs(model, prompt)
    torch.testing.assert_close(tuned.scores(windows, prompt), expected, rtol=0, atol=1e-5)


def test_greedy_decoding_equals_rerunning_every_window(tiny_cfg):
    model = _model(tiny_cfg)
    nbce = NBCE(model, window=5)
    windows, prompt = nbce.split(_tokens(10, 5)), _tokens(3, 6)
    tokens, _ = nbce.generate(windows, prompt, 4)
    grown = prompt
    for i in range(4):
        per_window = torch.stack([_next_log_probs(model, torch.cat([w, grown], 1)) for w in windows])
        expected = (per_window.sum(0) - _next_log_probs(model, grown)).argmax()
        assert tokens[0, i] == expected
        grown = torch.cat([grown, expected.view(1, 1)], dim=1)


def test_on_a_run_trained_by_trevo(tiny_cfg, tmp_path):
    train(tiny_cfg("model.position=rope"), tmp_path, progress=False)
    model, _, task = load(tmp_path)
    batch = next(task.eval_batches("val", 1, 1))["input"]
    context, prompt = batch[:, :20], batch[:, 20:24]
    with torch.no_grad():
        _, state = model.prefill(context)
        plain = model.prefill(prompt, state)[0]
        whole = model.prefill(torch.cat([context, prompt], dim=1))[0][0, -1]
    assert torch.equal(ParallelContextWindows(model, window=32).logits([context], prompt), plain)
    assert torch.equal(NBCE(model, window=32).scores([context], prompt), torch.log_softmax(whole.float(), -1))
