"""Test-time training: the layer's state is the weights of an inner model, trained while the sequence is
read by gradient descent on a self-supervised loss, one mini-batch of tokens at a time.

Sun et al., "Learning to (Learn at Test Time): RNNs with Expressive Hidden States" (TTT, arXiv:2407.04620),
Behrouz et al., "Titans: Learning to Memorize at Test Time" (arXiv:2501.00663).
With weights P, keys k, values v, queries q (``[B, H, T, D]``):

    TTT:     P_t = P_{t−1} − η_t ∇ℓ(P_ref; k_t, v_t)
    Titans:  S_t = μ_t S_{t−1} − θ_t ∇ℓ(P_ref; k_t, v_t),  P_t = (1 − α_t) P_{t−1} + S_t   (momentum, decay)
    output   z_t = f(q_t; P_t)

where P_ref is the weights at the start of the token's mini-batch (``mini_batch_size`` b tokens): every
gradient of a mini-batch is taken at the same point, which is what lets it be computed in parallel.

Forms, and which is exact with which:
  ``recurrent``  the primal form: token by token, gradient at P_ref, weights updated after every token
                 (the generation form).
  ``chunk``      the dual form (TTT's and Titans' parallel form): per mini-batch, all gradients at P_ref as
                 matrices, and the outputs through z_t = f(q_t; P_ref-carry − Σ_{i<=t} G_ti a_iᵀ δ_i) as
                 attention-like products, without forming any P_t.
The two are the same computation: equal for every b (to rounding). Both equal plain online gradient
descent (the gradient at P_{t−1}, "token by token inner SGD") exactly when b = 1, and not otherwise.

Inner models (``model``): ``linear`` f(x) = x W (+ b) and ``mlp`` f(x) = GELU(x W1 + b1) W2 + b2. Losses
(``loss``): ``reconstruction`` ℓ = ½‖LN(f(k)) − (v − k)‖² (TTT's, with a learnable per-head LayerNorm;
the mixer adds k back: f(x) = x + LN(f_res(x))) and ``l2`` ℓ = ½‖f(k) − v‖² (Titans').
Titans' coefficients inside a mini-batch: with A_tj = Π_{j<s<=t}(1 − α_s) and M_ji = Π_{i<s<=j} μ_s,
P_t = β_t P_0 + f_t S_0 − Σ_i θ_i (A M)_ti ∇_i, β_t = Π_{s<=t}(1 − α_s), f = A m, m_j = Π_{s<=j} μ_s.
"""

from __future__ import annotations

import math

import torch

from trevo.errors import TrevoError
from trevo.ops.linear_recurrence import segsum

FORMS = ("chunk", "recurrent")
LAYERS = {"linear": ("",), "mlp": ("1", "2")}


def init_params(model: str, batch: int, heads: int, dim: int, hidden: int, bias: bool, device, dtype,
                ) -> dict[str, torch.Tensor]:
    """Zero inner weights ``W…`` ``[B, H, in, out]`` (and biases ``b…`` ``[B, H, out]``) of ``model``."""
    shapes = {"linear": [("", dim, dim)], "mlp": [("1", dim, hidden), ("2", hidden, dim)]}[model]
    P = {}
    for name, n_in, n_out in shapes:
        P[f"W{name}"] = torch.zeros(batch, heads, n_in, n_out, device=device, dtype=dtype)
        if bias:
            P[f"b{name}"] = torch.zeros(batch, heads, n_out, device=device, dtype=dtype)
    return P


def _gelu_grad(z: torch.Tensor) -> torch.Tensor:
    """d GELU(z) / dz for the exact (erf) GELU: Φ(z) + z φ(z)."""
    return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _forward(P, x, layers):
    """(output, the input of every layer, the pre-activations between layers) of the inner model."""
    inputs, pre = [], []
    for i, name in enumerate(layers):
        inputs.append(x)
        x = x @ P[f"W{name}"] + (P[f"b{name}"][..., None, :] if f"b{name}" in P else 0)
        if i < len(layers) - 1:
            pre.append(x)
            x = torch.nn.functional.gelu(x)
    return x, inputs, pre


