"""NBCE: one window is plain decoding (bitwise); several windows combine as naive Bayes, Σ_k log p(T|S_k) −
(n−1) log p(T), against full forward passes; min-entropy pooling picks the sharpest window; the stateful
greedy decoding equals re-running everything for each token; it wraps recurrent models too."""

from __future__ import annotations

import json

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


@pytest.fixture(scope="module")
def rope_run(tmp_path_factory):
    """A tiny byte-LM run with RoPE, trained by trevo."""
    from tests.helpers import tiny_cfg

    out = tmp_path_factory.mktemp("rope_run")
    train(tiny_cfg("model.position=rope"), out, progress=False)
    return out


def test_on_a_run_trained_by_trevo(rope_run):
    model, _, task = load(rope_run)
    batch = next(task.eval_batches("val", 1, 1))["input"]
    context, prompt = batch[:, :20], batch[:, 20:24]
    with torch.no_grad():
        _, state = model.prefill(context)
        plain = model.prefill(prompt, state)[0]
        whole = model.prefill(torch.cat([context, prompt], dim=1))[0][0, -1]
    assert torch.equal(ParallelContextWindows(model, window=32).logits([context], prompt), plain)
    assert torch.equal(NBCE(model, window=32).scores([context], prompt), torch.log_softmax(whole.float(), -1))


def test_teacher_forced_scores_of_one_window_are_the_plain_models(tiny_cfg):
    model = _model(tiny_cfg)
    context, prompt, continuation = _tokens(10, 7), _tokens(3, 8), _tokens(5, 9)
    with torch.no_grad():
        whole = torch.log_softmax(model(torch.cat([context, prompt, continuation], 1))[0].float(), -1)
    expected = whole[12:17].gather(-1, continuation[0, :, None])[:, 0]
    for tool in (NBCE(model, window=16), ParallelContextWindows(model, window=16)):
        torch.testing.assert_close(tool.continuation_log_probs([context], prompt, continuation), expected)


def test_trevo_context_agrees_across_methods_when_the_context_is_one_window(rope_run, capsys):
    from trevo.cli import main

    assert main(["context", str(rope_run), "--window", "16", "--context", "20", "--prompt", "4", "--continuation",
                 "4", "--samples", "2", "--json"]) == 0
    bits = json.loads(capsys.readouterr().out)
    assert set(bits) == {"last window", "pcw", "structured prompting", "nbce", "whole context"}
    for name in bits:
        assert bits[name] == pytest.approx(bits["last window"], rel=1e-5), name
