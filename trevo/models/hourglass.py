"""Hourglass: a Transformer that shortens the sequence in its middle layers (Nawrot, Tworkowski,
Tyrolski, Kaiser, Wu, Szegedy, Michalewski 2022, "Hierarchical Transformers Are More Efficient
Language Models", arXiv:2110.13711, §3, Algorithm 1).

    x = pre-blocks(embed(tokens))                       # full rate
    s = inner-blocks(shorten(shift(x, k − 1)))           # T/k tokens: linear pooling of k neighbours
    x = post-blocks(x + upsample(s))                     # linear upsampling back to T, residual

The right shift by k − 1 before pooling keeps the causal LM causal: shortened token j pools inputs
up to position j·k, and it is added back at positions j·k … j·k + k − 1 only (the paper's fix of the
information leak of naive shortening). Bidirectional tasks pool without the shift. Every block is
trevo's MetaFormer block with the configured mixer, channel mixer and norm.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.init import ScaledEmbedding, init_unit_scale
from trevo.models.layers import Block, model_options, refuse_reused_attention
from trevo.models.metaformer import check_compatible, resolve_max_len
from trevo.models.tokens import apply_head, attach_vocabulary, embed_tokens, output_head
from trevo.registry import Paper, build, get, register
from trevo.tasks.base import TaskInfo

OPTIONS = {"shorten_factor": 2, "pre_layers": 1, "post_layers": 1}


@register("model", "hourglass", paper=Paper("Hierarchical Transformers Are More Efficient Language Models",
                                             "2110.13711", 2022),
          category="Arch", family="hourglass", causal=True, bidirectional=True, time="O(L·cost(T/k) + 2·cost(T))",
          memory="O(T·d)")
class Hourglass(nn.Module):
    """Hourglass (Nawrot et al. 2022, Algorithm 1): ``pre_layers`` blocks at full rate, causal shift by
    k − 1 and linear pooling of k tokens into one (k = ``shorten_factor``), ``model.n_layers`` blocks on
    the shortened sequence, linear upsampling (one token → k) added to the pre-blocks' output, then
    ``post_layers`` blocks at full rate. Options in ``model.options``. Generation is by re-running
    the prefix (``trevo generate --mode parallel``): the shortened blocks have no per-token state."""

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        opts = model_options("hourglass", OPTIONS, cfg.options)
        k = opts["shorten_factor"]
        if not isinstance(k, int) or k < 1 or opts["pre_layers"] < 0 or opts["post_layers"] < 0:
            raise IncompatibleError(f"hourglass needs an integer shorten_factor >= 1 and pre/post_layers >= 0, got "
                                    f"{opts}")
        refuse_reused_attention(cfg.mixer.name, "hourglass")
        if get("mixer", cfg.mixer.name).needs_2d:
            raise IncompatibleError(f"hourglass shortens the sequence in 1-D; mixer {cfg.mixer.name!r} needs a 2-D "
                                    f"layout (use model.arch=metaformer)")
        if cfg.layers:
            raise IncompatibleError("hourglass repeats one block (model.mixer, model.channel, model.norm); per-layer "
                                    "specs (model.layers) need model.arch=metaformer")
        residual_entry = get("residual", cfg.residual.name)
        if residual_entry.factory.needs_profiling or residual_entry.factory.carries_scores:
            raise IncompatibleError(f"hourglass does not support model.residual={cfg.residual.name!r} (an "
                                    f"initialisation pass or scores carried between layers); use prenorm, postnorm, "
                                    f"sandwich, rezero, skipinit, depth_scaled, deepnorm or parallel")
        self.cfg, self.info, self.k = cfg, info, k
        self.causal = check_compatible(dataclasses.replace(cfg, options={}), info)
        d = cfg.d_model
        self.embed = ScaledEmbedding(info.vocab_size, d)
        max_len = resolve_max_len(cfg, info)
        position = build("position", cfg.position.name, cfg.position.options, d_model=d, max_len=max_len)
        relative = getattr(position, "applies", "absolute") == "relative"
        self.position = None if relative else position
        attach_vocabulary(self.position, info.vocab_size)
        depth = opts["pre_layers"] + cfg.n_layers + opts["post_layers"]

        def blocks(count: int, first: int, length: int) -> nn.ModuleList:
            out = nn.ModuleList()
            for i in range(first, first + count):
                context = {"d_model": d, "causal": self.causal, "layer_idx": i, "n_layers": depth,
                           "max_len": length, "layout": (length,), "position": position if relative else None}
                residual = build("residual", cfg.residual.name, cfg.residual.options, d_model=d, layer_idx=i,
                                 n_layers=depth)
                out.append(Block(build("mixer", cfg.mixer.name, cfg.mixer.options, **context),
                                 build("channel", cfg.channel.name, cfg.channel.options, **context),
                                 residual, lambda: build("norm", cfg.norm.name, cfg.norm.options, d_model=d),
                                 cfg.dropout))
            return out

        short_len = -(-max_len // k)
        self.pre = blocks(opts["pre_layers"], 0, max_len)
        self.inner = blocks(cfg.n_layers, opts["pre_layers"], short_len)
        self.post = blocks(opts["post_layers"], opts["pre_layers"] + cfg.n_layers, max_len)
        self.shorten = nn.Linear(k * d, d)  # linear pooling of k neighbours
        self.upsample = nn.Linear(d, k * d)  # linear upsampling of one token into k
        ends_in_norm = self.post[-1].residual.ends_in_norm if len(self.post) else self.inner[-1].residual.ends_in_norm
        self.norm = nn.Identity() if ends_in_norm else build("norm", cfg.norm.name, cfg.norm.options, d_model=d)
        self.head = output_head(d, info, self.embed, cfg.tie_embeddings)
        self.apply(init_unit_scale)
        for block in (*self.pre, *self.inner, *self.post):
            block.initialize()

    def _shortened(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ⌈T/k⌉, d]: the causal shift by k − 1 (causal models), zero-padding to a multiple of k, pooling."""
        B, T, d = x.shape
        k = self.k
        if self.causal:
            x = F.pad(x, (0, 0, k - 1, 0))[:, :T]
        n = -(-T // k)
        return self.shorten(F.pad(x, (0, 0, 0, n * k - T)).reshape(B, n, k * d))

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = embed_tokens(tokens, self.embed, self.position, self.info.vocab_size)
        T = tokens.shape[1]
        for block in self.pre:
            x = block(x, padding_mask, (T,))
        s = self._shortened(x if padding_mask is None else x * padding_mask[..., None].to(x.dtype))
        short_mask = None
        if padding_mask is not None and not self.causal:  # a shortened token is real if any of its k is
            n = s.shape[1]
            short_mask = F.pad(padding_mask, (0, n * self.k - T)).reshape(-1, n, self.k).any(-1)
        for block in self.inner:
            s = block(s, short_mask, (s.shape[1],))
        up = self.upsample(s).reshape(s.shape[0], -1, x.shape[-1])[:, :T]
        x = x + up
        for block in self.post:
            x = block(x, padding_mask, (T,))
        return apply_head(self.head, self.info, self.norm(x), padding_mask)

    def prefill(self, tokens: torch.Tensor, state: Any = None) -> Any:
        raise IncompatibleError("hourglass keeps no per-token generation state (its shortened blocks advance "
                                "every k tokens); generate with --mode parallel")

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
