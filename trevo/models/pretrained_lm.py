"""The MetaFormer with the options that published checkpoints need, so that a Hugging Face model
imported into trevo (``trevo import hf``) computes exactly what it computed there.

Same block, same generation contract as ``metaformer`` (``x = x + mixer(norm1(x)); x = x +
channel(norm2(x))``); ``model.options`` adds:

- ``embed_scale`` (default false): read the token embedding as E[token], as GPT-2, Llama, RWKV and
  Mamba do, instead of trevo's √d·E[token] (``trevo.models.init``);
- ``embed_norm``: a norm applied to the embeddings before the first block (RWKV-4's ``ln0``);
- ``final_norm``: the final norm's own spec when it differs from the blocks' (RWKV's ``ln_out``);
- ``mixer_only`` (default false): blocks ``x = x + mixer(norm(x))`` with no channel mixer (Mamba,
  Mamba-2): the channel mixer ``none`` in every block, whatever ``model.channel`` says.
- ``rwkv_rescale_every`` R (default 0, off): Hugging Face's RWKV halves the residual stream after
  every R blocks at inference and divides the blocks' output weights to match. LayerNorm is
  invariant to that scale except through its ε (LN(x/s; ε) = LN(x; ε·s²)), so the same function is
  trevo's unscaled stream with the norms of block b using ε·4^⌊b/R⌋ and the final norm ε·4^⌊L/R⌋.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.init import ScaledEmbedding, init_unit_scale
from trevo.models.layers import NONE, Block, model_options, run_profiling, share_scores
from trevo.models.metaformer import MetaFormer, check_compatible, resolve_max_len
from trevo.models.tokens import output_head
from trevo.registry import Paper, build, register
from trevo.tasks.base import TaskInfo

OPTIONS: dict[str, Any] = {"embed_scale": False, "embed_norm": None, "final_norm": None, "mixer_only": False,
                           "rwkv_rescale_every": 0}
NORM_EPS = {"layernorm": 1e-5, "rmsnorm": 1e-6}


def _options(cfg: ModelConfig) -> dict[str, Any]:
    opts = model_options("pretrained_lm", OPTIONS, cfg.options)
    every = opts["rwkv_rescale_every"]
    if not isinstance(every, int) or every < 0:
        raise IncompatibleError(f"model.options.rwkv_rescale_every must be an integer >= 0, got {every!r}")
    return opts


def _norm(spec: ComponentSpec, d: int, eps_scale: float) -> nn.Module:
    options = dict(spec.options)
    if eps_scale != 1:
        options["eps"] = options.get("eps", NORM_EPS.get(spec.name, 1e-5)) * eps_scale
    return build("norm", spec.name, options, d_model=d)


@register("model", "pretrained_lm", paper=Paper("MetaFormer Is Actually What You Need for Vision", "2111.11418",
                                                 2021), category="Arch", family="metaformer")
class PretrainedLM(MetaFormer):
    """MetaFormer with unscaled embeddings, an embedding norm, a final norm of its own, mixer-only blocks and
    RWKV's rescaling as options: the layout of imported Hugging Face checkpoints."""

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        nn.Module.__init__(self)
        opts = _options(cfg)
        self.cfg, self.info, self.opts = cfg, info, opts
        self.causal = check_compatible(dataclasses.replace(cfg, options={}), info)
        d, every = cfg.d_model, opts["rwkv_rescale_every"]
        self.embed = (ScaledEmbedding if opts["embed_scale"] else nn.Embedding)(info.vocab_size, d)
        spec = opts["embed_norm"]
        self.embed_norm = None if spec is None else _norm(ComponentSpec.parse(spec, "model.options.embed_norm"), d, 1)
        max_len = resolve_max_len(cfg, info)
        position = build("position", cfg.position.name, cfg.position.options, d_model=d, max_len=max_len)
        relative = getattr(position, "applies", "absolute") == "relative"
        self.position = None if relative else position
        if cfg.layers:
            raise IncompatibleError("pretrained_lm repeats one block (an imported checkpoint's); model.layers builds "
                                    "hybrids on model.arch=metaformer")
        self.blocks = nn.ModuleList()
        for i in range(cfg.n_layers):
            context = {"d_model": d, "causal": self.causal, "layer_idx": i, "n_layers": cfg.n_layers,
                       "max_len": max_len, "layout": info.layout or (info.seq_len,),
                       "position": position if relative else None}
            scale = 4.0 ** (i // every) if every else 1.0
            mixer = build("mixer", cfg.mixer.name, cfg.mixer.options, **context)
            channel = NONE if opts["mixer_only"] else cfg.channel
            channel = build("channel", channel.name, channel.options, **context)
            residual = build("residual", cfg.residual.name, cfg.residual.options, d_model=d, layer_idx=i,
                             n_layers=cfg.n_layers)
            self.blocks.append(Block(mixer, channel, residual, lambda scale=scale: _norm(cfg.norm, d, scale),
                                     cfg.dropout))
        self.score_carry = share_scores(self.blocks)
        final = ComponentSpec.parse(opts["final_norm"], "model.options.final_norm") if opts["final_norm"] else cfg.norm
        self.norm = _norm(final, d, 4.0 ** (cfg.n_layers // every) if every else 1.0)
        if self.blocks[-1].residual.ends_in_norm:
            self.norm = nn.Identity()
        self.head = output_head(d, info, self.embed, cfg.tie_embeddings)
        self.apply(init_unit_scale)
        for block in self.blocks:
            block.initialize()
        run_profiling(self, self.blocks, info)

    def _embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        x = super()._embed(tokens, offset)
        return x if self.embed_norm is None else self.embed_norm(x)
