"""Parity with flash-linear-attention's pure-PyTorch references (fla-core 0.6.0, ``fla/ops/<op>/naive.py``)
for the gated-linear-attention, test-time-training and SSM families: every trevo form on random
inputs, lengths that no chunk divides, initial and final states where fla takes them.

fla's naive files are loaded by file path (no Triton kernel runs); the module skips when fla is not
installed (``pip install --no-deps fla-core==0.6.0 einops``, the ``peers`` extra). fla computes in
float32, so tolerances are float32's. Each case reports its max relative error:
``pytest tests/ops/test_fla_parity_gla_family.py -s``.

Cases: GSA, ABC, Based, ReBased, lightning attention (fla's simple GLA with TransNormerLLM's decays),
TTT-Linear, log-linear attention over Mamba-2's decay. The frontier mixers with no usable fla 0.6.0
reference, and what each is checked against instead:
- mLSTM, sLSTM: fla-core 0.6.0 has no mLSTM/sLSTM op; float64 loops of the paper's unstabilised cells
  (tests/ops/test_xlstm.py);
- LightNet, Rodimus, Hedgehog, MoM: fla's layers over kernels without a naive file; float64 loops or
  pairwise sums of their recurrences (tests/mixers/test_<family>.py);
- Mamba-3: fla's layer calls state-spaces/mamba kernels; a loop of that repository's reference step,
  the Euler limit and the complex-state equivalence (tests/mixers/test_mamba3.py, tests/ops/test_mamba3.py);
- Titans: fla 0.6.0's ``titans/naive.py`` does not take the gradient of its own loss (its LayerNorm
  backward reads D·g − Σg/(σD) − … for (D·g − Σg − …)/(σD)), so it cannot be matched; a float64
  autograd loop of gradient descent with momentum and decay (tests/ops/test_ttt.py);
- TTT-MLP: fla has TTT-Linear only; the same autograd loop;
- log-linear Gated DeltaNet: fla's naive covers the scalar-decay hierarchy only; explicit products of
  the delta transitions (tests/ops/test_log_linear.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trevo.ops.gsa import cumulative_softmax_gate, slot_attention

FORMS = ("quadratic", "chunk", "recurrent")


def _fla_root() -> Path | None:
    try:
        spec = importlib.util.find_spec("fla")
    except (ImportError, ValueError):
        return None
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


FLA = _fla_root()
pytestmark = pytest.mark.skipif(FLA is None or importlib.util.find_spec("einops") is None,
                                reason="fla-core 0.6.0 is not installed (pip install --no-deps fla-core==0.6.0 einops)")


def naive(op: str):
    """fla/ops/<op>/naive.py as a module, loaded by path."""
    path = FLA / "ops" / op / "naive.py"
    name = f"_fla_naive_{op.replace('/', '_')}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


def check(name: str, ours: torch.Tensor, theirs: torch.Tensor, tol: float = 1e-5) -> None:
    err = max_rel(ours, theirs)
    print(f"fla parity {name}: max relative error {err:.2e}")
    assert err < tol, f"{name}: max relative error {err:.2e} against fla's naive reference"


def test_gsa_matches_naive_recurrent_gsa():
    torch.manual_seed(0)
    B, T, H, Dk, Dv, M = 2, 37, 2, 8, 6, 5
    q, k, v = torch.randn(B, T, H, Dk), torch.randn(B, T, H, Dk), torch.randn(B, T, H, Dv)
    g = F.logsigmoid(torch.randn(B, T, H, M)) / 8
    s = 1 - g.exp()
    h0 = (torch.randn(B, H, Dk, M), torch.randn(B, H, M, Dv))
    ref, (hk, hv) = naive("gsa").naive_recurrent_gsa(q, k, v, s, g, scale=0.5, initial_state=h0,
                                                     output_final_state=True)

    def t(x):
        return x.transpose(1, 2)

    for form in FORMS:
        o, K, V = slot_attention(t(q), t(k), t(v), t(s), t(g), state_k=h0[0], state_v=h0[1], scale=0.5, form=form,
                                 chunk_size=16)
        check(f"gsa {form}", t(o), ref)
        check(f"gsa {form} final K", K, hk)
        check(f"gsa {form} final V", V, hv)


def test_abc_matches_naive_recurrent_abc():
    """fla's ABC without a gate derives the cumulative-softmax control from the slot logits, as
    ``cumulative_softmax_gate`` does."""
    torch.manual_seed(1)
    B, H, T, Dk, Dv, M = 2, 2, 29, 8, 4, 6
    q, k, v, phi = torch.randn(B, H, T, Dk), torch.randn(B, H, T, Dk), torch.randn(B, H, T, Dv), torch.randn(B, H, T, M)
    ref, _ = naive("abc").naive_recurrent_abc(q, k, v, phi)
    w, log_alpha, _ = cumulative_softmax_gate(phi, torch.full((B, H, M), -torch.inf))
    for form in FORMS:
        o, _, _ = slot_attention(q, k, v, w, log_alpha, scale=Dk ** -0.5, form=form, chunk_size=8)
        check(f"abc {form}", o, ref)


def test_based_and_rebased_match_naive_parallel():
    from trevo.ops.based import rebased_features, taylor_features
    from trevo.ops.linear_recurrence import linear_recurrence

    torch.manual_seed(2)
    B, H, T, f, Dv = 2, 2, 45, 16, 8  # fla's parallel references keep the input dtype: float64 here
    q, k, v = (torch.randn(B, H, T, n, dtype=torch.float64) for n in (f, f, Dv))
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    for name, fmap, ref in (("based", taylor_features, naive("based").naive_parallel_based(q, k, v)),
                            ("rebased", rebased_features, naive("rebased").naive_parallel_rebased(q, k, v))):
        for form in FORMS:
            o, _ = linear_recurrence(fmap(q), fmap(k), v1, form=form, chunk_size=16)
            check(f"{name} {form}", o[..., :-1] / (o[..., -1:] + 1e-6), ref, tol=1e-10)


def test_lightning_decay_matches_naive_recurrent_simple_gla():
    """Lightning attention is fla's simple GLA with TransNormerLLM's fixed per-head decays."""
    from trevo.components.mixers.lightning_attention import lightning_log_decays
    from trevo.ops.linear_recurrence import linear_recurrence

    torch.manual_seed(3)
    B, T, H, D = 2, 41, 4, 8
    q, k, v = torch.randn(B, T, H, D), torch.randn(B, T, H, D), torch.randn(B, T, H, D)
    g = lightning_log_decays(H, 1, 4).float()[None, None].expand(B, T, H)
    h0 = torch.randn(B, H, D, D)
    ref, hT = naive("simple_gla").naive_recurrent_simple_gla(q, k, v, g, scale=D ** -0.5, initial_state=h0,
                                                             output_final_state=True)
    for form in FORMS:
        o, S = linear_recurrence(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                 log_decay=g.transpose(1, 2), initial_state=h0, scale=D ** -0.5, form=form,
                                 chunk_size=16)
        check(f"lightning {form}", o.transpose(1, 2), ref)
        check(f"lightning {form} final state", S, hT)


def test_ttt_linear_matches_chunk_ttt_linear_ref():
    """fla's TTT-Linear reference is the dual form with one learning rate per mini-batch; its output adds
    the inner LayerNorm to the read (o + LN(o)), applied here to trevo's read. Final weights are
    compared on a length that fills its mini-batches (fla's padding tokens also take gradient steps)."""
    from trevo.ops.ttt import ttt

    torch.manual_seed(4)
    B, H, D, b = 2, 2, 8, 16
    w, bias = 1 + 0.2 * torch.randn(H, D), 0.2 * torch.randn(H, D)
    for T in (45, 32):
        q, k, v = torch.randn(B, T, H, D), torch.randn(B, T, H, D), torch.randn(B, T, H, D)
        h0, hb0 = 0.1 * torch.randn(B, H, D, D), 0.1 * torch.randn(B, H, 1, D)
        ref, hT, hbT = naive("ttt").chunk_ttt_linear_ref(q.clone(), k, v, w, bias, eta=0.05, scale=D ** -0.5,
                                                         mini_batch_size=b, initial_state=h0.clone(),
                                                         initial_state_bias=hb0.clone(), output_final_state=True)
        P = {"W": h0, "b": hb0[:, :, 0]}
        qs, ks, vs = (x.transpose(1, 2) for x in (q * D ** -0.5, k, v))
        for form in ("chunk", "recurrent"):
            z, P_T, _, _ = ttt(qs, ks, vs, torch.full((B, H, T), 0.05), P, P, 0, ln_weight=w, ln_bias=bias,
                               mini_batch_size=b, form=form)
            out = z + F.layer_norm(z, (D,), eps=1e-6) * w[:, None] + bias[:, None]
            check(f"ttt_linear {form} T={T}", out.transpose(1, 2), ref)
            if T % b == 0:
                check(f"ttt_linear {form} final W", P_T["W"], hT)
                check(f"ttt_linear {form} final b", P_T["b"], hbT[:, :, 0])


def test_log_linear_matches_naive_log_linear_attn():
    import math

    from trevo.ops.log_linear import log_linear_attention

    torch.manual_seed(5)
    B, T, H, Dk, Dv = 2, 37, 2, 4, 3
    L = math.ceil(math.log2(T)) + 1  # fla's level count; the reference keeps the input dtype (float64 here)
    q, k, v = (torch.randn(B, T, H, n, dtype=torch.float64) for n in (Dk, Dk, Dv))
    g = F.logsigmoid(torch.randn(B, T, H, dtype=torch.float64) + 2)
    lam = F.softplus(torch.randn(B, T, H, L, dtype=torch.float64))
    ref = naive("log_linear_attn").naive_log_linear_attn(q, k, v, g, lam)
    empty = torch.zeros(B, H, 0, Dk, Dv, dtype=torch.float64)
    for form in FORMS:
        o, _ = log_linear_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), g.transpose(1, 2),
                                    lam.transpose(1, 2), state=empty, pos=0, form=form, chunk_size=8)
        check(f"log_linear {form}", o.transpose(1, 2), ref, tol=1e-10)
