"""The token-mixer base class: state sizes, form validation, the form for a length, and capability
checks at construction."""

from __future__ import annotations

import pytest
import torch

from trevo.components.base import state_nbytes
from trevo.errors import IncompatibleError
from trevo.registry import create


def test_state_bytes_count_every_nested_tensor():
    assert state_nbytes({"a": torch.zeros(4, dtype=torch.float64), "b": [torch.zeros(2)]}) == 40
    assert state_nbytes(None) == 0 and state_nbytes({"pos": 3}) == 0


def test_an_unknown_form_is_refused_naming_the_forms():
    with pytest.raises(IncompatibleError, match="has no form 'parallel'; its forms are: auto, chunk, quadratic"):
        create("mixer", "gla", d_model=16, causal=True, form="parallel")


def test_auto_is_the_training_default_except_a_recurrent_one_token_step():
    gla = create("mixer", "gla", d_model=16, causal=True)
    assert gla.form_for(1) == "recurrent" and gla.form_for(50) == gla.forms[0] == "chunk"
    assert create("mixer", "gla", d_model=16, causal=True, form="quadratic").form_for(1) == "quadratic"
    attention = create("mixer", "softmax_attention", d_model=16, causal=True)
    assert attention.form_for(1) == attention.form_for(50) == "sdpa"  # no recurrent form
    assert create("mixer", "linformer", d_model=16, causal=False).form_for(8) == ""  # a single form


def test_the_other_direction_is_refused_at_construction():
    with pytest.raises(IncompatibleError, match="'gla' is causal only"):
        create("mixer", "gla", d_model=16, causal=False)
    with pytest.raises(IncompatibleError, match="'fnet' is bidirectional only"):
        create("mixer", "fnet", d_model=16, causal=True)


def test_generation_is_refused_for_a_bidirectional_mixer():
    mixer = create("mixer", "softmax_attention", d_model=16, causal=False)
    with pytest.raises(IncompatibleError, match="causal=False; prefill is only defined for causal mixers"):
        mixer.prefill(torch.randn(1, 3, 16))
    with pytest.raises(IncompatibleError, match="step is only defined"):
        mixer.step(torch.randn(1, 16), {})
