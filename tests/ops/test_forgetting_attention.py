"""Forgetting attention (trevo.ops.forgetting_attention): both forms equal a float64 loop over
softmax_j(q_i·k_j/√d + Σ_{l=j+1}^{i} log f_l), also for queries after a cache (Tq < Tk)."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.forgetting_attention import FORMS, forgetting_attention


def _loop(q, k, v, log_f):
    B, H, tq, D = q.shape
    tk = k.shape[2]
    out = torch.zeros(B, H, tq, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for r in range(tq):
                i = tk - tq + r
                scores = torch.stack([q[b, h, r] @ k[b, h, j] / math.sqrt(D) + sum(log_f[b, h, j + 1:i + 1])
                                      for j in range(i + 1)])
                out[b, h, r] = torch.softmax(scores, 0) @ v[b, h, :i + 1]
    return out


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tq", [13, 4, 1])
def test_forms_equal_the_loop_of_the_forget_gated_logits(form, tq):
    torch.manual_seed(0)
    B, H, tk, D = 2, 3, 13, 4
    q = torch.randn(B, H, tq, D, dtype=torch.float64)
    k, v = torch.randn(B, H, tk, D, dtype=torch.float64), torch.randn(B, H, tk, 6, dtype=torch.float64)
    log_f = torch.nn.functional.logsigmoid(torch.randn(B, H, tk, dtype=torch.float64))
    out = forgetting_attention(q, k, v, log_f.cumsum(-1), form=form, chunk_size=5)
    torch.testing.assert_close(out, _loop(q, k, v, log_f), rtol=1e-10, atol=1e-12)


def test_unknown_form_is_refused():
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="chunk, quadratic"):
        forgetting_attention(x, x, x, torch.zeros(1, 1, 2), form="sdpa")
