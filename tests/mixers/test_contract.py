"""The token-mixer contract on every registered mixer, with no new test code per mixer: the checks
of ``trevo.testing`` (shapes, gradients, causality, exact forms equal in float64, prefill then step
equals forward, state carried across a split equals one pass, padding, clear errors, vocabulary,
one training step inside the backbone)."""

from __future__ import annotations

import pytest
import torch

from trevo import testing
from trevo.registry import get, names


def _cases(predicate=lambda entry, causal: True):
    return [pytest.param(name, causal, id=f"{name}-{'causal' if causal else 'bidir'}")
            for name in names("mixer") for causal in testing.directions(name) if predicate(get("mixer", name), causal)]


@pytest.mark.parametrize("name,causal", _cases())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_finite(name, causal, dtype):
    testing.check_shape_dtype_and_finite(name, causal, dtype)


@pytest.mark.parametrize("name,causal", _cases())
def test_every_parameter_gets_a_gradient(name, causal):
    testing.check_every_parameter_gets_a_gradient(name, causal)


@pytest.mark.parametrize("name,causal", _cases(lambda e, causal: causal))
def test_causal_mixers_never_see_the_future(name, causal):
    testing.check_never_sees_the_future(name)


@pytest.mark.parametrize("name,causal,form_a,form_b", [
    pytest.param(name, causal, a, b, id=f"{name}-{'c' if causal else 'b'}-{a}-{b}")
    for name in names("mixer") for causal in testing.directions(name) for a, b in testing.form_pairs(name)])
def test_exact_forms_agree_in_float64(name, causal, form_a, form_b):
    testing.check_forms_agree(name, causal, form_a, form_b)


@pytest.mark.parametrize("name,causal", _cases(lambda e, causal: causal))
def test_prefill_then_step_equals_forward(name, causal):
    testing.check_prefill_then_step_equals_forward(name)


@pytest.mark.parametrize("name,causal", _cases(lambda e, causal: causal))
def test_state_carried_across_a_split_equals_one_pass(name, causal):
    testing.check_split_state_equals_one_pass(name)


@pytest.mark.parametrize("name,causal", _cases(lambda e, causal: not causal))
def test_bidirectional_padding_is_ignored(name, causal):
    testing.check_bidirectional_padding_is_ignored(name)


@pytest.mark.parametrize("name,causal", _cases())
def test_wrong_input_is_a_clear_error(name, causal):
    testing.check_wrong_input_is_a_clear_error(name, causal)


@pytest.mark.parametrize("name", names("mixer"))
def test_metadata_and_vocabulary(name):
    testing.check_metadata_and_vocabulary(name)


@pytest.mark.parametrize("name", names("mixer"))
def test_trains_one_step_inside_the_backbone(name):
    testing.check_trains_inside_the_backbone(name)
