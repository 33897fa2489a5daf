"""normalised_linear_recurrence (trevo.ops.linear_attention): its numerator over its denominator is the
linear-attention RNN (a float64 per-token loop, ``linear_attention_recurrent``) continued from a state, in
every form of linear_recurrence, and a decay multiplies both sums; the bidirectional ratio is the quadratic form
without the padded keys."""

from __future__ import annotations

import pytest
import torch

from trevo.ops.linear_attention import (
    linear_attention_quadratic,
    linear_attention_recurrent,
    normalised_linear_attention,
    normalised_linear_recurrence,
)


@pytest.mark.parametrize("form", ["chunk", "quadratic", "recurrent"])
def test_ratio_and_state_equal_the_rnn_continued_from_a_state(form):
    torch.manual_seed(0)
    q, k = (torch.rand(2, 3, 11, 4, dtype=torch.float64) for _ in range(2))  # positive features
    v = torch.randn(2, 3, 11, 5, dtype=torch.float64)
    S, z = torch.rand(2, 3, 4, 5, dtype=torch.float64), torch.rand(2, 3, 4, dtype=torch.float64)
    num, den, S1, z1 = normalised_linear_recurrence(q, k, v, S, z, form=form, chunk_size=4)
    o_ref, S_ref, z_ref = linear_attention_recurrent(q, k, v, S, z, eps=0.0)
    torch.testing.assert_close(num / den, o_ref)
    torch.testing.assert_close(S1, S_ref)
    torch.testing.assert_close(z1, z_ref)


def test_a_decay_multiplies_both_the_state_and_the_normaliser():
    torch.manual_seed(1)
    q, k = (torch.rand(1, 1, 3, 2, dtype=torch.float64) for _ in range(2))
    v = torch.randn(1, 1, 3, 2, dtype=torch.float64)
    S, z = torch.zeros(1, 1, 2, 2, dtype=torch.float64), torch.zeros(1, 1, 2, dtype=torch.float64)
    log_decay = torch.log(torch.full((1, 1, 3), 0.5, dtype=torch.float64))
    _, _, S1, z1 = normalised_linear_recurrence(q, k, v, S, z, log_decay=log_decay, form="recurrent", chunk_size=4)
    w = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)  # token i decayed by 0.5 at each later step
    torch.testing.assert_close(S1[0, 0], torch.einsum("t,ti,tj->ij", w, k[0, 0], v[0, 0]))
    torch.testing.assert_close(z1[0, 0], w @ k[0, 0])


def test_bidirectional_ratio_is_the_quadratic_form_and_padded_keys_are_left_out():
    torch.manual_seed(2)
    q, k = (torch.rand(2, 3, 7, 4, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    num, den = normalised_linear_attention(q, k, v)
    torch.testing.assert_close(num / den, linear_attention_quadratic(q, k, v, causal=False, eps=0.0))
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    num, den = normalised_linear_attention(q, k, v, mask)
    torch.testing.assert_close((num / den)[1], linear_attention_quadratic(q[1:], k[1:, :, :4], v[1:, :, :4],
                                                                          causal=False, eps=0.0)[0])
