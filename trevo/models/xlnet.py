"""XLNet's two-stream Transformer (Yang et al. 2019, arXiv:1906.08237, §2.3), the model the
permutation LM objective (``trevo.objectives.permutation_lm``) trains.

Every layer runs one set of weights on two streams: the content stream h (position i sees the positions
up to and including itself in the factorisation order z) and the query stream g (position i sees those
strictly before it, and starts from a learned vector w plus its position: it knows where it predicts,
never what is there). The query stream's last layer predicts x_i. ``forward`` is the content stream
with every position visible (fine-tuning and evaluation: a bidirectional encoder).

Deviations: learned absolute positions instead of Transformer-XL's relative ones, no segment recurrence
(memory) and no relative segment encodings; pre-norm layers (LayerNorm), a GELU FFN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import model_options
from trevo.models.tokens import check_token_ids
from trevo.ops.two_stream import masked_attention, permutation_masks
from trevo.registry import Paper, register
from trevo.tasks.base import TaskInfo

XLNET = Paper("XLNet: Generalized Autoregressive Pretraining for Language Understanding", "1906.08237", 2019)


class StreamLayer(nn.Module):
    """The weights of one pre-norm layer (attention, then FFN) that several streams share: XLNet's two,
    Transcormer's three. Subclasses say which stream's keys and values each stream attends to."""

    def __init__(self, d_model: int, n_heads: int, expand: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.ffn = nn.Sequential(nn.Linear(d_model, expand * d_model), nn.GELU(), nn.Linear(expand * d_model, d_model))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x.transpose(1, 2).flatten(-2))


class TwoStreamLayer(StreamLayer):
    """One layer applied to both streams with shared weights; the query stream's keys and values are the
    content stream's (§2.3)."""

    def forward(self, h: torch.Tensor, g: torch.Tensor | None, content_visible: torch.Tensor,
                query_visible: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = map(self._heads, self.qkv(self.norm1(h)).chunk(3, dim=-1))
        h = h + self._merge(masked_attention(q, k, v, content_visible))
        h = h + self.ffn(self.norm2(h))
        if g is not None:
            q_g = self._heads(F.linear(self.norm1(g), self.qkv.weight[: g.shape[-1]]))
            g = g + self._merge(masked_attention(q_g, k, v, query_visible))
            g = g + self.ffn(self.norm2(g))
        return h, g


class StreamModel(nn.Module):
    """What XLNet's and Transcormer's models share: token embeddings, learned absolute positions, the query
    stream's start vector (XLNet's w), a stack of ``layer`` sharing weights across the streams, a final norm
    and the output head. model.options: n_heads, expand."""

    arch = ""
    layer: type[StreamLayer]

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        options = model_options(self.arch, {"n_heads": 4, "expand": 4}, cfg.options)
        d, n_heads = cfg.d_model, options["n_heads"]
        if d % n_heads:
            raise IncompatibleError(f"model.arch={self.arch}: model.d_model={d} is not a multiple of "
                                    f"model.options.n_heads={n_heads}")
        self.cfg, self.info, self.causal = cfg, info, False
        self.max_len = cfg.max_len or info.seq_len
        self.embed = nn.Embedding(info.vocab_size, d)
        self.position = nn.Embedding(self.max_len, d)
        self.query_start = nn.Parameter(torch.zeros(d))  # XLNet's w: the query stream's first input
        self.layers = nn.ModuleList(self.layer(d, n_heads, options["expand"]) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, info.vocab_size, bias=False)
        for p in (self.embed.weight, self.position.weight):
            nn.init.normal_(p, std=0.02)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def _positions(self, tokens: torch.Tensor) -> torch.Tensor:
        check_token_ids(tokens, self.info.vocab_size)
        if tokens.shape[1] > self.max_len:
            raise IncompatibleError(f"model.arch={self.arch} holds {self.max_len} positions and got "
                                    f"{tokens.shape[1]} tokens; raise model.max_len")
        return self.position(torch.arange(tokens.shape[1], device=tokens.device))


@register("model", "xlnet", paper=XLNET, category="Pretrain", family="xlnet")
class XLNet(StreamModel):
    """Two-stream self-attention (XLNet §2.3): ``two_stream(tokens, order)`` gives the query stream's logits
    under a factorisation order; ``forward`` is the bidirectional content stream. model.options: n_heads,
    expand (model.mixer, channel, norm and position are not read: the layers are XLNet's own)."""

    arch, layer = "xlnet", TwoStreamLayer

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        if info.causal == "required" or info.head == "classify":
            raise IncompatibleError("model.arch=xlnet is a bidirectional encoder trained by the permutation LM "
                                    "(train.objective=permutation_lm) on a masked-LM task (mlm, token_mlm); this "
                                    f"task needs a {'causal' if info.causal == 'required' else 'classification'} "
                                    "model")
        super().__init__(cfg, info)

    def streams(self, tokens: torch.Tensor, order: torch.Tensor | None, padding_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last layer's (content h, query g) ``[B, T, d]``; ``order`` None: one content stream, all visible."""
        pos = self._positions(tokens)
        B, T = tokens.shape
        h = self.embed(tokens) + pos
        if order is None:
            content, query, g = torch.ones(B, T, T, dtype=torch.bool, device=tokens.device), None, None
        else:
            content, query = permutation_masks(order)
            g = (self.query_start + pos).expand(B, T, -1)
        if padding_mask is not None:  # padded keys are never seen
            content = content & padding_mask.bool()[:, None, :]
            query = None if query is None else query & padding_mask.bool()[:, None, :]
        for layer in self.layers:
            h, g = layer(h, g, content, query)
        return h, g

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` of the content stream with every (real) position visible."""
        return self.head(self.norm(self.streams(tokens, None, padding_mask)[0]))

    def two_stream(self, tokens: torch.Tensor, order: torch.Tensor, padding_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """The query stream's logits ``[B, T, vocab]`` under the factorisation order ``[B, T]``: position i's
        logits see only the tokens before it in the order (XLNet's p(x_{z_t} | x_{z<t}), §2.3)."""
        return self.head(self.norm(self.streams(tokens, order, padding_mask)[1]))
