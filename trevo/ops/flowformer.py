"""Flow-Attention (Wu et al., "Flowformer: Linearizing Transformers with Conservation Flows",
arXiv:2202.06258, section 3.2, eq. 5-10; the paper's code ``Flow_Attention`` and
``Flow_Attention_Causal``). Attention is a flow network: values flow from sources (keys) to sinks
(queries) with capacities φ(q_i)·φ(k_j), φ = sigmoid. With the incoming flow of each sink and the
outgoing flow of each source,

    I_i = φ(q_i)·Σ_j φ(k_j),   O_j = φ(k_j)·Σ_i φ(q_i),

fixing each source's outgoing flow to 1 (and each sink's incoming flow to 1) gives the conserved flows

    Î_i = φ(q_i)·Σ_j φ(k_j)/O_j,   Ô_j = φ(k_j)·Σ_i φ(q_i)/I_i,

and the output is aggregated linearly, with competition among sources and allocation to sinks:

    y_i = sigmoid(Î_i·n/m) · (φ(q_i)/I_i)·Σ_j φ(k_j) (softmax(Ô)_j·m) v_jᵀ.

Causally each sum runs over the prefix and the flows are rescaled by the number of tokens in it
(I_i, O_j multiplied by i, j; Î, Ô divided by them; the competition softmax is a running one); every
quantity is a prefix sum, so the state is constant. As in the paper's code, ε = 1e-6 is added to φ and
the sums, and Ô is clipped to [−1, 1] before the softmax.

Layout: φ(q), φ(k) ``[B, H, T, D]``, v ``[B, H, T, Dv]``; ``key_padding_mask`` ``[B, T]``.
"""

from __future__ import annotations

import torch

STATE_KEYS = ("q_sum", "k_sum", "k_out_sum", "q_in_sum", "exp_sum", "S")


def flow_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, eps: float = 1e-6,
                   key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bidirectional flow attention; q and k are φ-mapped (non-negative)."""
    n_q = n_k = q.shape[-2]
    if key_padding_mask is not None:
        real = key_padding_mask[:, None, :, None].to(q.dtype)
        q, k, v = q * real, k * real, v * real
        n_q = n_k = key_padding_mask.sum(-1).to(q.dtype)[:, None, None]  # [B, 1, 1]
    incoming = 1.0 / ((q + eps) * (k.sum(2, keepdim=True) + eps)).sum(-1)  # 1 / I_i  [B, H, T]
    outgoing = 1.0 / ((k + eps) * (q.sum(2, keepdim=True) + eps)).sum(-1)  # 1 / O_j
    if key_padding_mask is not None:  # padded tokens are neither sources nor sinks (1/0 with ε = 0)
        real = key_padding_mask.bool()[:, None, :]
        incoming, outgoing = (torch.where(real, f, torch.zeros_like(f)) for f in (incoming, outgoing))
    sink = ((q + eps) * ((k * outgoing[..., None]).sum(2, keepdim=True) + eps)).sum(-1)  # Î
    source = ((k + eps) * ((q * incoming[..., None]).sum(2, keepdim=True) + eps)).sum(-1).clamp(-1.0, 1.0)  # Ô
    allocation = torch.sigmoid(sink * (n_q / n_k))
    if key_padding_mask is not None:
        source = source.masked_fill(~key_padding_mask.bool()[:, None, :], float("-inf"))
    competition = torch.softmax(source, dim=-1) * n_k
    kv = k.transpose(-1, -2) @ (v * competition[..., None])  # [B, H, D, Dv]
    return ((q * incoming[..., None]) @ kv) * allocation[..., None]


def causal_flow_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: dict[str, torch.Tensor],
                          pos: torch.Tensor, *, eps: float = 1e-6) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Causal flow attention after the prefix summarised by ``state`` (its sums) of ``pos`` tokens."""
    count = pos.to(q.dtype) + torch.arange(1, q.shape[2] + 1, device=q.device, dtype=q.dtype)  # i + 1
    k_sum = state["k_sum"][:, :, None] + k.cumsum(2)
    q_sum = state["q_sum"][:, :, None] + q.cumsum(2)
    incoming = count / ((q + eps) * (k_sum + eps)).sum(-1)  # (i+1) / I_i
    outgoing = count / ((k + eps) * (q_sum + eps)).sum(-1)
    k_out = state["k_out_sum"][:, :, None] + (k * outgoing[..., None]).cumsum(2)
    q_in = state["q_in_sum"][:, :, None] + (q * incoming[..., None]).cumsum(2)
    sink = ((q + eps) * (k_out + eps)).sum(-1) / count
    source = (((k + eps) * (q_in + eps)).sum(-1) / count).clamp(-1.0, 1.0)
    allocation = torch.sigmoid(sink)
    e = torch.exp(source)  # bounded: Ô is clipped to [−1, 1]
    exp_sum = state["exp_sum"][:, :, None] + e.cumsum(-1)
    competition = e / exp_sum * count
    S = state["S"][:, :, None] + (k[..., :, None] * (v * competition[..., None])[..., None, :]).cumsum(2)
    y = ((q * (incoming / count)[..., None])[..., None, :] @ S)[..., 0, :] * allocation[..., None]
    new = {"q_sum": q_sum[:, :, -1], "k_sum": k_sum[:, :, -1], "k_out_sum": k_out[:, :, -1],
           "q_in_sum": q_in[:, :, -1], "exp_sum": exp_sum[:, :, -1], "S": S[:, :, -1]}
    return y, new