def _output_grads(P, dz, pre, layers):
    """∂ℓ/∂(each layer's output) from ∂ℓ/∂z, back through the GELUs."""
    grads = [dz]
    for i in range(len(layers) - 1, 0, -1):
        grads.insert(0, (grads[0] @ P[f"W{layers[i]}"].transpose(-1, -2)) * _gelu_grad(pre[i - 1]))
    return grads


def loss_grad(z: torch.Tensor, k: torch.Tensor, v: torch.Tensor, loss: str, ln_weight: torch.Tensor | None,
              ln_bias: torch.Tensor | None, eps: float = 1e-6) -> torch.Tensor:
    """∂ℓ/∂z for ``l2`` (z − v) or ``reconstruction`` (through the LayerNorm, to target v − k)."""
    if loss == "l2":
        return z - v
    D = z.shape[-1]
    mu = z.mean(-1, keepdim=True)
    sigma = torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + eps)
    xhat = (z - mu) / sigma
    w, b = ln_weight[:, None, :], ln_bias[:, None, :]
    g = w * (w * xhat + b - (v - k))  # ∂ℓ/∂x̂
    return (D * g - g.sum(-1, keepdim=True) - xhat * (g * xhat).sum(-1, keepdim=True)) / (sigma * D)


def ttt(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lr: torch.Tensor, params: dict[str, torch.Tensor],
        params0: dict[str, torch.Tensor], pos: int, *, model: str = "linear", loss: str = "reconstruction",
        ln_weight: torch.Tensor | None = None, ln_bias: torch.Tensor | None = None, mini_batch_size: int = 16,
        log_retain: torch.Tensor | None = None, log_momentum: torch.Tensor | None = None,
        momentum: dict[str, torch.Tensor] | None = None, form: str = "chunk"):
    """Run the inner loop over q, k, v ``[B, H, T, D]`` with learning rates ``lr`` ``[B, H, T]`` (θ for
    Titans), from the weights ``params`` after ``pos`` tokens, ``params0`` those at the start of the
    current mini-batch. Titans passes ``log_retain`` log(1 − α) and ``log_momentum`` log μ ``[B, H, T]``
    and the ``momentum`` S (same keys as params). Returns (z ``[B, H, T, D_out]``, params, params0,
    momentum or None)."""
    if model not in LAYERS:
        raise TrevoError(f"unknown inner model {model!r}; choose linear or mlp")
    if loss not in ("reconstruction", "l2"):
        raise TrevoError(f"unknown inner loss {loss!r}; choose reconstruction or l2")
    if mini_batch_size < 1:
        raise TrevoError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
    if form not in FORMS:
        raise TrevoError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    titans = log_momentum is not None or log_retain is not None
    if titans:
        zeros = torch.zeros_like(lr)
        log_retain = zeros if log_retain is None else log_retain
        log_momentum = zeros if log_momentum is None else log_momentum
        if momentum is None:
            raise TrevoError("a momentum (Titans) inner loop needs its momentum state")
    args = (LAYERS[model], loss, ln_weight, ln_bias)
    P, P0, S = dict(params), dict(params0), (dict(momentum) if titans else None)
    b, T = mini_batch_size, q.shape[2]
    sizes, start = [], 0
    while start < T:  # segments end at mini-batch boundaries
        sizes.append(min(b - (pos + start) % b, T - start))
        start += sizes[-1]
    # split, not x[:, :, a:b] per segment: each slice's gradient is a zero tensor of x's full size, which
    # made the backward pass quadratic in T.
    pieces = [x.split(sizes, dim=2) if x is not None else [None] * len(sizes)
              for x in (q, k, v, lr, log_retain, log_momentum)]  # the two gates are None unless Titans
    run = _dual if form == "chunk" else _primal
    outs = []
    start = 0
    for n, *segment in zip(sizes, *pieces, strict=True):
        z, P, S = run(*segment, P, P0, S, args)
        outs.append(z)
        start += n
        if (pos + start) % b == 0:
            P0 = dict(P)
    z = torch.cat(outs, dim=2) if outs else q.new_zeros(*q.shape[:3], params[f"W{LAYERS[model][-1]}"].shape[-1])
    return z, P, P0, S


