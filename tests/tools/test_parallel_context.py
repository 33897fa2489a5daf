"""Parallel Context Windows and structured prompting: with one window both are plain decoding (bitwise
equal logits); PCW does not depend on the order of its windows; structured prompting over M copies of one
group equals plain decoding after that group (its −log M rescaling exactly undoes the copies); a model
whose caches cannot be concatenated is refused."""

from __future__ import annotations

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.tools.parallel_context import ParallelContextWindows, StructuredPrompting
from trevo.train import build


def _model(tiny_cfg, *more: str):
    torch.manual_seed(0)
    return build(tiny_cfg("model.n_layers=2", *more))[1].double().eval()


def _tokens(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("position", ["rope", "sinusoidal"])
@pytest.mark.parametrize("tool", ["pcw", "structured"])
def test_one_window_is_plain_decoding(tiny_cfg, position, tool):
    model = _model(tiny_cfg, f"model.position={position}")
    context, task = _tokens(12, 1), _tokens(5, 2)
    wrapper = ParallelContextWindows(model, window=16) if tool == "pcw" else StructuredPrompting(model)
    windows = wrapper.split(context) if tool == "pcw" else [context]
    assert len(windows) == 1
    got = wrapper.logits(windows, task)
    with torch.no_grad():
        _, state = model.prefill(context)
        plain = model.prefill(task, state)[0]
        full = model(torch.cat([context, task], dim=1))[:, -5:]
    assert torch.equal(got, plain)
    torch.testing.assert_close(got, full)
    with torch.no_grad():
        first = plain[:, -1].argmax(-1)
    assert wrapper.generate(windows, task, 3)[0, 0] == first


def test_pcw_does_not_depend_on_the_order_of_its_windows(tiny_cfg):
    model = _model(tiny_cfg, "model.position=rope")
    pcw = ParallelContextWindows(model, window=6)
    windows = pcw.split(_tokens(18, 3))
    assert [w.shape[1] for w in windows] == [6, 6, 6]
    task = _tokens(4, 4)
    forward = pcw.logits(windows, task)
    torch.testing.assert_close(pcw.logits(windows[::-1], task), forward)
    with torch.no_grad():  # and it is not plain decoding of the whole context
        _, state = model.prefill(torch.cat(windows, dim=1))
        assert not torch.allclose(model.prefill(task, state)[0], forward)


def test_structured_prompting_over_copies_of_one_group_is_plain_decoding(tiny_cfg):
    model = _model(tiny_cfg, "model.position=rope")
    group, task = _tokens(7, 5), _tokens(4, 6)
    prompting = StructuredPrompting(model)
    with torch.no_grad():
        _, state = model.prefill(group)
        plain = model.prefill(task, state)[0]
    for copies in (2, 3):
        torch.testing.assert_close(prompting.logits([group] * copies, task), plain)
    pcw = ParallelContextWindows(model, window=7)  # without the rescaling the copies count
    assert not torch.allclose(pcw.logits([group, group], task), plain)


def test_groups_of_different_lengths_are_right_aligned(tiny_cfg):
    model = _model(tiny_cfg, "model.position=sinusoidal")
    state = StructuredPrompting(model).encode([_tokens(3, 7), _tokens(5, 8)])
    assert state["offset"] == 5 and state["layers"][0]["mixer"]["k"].shape[2] == 8
    assert torch.allclose(state["layers"][0]["mixer"]["key_bias"], torch.tensor(-0.6931471805599453,
                                                                                dtype=torch.float64))


@pytest.mark.parametrize("more, what", [(("model.mixer.name=rwkv4",), "layer 0 is 'rwkv4'"),
                                        (("model.position=alibi",), "with position 'alibi'")])
def test_a_model_whose_caches_cannot_be_concatenated_is_refused(tiny_cfg, more, what):
    with pytest.raises(IncompatibleError, match=what):
        ParallelContextWindows(_model(tiny_cfg, *more), window=4)
