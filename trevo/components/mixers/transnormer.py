"""TransNormer's two token mixers (Qin et al., "The Devil in Linear Transformer", arXiv:2210.10340):
NormAttention (linear attention without the denominator, normalised output; upper layers) and
DiagAttention (softmax attention inside non-overlapping blocks; lower layers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import FusedQKVHeads, merge_heads
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.registry import Paper, register

TRANSNORMER = Paper("The Devil in Linear Transformer", "2210.10340", 2022)


@register("mixer", "transnormer_norm", paper=TRANSNORMER, category="MHA/RightProduct", family="transnormer",
          causal=True, bidirectional=True, recurrent=True,
          time="O(T·C·d + T·d²/H) chunk, O(T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 4})
class NormAttention(FusedQKVHeads, TokenMixer):
    """NormAttention (§4.1): O = RMSNorm(φ(Q)(φ(K)ᵀ V)) with φ = 1 + elu: linear attention without
    the scaling denominator (whose unbounded gradients the paper identifies), the output normalised
    instead. Causal: o_t = RMSNorm(φ(q_t)ᵀ Σ_{i<=t} φ(k_i) v_iᵀ); bidirectional: the sum over all real tokens."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, chunk_size: int = 64,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.chunk_size = chunk_size
        self.init_heads(d_model, n_heads, out_proj=False)
        self.norm = nn.RMSNorm(d_model, eps=1e-6)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, x, padding_mask=None):
        q, k, v = self.qkv_heads(x)
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if padding_mask is not None:
            k = k * padding_mask[:, None, :, None].to(k.dtype)
        return q, k, v

    def _out(self, o):
        return self.out_proj(self.norm(merge_heads(o)))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._qkv(x, padding_mask)
        return self._out(q @ (k.transpose(-1, -2) @ v))

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._qkv(x)
        o, S = linear_recurrence(q, k, v, initial_state=state["S"], form=self.form_for(x.shape[1]),
                                 chunk_size=self.chunk_size)
        return self._out(o), {"S": S}


@register("mixer", "transnormer_diag", paper=TRANSNORMER, category="MHA/LocalGlobal", family="transnormer",
          causal=True, bidirectional=True, recurrent=True,
          time="O(T·w·d)", memory="O(w·d) cache (the current block)", test_options={"block_size": 4})
class DiagAttention(FusedQKVHeads, TokenMixer):
    """DiagAttention (§4.2): softmax attention restricted to non-overlapping blocks of ``block_size``
    tokens (a block-diagonal attention matrix; causal inside the block when causal). Its generation
    state is the keys and values of the current block, so it never exceeds ``block_size`` tokens."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, block_size: int = 64) -> None:
        super().__init__(d_model, causal=causal)
        self.block_size = block_size
        self.init_heads(d_model, n_heads)

    def _attend(self, q, k, v, k_valid):
        """Softmax inside each block. The keys ``[B, H, Tk, D]`` start at a block boundary; the queries
        are the last Tq of their positions. Blocks are reshaped apart, so scores cost O(T·w·d) time and
        O(T·w) memory instead of a masked T × T matrix."""
        B, H, Tk, D = k.shape
        w, Tq = self.block_size, q.shape[2]
        n = -(-Tk // w) * w  # Tk rounded up to whole blocks
        q = F.pad(q, (0, 0, Tk - Tq, n - Tk))  # each query beside its own key
        k, v = (F.pad(t, (0, 0, 0, n - Tk)) for t in (k, v))
        allowed = torch.zeros(B, n, dtype=torch.bool, device=k.device)
        allowed[:, :Tk] = k_valid
        allowed = allowed.view(B, 1, n // w, 1, w)
        if self.causal:
            allowed = allowed & torch.ones(w, w, dtype=torch.bool, device=k.device).tril()

        def blocks(t):
            return t.reshape(B, H, n // w, w, D)

        scores = (blocks(q) @ blocks(k).transpose(-1, -2)) * D ** -0.5  # [B, H, blocks, w, w]
        attn = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0)
        o = (attn @ blocks(v)).reshape(B, H, n, D)[:, :, Tk - Tq:Tk]
        return self.project_out(o)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if padding_mask is None else padding_mask
        return self._attend(q, k, v, valid.bool())

    def init_state(self, batch: int, device, dtype) -> State:
        shape = (batch, self.n_heads, self.block_size, self.head_dim)
        zeros = torch.zeros(shape, device=device, dtype=dtype)
        return {"k": zeros, "v": zeros.clone(),
                "pos": torch.zeros((), device=device, dtype=torch.long)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, _ = x.shape
        w = self.block_size
        start = int(state["pos"])
        held = start % w  # tokens of the current block already in the cache
        q, k, v = self.qkv_heads(x)
        k_all = torch.cat([state["k"][:, :, :held].to(k.dtype), k], dim=2)
        v_all = torch.cat([state["v"][:, :, :held].to(v.dtype), v], dim=2)
        valid = torch.ones(B, held + T, dtype=torch.bool, device=x.device)
        y = self._attend(q, k_all, v_all, valid)
        end = start + T
        keep = end - (end // w) * w  # tokens of the last (open) block
        pad = (0, 0, 0, w - keep)
        new_k = F.pad(k_all[:, :, k_all.shape[2] - keep:], pad)
        new_v = F.pad(v_all[:, :, v_all.shape[2] - keep:], pad)
        return y, {"k": new_k, "v": new_v, "pos": state["pos"] + T}
