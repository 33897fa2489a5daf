"""The test-time-training inner loop: which form is exact with which.

- ``chunk`` (the dual form) equals ``recurrent`` (the primal, gradients at the mini-batch start) for
  every mini-batch size, and both equal a float64 autograd loop of mini-batch gradient descent;
- with ``mini_batch_size`` 1 all of them equal online gradient descent (the gradient at the weights
  just before each token, "token-by-token inner SGD"); with larger mini-batches they do not.
Both for TTT (plain steps) and Titans (momentum and weight decay), for the linear and MLP inner models.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.errors import TrevoError
from trevo.ops.ttt import init_params, loss_grad, ttt


def inner(P, x, model):
    if model == "linear":
        return x @ P["W"] + (P["b"][..., None, :] if "b" in P else 0)
    h = F.gelu(x @ P["W1"] + (P["b1"][..., None, :] if "b1" in P else 0))
    return h @ P["W2"] + (P["b2"][..., None, :] if "b2" in P else 0)


def loss_value(z, k, v, loss, w, b):
    if loss == "l2":
        return 0.5 * (z - v).square().sum()
    zn = F.layer_norm(z, z.shape[-1:], eps=1e-6) * w[:, None] + b[:, None]
    return 0.5 * (zn - (v - k)).square().sum()


def autograd_loop(q, k, v, lr, P, model, loss, w, b, mini_batch, online, retain=None, momentum=None):
    """float64: for each token, the gradient of its loss (autograd) at the weights before it (online) or
    at the weights from the start of its mini-batch; then the TTT or Titans step; then the read."""
    P = {n: t.clone() for n, t in P.items()}
    P0 = {n: t.clone() for n, t in P.items()}
    S = {n: torch.zeros_like(t) for n, t in P.items()}
    outs = []
    for t in range(q.shape[2]):
        ref = {n: t_.clone().requires_grad_(True) for n, t_ in (P if online else P0).items()}
        kt, vt = k[:, :, t:t + 1], v[:, :, t:t + 1]
        grads = torch.autograd.grad(loss_value(inner(ref, kt, model), kt, vt, loss, w, b), list(ref.values()))
        for (n, _), g in zip(ref.items(), grads, strict=True):
            shape = (*g.shape[:2], *[1] * (g.dim() - 2))
            theta = lr[:, :, t].reshape(shape)
            if momentum is None:
                P[n] = P[n] - theta * g
            else:
                S[n] = momentum[:, :, t].reshape(shape) * S[n] - theta * g
                P[n] = retain[:, :, t].reshape(shape) * P[n] + S[n]
        outs.append(inner(P, q[:, :, t:t + 1], model))
        if (t + 1) % mini_batch == 0:
            P0 = {n: t_.clone() for n, t_ in P.items()}
    return torch.cat(outs, dim=2)


def case(model, titans, seed=0, T=11):
    torch.manual_seed(seed)
    B, H, D = 2, 2, 3
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.float64) for _ in range(3))
    lr = torch.rand(B, H, T, dtype=torch.float64) * 0.5
    P = init_params(model, B, H, D, 5, bias=not titans, device="cpu", dtype=torch.float64)
    for n in P:
        P[n] = torch.randn_like(P[n]) * 0.5
    w, b = 1 + 0.3 * torch.randn(H, D, dtype=torch.float64), 0.3 * torch.randn(H, D, dtype=torch.float64)
    gates = {}
    if titans:
        gates = {"log_retain": F.logsigmoid(torch.randn(B, H, T, dtype=torch.float64) + 2),
                 "log_momentum": F.logsigmoid(torch.randn(B, H, T, dtype=torch.float64))}
    return q, k, v, lr, P, w, b, gates


def run(form, model, titans, mini_batch, q, k, v, lr, P, w, b, gates, pos=0, P0=None, S=None):
    loss = "l2" if titans else "reconstruction"
    if titans and S is None:
        S = {n: torch.zeros_like(t) for n, t in P.items()}
    return ttt(q, k, v, lr, P, P if P0 is None else P0, pos, model=model, loss=loss, ln_weight=w, ln_bias=b,
               mini_batch_size=mini_batch, momentum=S, form=form, **gates)


@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("titans", [False, True], ids=["ttt", "titans"])
def test_mini_batch_one_is_online_gradient_descent_in_both_forms(model, titans):
    q, k, v, lr, P, w, b, gates = case(model, titans)
    loss = "l2" if titans else "reconstruction"
    extra = {"retain": gates["log_retain"].exp(), "momentum": gates["log_momentum"].exp()} if titans else {}
    expected = autograd_loop(q, k, v, lr, P, model, loss, w, b, 1, online=True, **extra)
    for form in ("chunk", "recurrent"):
        z = run(form, model, titans, 1, q, k, v, lr, P, w, b, gates)[0]
        torch.testing.assert_close(z, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("titans", [False, True], ids=["ttt", "titans"])
def test_dual_form_equals_mini_batch_gradient_descent_not_online(model, titans):
    q, k, v, lr, P, w, b, gates = case(model, titans, seed=1)
    loss = "l2" if titans else "reconstruction"
    extra = {"retain": gates["log_retain"].exp(), "momentum": gates["log_momentum"].exp()} if titans else {}
    expected = autograd_loop(q, k, v, lr, P, model, loss, w, b, 4, online=False, **extra)
    chunk, P_c, P0_c, S_c = run("chunk", model, titans, 4, q, k, v, lr, P, w, b, gates)
    primal, P_r, P0_r, S_r = run("recurrent", model, titans, 4, q, k, v, lr, P, w, b, gates)
    torch.testing.assert_close(chunk, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(primal, expected, rtol=1e-10, atol=1e-10)
    for n in P:
        torch.testing.assert_close(P_c[n], P_r[n], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(P0_c[n], P0_r[n], rtol=1e-10, atol=1e-10)
        if titans:
            torch.testing.assert_close(S_c[n], S_r[n], rtol=1e-10, atol=1e-10)
    online = autograd_loop(q, k, v, lr, P, model, loss, w, b, 4, online=True, **extra)
    assert (online - expected).abs().max() > 1e-3  # mini-batch GD is not online GD for b > 1


@pytest.mark.parametrize("titans", [False, True], ids=["ttt", "titans"])
def test_state_carried_from_inside_a_mini_batch_equals_one_pass(titans):
    q, k, v, lr, P, w, b, gates = case("mlp", titans, seed=2, T=13)
    full = run("chunk", "mlp", titans, 4, q, k, v, lr, P, w, b, gates)[0]
    for form in ("chunk", "recurrent"):
        for t in (1, 6, 9):
            first = {n: g[:, :, :t] for n, g in gates.items()}
            rest = {n: g[:, :, t:] for n, g in gates.items()}
            z1, P1, P01, S1 = run(form, "mlp", titans, 4, q[:, :, :t], k[:, :, :t], v[:, :, :t], lr[:, :, :t], P,
                                  w, b, first)
            z2 = run(form, "mlp", titans, 4, q[:, :, t:], k[:, :, t:], v[:, :, t:], lr[:, :, t:], P1, w, b, rest,
                     pos=t, P0=P01, S=S1)[0]
            torch.testing.assert_close(torch.cat([z1, z2], dim=2), full, rtol=1e-10, atol=1e-10)


def test_reconstruction_gradient_is_the_layer_norm_backward():
    torch.manual_seed(3)
    z = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    k, v = torch.randn(2, 3, 5, 4, dtype=torch.float64), torch.randn(2, 3, 5, 4, dtype=torch.float64)
    w, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    (expected,) = torch.autograd.grad(loss_value(z, k, v, "reconstruction", w, b), z)
    torch.testing.assert_close(loss_grad(z, k, v, "reconstruction", w, b), expected)


def test_bad_options_are_clear_errors():
    q, k, v, lr, P, w, b, gates = case("linear", False)
    with pytest.raises(TrevoError, match="inner model"):
        ttt(q, k, v, lr, P, P, 0, model="rnn")
    with pytest.raises(TrevoError, match="mini_batch_size"):
        ttt(q, k, v, lr, P, P, 0, mini_batch_size=0, ln_weight=w, ln_bias=b)