def _grads_at(P0, k, v, args):
    """Every layer's (inputs, output gradients) of the mini-batch's tokens, at the reference weights."""
    layers, loss, w, b = args
    zk, inputs, pre = _forward(P0, k, layers)
    return inputs, _output_grads(P0, loss_grad(zk, k, v, loss, w, b), pre, layers)


def _primal(q, k, v, lr, log_retain, log_momentum, P, P0, S, args):
    layers = args[0]
    inputs, deltas = _grads_at(P0, k, v, args)
    outs = []
    for t in range(q.shape[2]):
        for name, a, d in zip(layers, inputs, deltas, strict=True):
            grads = {f"W{name}": a[:, :, t, :, None] * d[:, :, t, None, :], f"b{name}": d[:, :, t]}
            for key, g in grads.items():
                if key not in P:
                    continue
                theta = lr[:, :, t].reshape(*g.shape[:2], *[1] * (g.dim() - 2))
                if S is None:
                    P[key] = P[key] - theta * g
                else:
                    mu, keep = (torch.exp(x[:, :, t]).reshape(theta.shape) for x in (log_momentum, log_retain))
                    S[key] = mu * S[key] - theta * g
                    P[key] = keep * P[key] + S[key]
        outs.append(_forward(P, q[:, :, t:t + 1], layers)[0])
    return torch.cat(outs, dim=2), P, S


def _dual(q, k, v, lr, log_retain, log_momentum, P, P0, S, args):
    layers = args[0]
    inputs, deltas = _grads_at(P0, k, v, args)
    n = q.shape[2]
    if S is None:  # G_ti = η_i for i <= t
        G = lr[..., None, :] * torch.ones(n, n, dtype=q.dtype, device=q.device).tril()
    else:
        A, Mm = torch.exp(segsum(log_retain)), torch.exp(segsum(log_momentum))
        G = (A @ Mm) * lr[..., None, :]
        beta, f = torch.exp(log_retain.cumsum(-1)), A @ torch.exp(log_momentum.cumsum(-1))[..., None]  # [B,H,n(,1)]
        M_last = Mm[..., -1, :] * lr  # θ_i Π_{i<s<=n} μ_s: each gradient's weight in the final momentum
    new_P, new_S = {}, ({} if S is not None else None)
    x = q
    for i, (name, a, d) in enumerate(zip(layers, inputs, deltas, strict=True)):
        W, bk = f"W{name}", f"b{name}"
        has_b = bk in P
        out = x @ P[W] + (P[bk][..., None, :] if has_b else 0)
        if S is not None:
            out = beta[..., None] * out + f * (x @ S[W] + (S[bk][..., None, :] if has_b else 0))
        out = out - ((x @ a.transpose(-1, -2) + (1.0 if has_b else 0.0)) * G) @ d
        g_last = G[..., -1, :, None] * d  # Σ_i G_ni a_iᵀ δ_i: the weights after the mini-batch
        carry = {W: P[W], **({bk: P[bk]} if has_b else {})}
        step = {W: a.transpose(-1, -2) @ g_last, **({bk: g_last.sum(-2)} if has_b else {})}
        for key, value in carry.items():
            if S is None:
                new_P[key] = value - step[key]
            else:
                shape = (*value.shape[:2], *[1] * (value.dim() - 2))
                new_P[key] = beta[..., -1].reshape(shape) * value + f[..., -1, 0].reshape(shape) * S[key] - step[key]
                m_step = a.transpose(-1, -2) @ (M_last[..., None] * d) if key == W else (M_last[..., None] * d).sum(-2)
                new_S[key] = torch.exp(log_momentum.sum(-1)).reshape(shape) * S[key] - m_step
        x = torch.nn.functional.gelu(out) if i < len(layers) - 1 else out
    return x, new_P, new_S
