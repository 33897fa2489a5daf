"""Native sparse attention (NSA): compressed, selected and sliding-window branches mixed by gates."""

from __future__ import annotations

import functools

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, kv_heads_of, merge_heads, repeat_kv_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.attention import selected_block_attention
from trevo.ops.banded_attention import banded_attention, banded_attention_quadratic
from trevo.ops.native_sparse_attention import compressed_attention, compression_blocks, select_blocks
from trevo.registry import Paper, register


@register("mixer", "native_sparse_attention",
          paper=Paper("Native Sparse Attention: Hardware-Aligned and Natively Trainable Sparse Attention",
                      "2502.11089", 2025),
          category="MHA/SparseOrLowRank", family="native_sparse_attention", causal=True, bidirectional=False,
          relative_positions=("rope",),
          time="O(T²·d/d_s) compressed and selection scores + O(T·(n·l' + w)·d) selected and sliding",
          memory="O(T·(n·l' + w)) sparse; KV cache O(T·d) + one compressed key/value per block",
          test_options={"block_size": 4, "stride": 2, "select_block_size": 4, "topk": 3, "window": 5,
                        "chunk_size": 3})
class NativeSparseAttention(TokenMixer):
    """NSA (Yuan et al. 2025, eq. 5): o_t = Σ_{c ∈ {cmp, slc, win}} g_t^c · Attn(q_t, K̃_t^c, Ṽ_t^c), the gates
    g_t^c = σ(x_t W_g) per head. Compressed: K̃^cmp_i = φ(k_{i·d+1 … i·d+l}) for blocks of l = ``block_size``
    every d = ``stride`` tokens, here φ a learned per-position, per-channel weighted sum of the block
    (initialised to the mean, fla's choice; the paper's φ is an MLP with intra-block positions).
    Selected: the ``topk`` blocks of l' = ``select_block_size`` tokens ranked by the compressed
    attention's probabilities (summed over overlapping blocks and the query heads of one key head),
    block 0 and the two most recent blocks always kept. Sliding: the last ``window`` tokens.

    One key/value projection serves the three branches (fla's layer; the paper gives each branch its
    own). ``n_kv_heads`` groups query heads (GQA), which share their selection. Forms: ``sparse``
    (selected blocks each with the queries that chose them, banded window, compressed keys in chunks of
    ``chunk_size``) and ``quadratic`` (dense masked references of each branch). The generation state is the KV cache
    and the compressed keys and values (``block_k``, ``block_v``). Accepts RoPE."""

    forms = ("sparse", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, n_kv_heads: int | None = None,
                 head_dim: int | None = None, block_size: int = 32, stride: int = 16, select_block_size: int = 64,
                 topk: int = 16, window: int = 512, chunk_size: int = 256, position: nn.Module | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        n_kv_heads = kv_heads_of(n_heads, n_kv_heads, "native_sparse_attention: ")
        if not 1 <= stride <= block_size or select_block_size < 1 or topk < 1 or window < 1:
            raise IncompatibleError(
                f"native_sparse_attention needs 1 <= stride <= block_size (blocks without gaps), select_block_size "
                f">= 1, topk >= 1 and window >= 1; got stride={stride}, block_size={block_size}, "
                f"select_block_size={select_block_size}, topk={topk}, window={window}")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d = head_dim_of(d_model, n_heads, head_dim)
        self.block_size, self.stride, self.select_block_size = block_size, stride, select_block_size
        self.topk, self.window, self.chunk_size, self.position = topk, window, chunk_size, position
        self.q_proj = nn.Linear(d_model, n_heads * d, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * n_kv_heads * d, bias=False)
        self.compress_k = nn.Parameter(torch.full((block_size, d), 1.0 / block_size))
        self.compress_v = nn.Parameter(torch.full((block_size, d), 1.0 / block_size))
        self.gate_proj = nn.Linear(d_model, 3 * n_heads)
        self.out_proj = nn.Linear(n_heads * d, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        kv = torch.zeros(batch, self.n_kv_heads, 0, self.head_dim, device=device, dtype=dtype)
        return {"k": kv, "v": kv.clone(), "block_k": kv.clone(), "block_v": kv.clone()}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        offset = state["k"].shape[2]
        q = split_heads(self.q_proj(x), self.n_heads)
        k, v = (split_heads(t, self.n_kv_heads) for t in self.kv_proj(x).chunk(2, dim=-1))
        if self.position is not None and hasattr(self.position, "rotate"):
            q, k = self.position.rotate(q, offset), self.position.rotate(k, offset)
        k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
        done = state["block_k"].shape[2]  # compressed blocks already in the state
        block_k = torch.cat([state["block_k"], torch.einsum(
            "bhnld,ld->bhnd", compression_blocks(k, self.block_size, self.stride, done), self.compress_k)], dim=2)
        block_v = torch.cat([state["block_v"], torch.einsum(
            "bhnld,ld->bhnd", compression_blocks(v, self.block_size, self.stride, done), self.compress_v)], dim=2)
        form, tk, groups = self.form_for(x.shape[1]), k.shape[2], self.n_heads // self.n_kv_heads
        heads = functools.partial(repeat_kv_heads, groups=groups)

        o_cmp = compressed_attention(q, heads(block_k), heads(block_v), tk=tk, block_size=self.block_size,
                                     stride=self.stride, form=form, chunk_size=self.chunk_size)
        idx = select_blocks(q.unflatten(1, (self.n_kv_heads, groups)), block_k, tk=tk, block_size=self.block_size,
                            stride=self.stride, select_block_size=self.select_block_size, topk=self.topk)
        o_slc = selected_block_attention(q, heads(k), heads(v), heads(idx), self.select_block_size, form=form)
        window = banded_attention_quadratic if form == "quadratic" else banded_attention
        o_win = window(q, heads(k), heads(v), window=self.window, causal=True)
        g = torch.sigmoid(self.gate_proj(x)).unflatten(-1, (3, self.n_heads)).permute(2, 0, 3, 1)[..., None]
        o = g[0] * o_cmp + g[1] * o_slc + g[2] * o_win
        return self.out_proj(merge_heads(o)), {"k": k, "v": v, "block_k": block_k, "block_v": block_v}
