"""TTT-Linear and TTT-MLP (Sun et al., "Learning to (Learn at Test Time): RNNs with Expressive Hidden
States", arXiv:2407.04620): the state is an inner model trained on the sequence (``trevo.ops.ttt``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.ttt import ttt
from trevo.registry import Paper, register

TTT = Paper("Learning to (Learn at Test Time): RNNs with Expressive Hidden States", "2407.04620", 2024)


def inner_weights(state: State, suffix: str = "") -> dict[str, torch.Tensor]:
    """The inner model's weights ``W…``/``b…`` from a state (``suffix`` "_0": those of the mini-batch start)."""
    return {k[:len(k) - len(suffix)] if suffix else k: v for k, v in state.items()
            if k[0] in "Wb" and k.endswith(suffix) and (suffix or not k.endswith("_0"))}


def as_state(P: dict[str, torch.Tensor], P0: dict[str, torch.Tensor], pos: torch.Tensor) -> State:
    return {**P, **{f"{k}_0": v for k, v in P0.items()}, "pos": pos}


class _TestTimeTraining(TokenMixer):
    """TTT layer: per head, the views θ_K x, θ_V x, θ_Q x; the inner loss
    ½‖LN(f(θ_K x)) − (θ_V x − θ_K x)‖² (f(x) = x + LN(f_res(x)) with a per-head LayerNorm), the learnable
    rate η(x) = η_base σ(θ_lr x) / D per token, gradients per mini-batch of ``mini_batch_size`` (16) at the
    weights from before it; output z_t = θ_Q x_t + LN(f_res(θ_Q x_t; W_t)), then LayerNorm and W_o. The
    initial inner weights W_0 are learned (the outer loop)."""

    forms = ("chunk", "recurrent")
    inner = "linear"

    def __init__(self, d_model: int, causal: bool, n_heads: int, mini_batch_size: int, base_lr: float,
                 form: str) -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.mini_batch_size, self.base_lr = mini_batch_size, base_lr
        H, D = n_heads, self.head_dim
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.lr_proj = nn.Linear(d_model, n_heads)
        self.ln_weight, self.ln_bias = nn.Parameter(torch.ones(H, D)), nn.Parameter(torch.zeros(H, D))
        sizes = [("", D, D)] if self.inner == "linear" else [("1", D, 4 * D), ("2", 4 * D, D)]
        self.initial = nn.ParameterDict()
        for name, n_in, n_out in sizes:
            self.initial[f"W{name}"] = nn.Parameter(torch.randn(H, n_in, n_out) * 0.02)
            self.initial[f"b{name}"] = nn.Parameter(torch.zeros(H, n_out))
        self.post_norm = nn.LayerNorm(d_model)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        P = {k: v.to(device, dtype).expand(batch, *v.shape) for k, v in self.initial.items()}
        return as_state(P, P, torch.zeros((), device=device, dtype=torch.long))

    def inner_norm(self, z: torch.Tensor) -> torch.Tensor:
        z = F.layer_norm(z, z.shape[-1:], eps=1e-6)
        return z * self.ln_weight[:, None, :] + self.ln_bias[:, None, :]

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        lr = self.base_lr * torch.sigmoid(self.lr_proj(x)).transpose(1, 2) / self.head_dim
        z, P, P0, _ = ttt(q, k, v, lr, inner_weights(state), inner_weights(state, "_0"), int(state["pos"]),
                          model=self.inner, loss="reconstruction", ln_weight=self.ln_weight, ln_bias=self.ln_bias,
                          mini_batch_size=self.mini_batch_size, form=self.form_for(x.shape[1]))
        y = merge_heads(q + self.inner_norm(z))
        return self.out_proj(self.post_norm(y)), as_state(P, P0, state["pos"] + x.shape[1])


@register("mixer", "ttt_linear", paper=TTT, category="Rnn", family="ttt", causal=True, bidirectional=False,
          recurrent=True, time="O(T·b·d + T·d²/H) chunk (dual form), O(T·d²/H) recurrent",
          memory="O(d²/H) state (two copies of W)", test_options={"mini_batch_size": 4})
class TTTLinear(_TestTimeTraining):
    """TTT-Linear: f_res(x) = x W + b, one D × D matrix per head (see the base class for the layer)."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, mini_batch_size: int = 16,
                 base_lr: float = 1.0, form: str = "auto") -> None:
        super().__init__(d_model, causal, n_heads, mini_batch_size, base_lr, form)


@register("mixer", "ttt_mlp", paper=TTT, category="Rnn", family="ttt", causal=True, bidirectional=False,
          recurrent=True, time="O(T·b·d + T·d²/H) chunk (dual form), O(T·d²/H) recurrent",
          memory="O(d²/H) state (two copies of the MLP)", test_options={"mini_batch_size": 4})
class TTTMLP(_TestTimeTraining):
    """TTT-MLP: f_res(x) = GELU(x W1 + b1) W2 + b2 with a 4D hidden layer per head (the base class's layer)."""

    inner = "mlp"

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, mini_batch_size: int = 16,
                 base_lr: float = 0.1, form: str = "auto") -> None:
        super().__init__(d_model, causal, n_heads, mini_batch_size, base_lr, form)
