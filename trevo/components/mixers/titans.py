"""Titans' neural long-term memory as a token mixer (Behrouz et al., "Titans: Learning to Memorize at Test
Time", arXiv:2501.00663): a memory trained at test time with momentum and weight decay (``trevo.ops.ttt``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer, keep_init
from trevo.components.mixers.ttt import inner_weights
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.short_conv import ShortConv
from trevo.errors import IncompatibleError
from trevo.ops.ttt import ttt
from trevo.registry import Paper, register


@register("mixer", "titans", paper=Paper("Titans: Learning to Memorize at Test Time", "2501.00663", 2025),
          category="Memory", family="titans", causal=True, bidirectional=False, recurrent=True,
          time="O(T·b·d + T·d²/H) chunk (mini-batch dual form), O(T·d²/H) recurrent",
          memory="O(d²/H) state (memory, momentum, mini-batch start)", test_options={"mini_batch_size": 4})
class NeuralMemory(TokenMixer):
    """The long-term memory module (LMM) used as a layer: k, v, q = SiLU(conv4(W x)), q and
    k ℓ2-normalised; the associative loss ℓ(M; x_t) = ½‖M(k_t) − v_t‖²; the surprise with momentum
    S_t = μ_t S_{t−1} − θ_t ∇ℓ(M; x_t) and the forgetting update M_t = (1 − α_t) M_{t−1} + S_t, with
    data-dependent α_t, μ_t, θ_t = σ(W x_t) per head; the read y_t = M_t(q_t), then W_o
    (RMSNorm(y) ⊙ SiLU(W_g x)). Gradients of a mini-batch (``mini_batch_size``) are taken at the memory
    from before it (the paper's parallel training); ``memory``: ``linear`` (a D × D matrix per head) or ``mlp``
    (two layers, GELU, hidden 4D: the deep memory); the initial memory is learned."""

    forms = ("chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, memory: str = "linear",
                 mini_batch_size: int = 16, conv_size: int = 4, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if memory not in ("linear", "mlp"):
            raise IncompatibleError(f"titans memory must be 'linear' or 'mlp', got {memory!r}")
        self.n_heads, self.head_dim, self.memory, self.mini_batch_size = (n_heads, head_dim_of(d_model, n_heads),
                                                                          memory, mini_batch_size)
        H, D = n_heads, self.head_dim
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = ShortConv(3 * d_model, conv_size)
        self.gates = nn.Linear(d_model, 3 * n_heads)  # θ (rate), α (forgetting), μ (momentum)
        with torch.no_grad():
            self.gates.bias.copy_(torch.tensor([0.0, -4.0, 1.0]).repeat_interleave(n_heads))
        keep_init(self.gates)
        sizes = [("", D, D)] if memory == "linear" else [("1", D, 4 * D), ("2", 4 * D, D)]
        self.initial = nn.ParameterDict({f"W{n}": nn.Parameter(torch.randn(H, i, o) * i ** -0.5) for n, i, o in sizes})
        self.g_proj = nn.Linear(d_model, d_model, bias=False)
        self.norm = nn.RMSNorm(d_model, eps=1e-6)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        P = {k: v.to(device, dtype).expand(batch, *v.shape) for k, v in self.initial.items()}
        return {**P, **{f"{k}_0": v for k, v in P.items()}, **{f"S_{k}": torch.zeros_like(v) for k, v in P.items()},
                "pos": torch.zeros((), device=device, dtype=torch.long),
                "conv": self.conv.init_state(batch, device, dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        qkv, conv = self.conv(self.qkv(x), state["conv"])
        q, k, v = (split_heads(F.silu(t), H) for t in qkv.chunk(3, dim=-1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        theta, alpha, mu = self.gates(x).transpose(1, 2).chunk(3, dim=1)  # [B, H, T] each
        momentum = {k[2:]: v for k, v in state.items() if k.startswith("S_")}
        P, P0 = inner_weights(state), inner_weights(state, "_0")
        y, P, P0, S = ttt(q, k, v, torch.sigmoid(theta), P, P0, int(state["pos"]), model=self.memory, loss="l2",
                          mini_batch_size=self.mini_batch_size, log_retain=F.logsigmoid(-alpha),
                          log_momentum=F.logsigmoid(mu), momentum=momentum, form=self.form_for(x.shape[1]))
        out = self.out_proj(self.norm(merge_heads(y)) * F.silu(self.g_proj(x)))
        new = {**P, **{f"{k}_0": v for k, v in P0.items()}, **{f"S_{k}": v for k, v in S.items()},
               "pos": state["pos"] + x.shape[1], "conv": conv}
        return out, new
