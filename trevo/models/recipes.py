"""Named hybrid recipes: registry ``model`` entries that are layer patterns on the metaformer.

``model.arch: griffin`` (with the model's d_model and n_layers) builds the metaformer whose
``model.layers`` is the recipe's pattern, repeated to the depth; ``model.options`` sets a recipe's
own options (e.g. ``window``). A recipe fixes what its source fixes — which mixer each layer has
and the positions inside them — and leaves the channel mixer, norm and residual to the model, so an
arena compares recipes under the same controlled backbone. Each recipe names its source and what it
simplifies; MoE is issue 17's, so every MoE FFN of a source is the model's dense channel mixer here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from trevo.config import LayerSpec, ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.metaformer import MetaFormer
from trevo.registry import Paper, get, register
from trevo.tasks.base import TaskInfo

# The local-attention window of the recipes that have one: the papers use about half their training
# length (Griffin 1024 of 2048, Samba 2048 of 4096); 64 is half of trevo's 128-token presets.
WINDOW = 64


def _layer(mixer: str, position: str = "none", **options: Any) -> dict[str, Any]:
    return {"mixer": {"name": mixer, **options} if options else mixer, "position": position}


def recipe(name: str, paper: Paper) -> Callable[[Callable[..., list]], Callable[..., list]]:
    """Register the layer-pattern function it decorates as the model ``name`` (family ``hybrid``)."""

    def decorate(pattern: Callable[..., list]) -> Callable[..., list]:
        def factory(cfg: ModelConfig, info: TaskInfo) -> nn.Module:
            return MetaFormer(expand_recipe(cfg), info)

        factory.__doc__, factory.__name__ = pattern.__doc__, f"recipe_{name}"
        factory.pattern = pattern
        register("model", name, paper=paper, category="Arch", family="hybrid", causal=True, bidirectional=False,
                 summary=(pattern.__doc__ or "").strip().split("\n")[0])(factory)
        return pattern

    return decorate


def is_recipe(arch: str) -> bool:
    return hasattr(get("model", arch).factory, "pattern")


def recipe_names() -> list[str]:
    from trevo.registry import names

    return [n for n in names("model") if is_recipe(n)]


def expand_recipe(cfg: ModelConfig) -> ModelConfig:
    """The plain metaformer config of a recipe (``model.arch`` a recipe); any other config unchanged."""
    if not is_recipe(cfg.arch):
        return cfg
    if cfg.layers:
        raise IncompatibleError(f"model.arch {cfg.arch!r} is a recipe that sets model.layers itself; use "
                                f"model.arch=metaformer to give your own layers")
    pattern = get("model", cfg.arch).factory.pattern
    accepted = [p for p in inspect.signature(pattern).parameters]
    unknown = sorted(set(cfg.options) - set(accepted))
    if unknown:
        raise IncompatibleError(f"recipe {cfg.arch!r} takes no option {', '.join(map(repr, unknown))} in "
                                f"model.options; its options are: {', '.join(accepted) or '(none)'}")
    layers = [LayerSpec.parse(entry, f"recipe {cfg.arch}[{i}]") for i, entry in enumerate(pattern(**cfg.options))]
    return dataclasses.replace(cfg, arch="metaformer", layers=layers, options={})


@recipe("jamba", Paper("Jamba: A Hybrid Transformer-Mamba Language Model", "2403.19887", 2024))
def jamba() -> list:
    """Jamba-style: 1 attention : 7 Mamba, the attention layer in the middle of each group of 8
    (attn_layer_offset 4), no position encoding anywhere (Lieber et al. 2024, §2-3). Simplified: a
    dense channel mixer (the model's) in every layer instead of MoE in every other one, MHA instead of
    GQA, and Mamba-1 without the RMSNorm Jamba adds inside it."""
    return ["mamba"] * 4 + [_layer("softmax_attention")] + ["mamba"] * 3


@recipe("samba", Paper("Samba: Simple Hybrid State Space Models for Efficient Unlimited Context Language "
                       "Modeling", "2406.07522", 2024))
def samba(window: int = WINDOW) -> list:
    """Samba-style: Mamba and rotary sliding-window attention alternating, each followed by the
    model's channel mixer (SwiGLU in the paper; Ren et al. 2024, §2). Simplified: the window (2048 in
    the paper) is ``window``; multi-head rather than the paper's grouped-query SWA."""
    return ["mamba", _layer("sliding_window_attention", "rope", window=window)]


@recipe("griffin", Paper("Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language "
                         "Models", "2402.19427", 2024))
def griffin(window: int = WINDOW) -> list:
    """Griffin-style: two RG-LRU recurrent blocks then one rotary local-attention block, repeated
    (De et al. 2024, §2). Simplified: multi-head instead of multi-query local attention, the window
    (1024 in the paper) is ``window``, and the MLP is the model's channel mixer (a GeGLU of expansion
    3 in the paper)."""
    return ["rg_lru", "rg_lru", _layer("sliding_window_attention", "rope", window=window)]


@recipe("hawk", Paper("Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language "
                      "Models", "2402.19427", 2024))
def hawk() -> list:
    """Hawk: every layer an RG-LRU recurrent block (De et al. 2024, §2), the MLP the model's channel mixer."""
    return ["rg_lru"]


@recipe("qwen3_next", Paper("Gated Attention for Large Language Models: Non-linearity, Sparsity, and "
                            "Attention-Sink-Free (the gated attention of Qwen3-Next)", "2505.06708", 2025))
def qwen3_next() -> list:
    """Qwen3-Next-style: three Gated DeltaNet layers (arXiv:2412.06464) then one gated softmax attention
    layer (sigmoid output gate, QK-norm, RoPE), repeated (Qwen team, 2025). Simplified: dense channel
    mixer instead of MoE, full instead of partial RoPE, MHA instead of GQA, the model's norm instead of
    zero-centred weight-decayed norms."""
    gated = _layer("softmax_attention", "rope", output_gate=True, qk_norm=True)
    return ["gated_deltanet"] * 3 + [gated]


@recipe("mad_striped", Paper("Mechanistic Design and Scaling of Hybrid Architectures", "2403.17844", 2024))
def mad_striped() -> list:
    """MAD's striped hybrid (Poli et al. 2024): two sequence mixers interleaved layer by layer (striped,
    not stacked) — Hyena and softmax attention 1 : 1 — each followed by the model's channel mixer.
    Simplified: one fixed ratio and order (MAD searches both) and a dense channel mixer."""
    return ["hyena", _layer("softmax_attention", "rope")]


@recipe("kimi_linear", Paper("Kimi Linear: An Expressive, Efficient Attention Architecture", "2510.26692", 2025))
def kimi_linear() -> list:
    """Kimi-Linear-style: three linear-attention layers then one global attention layer without position
    encoding (NoPE), repeated. Simplified: Kimi Delta Attention (a channel-wise gated delta rule) is
    trevo's Gated DeltaNet (a head-wise gate), MLA is multi-head attention, MoE is the dense channel mixer."""
    return ["gated_deltanet"] * 3 + [_layer("softmax_attention")]


@recipe("minimax01", Paper("MiniMax-01: Scaling Foundation Models with Lightning Attention", "2501.08313", 2025))
def minimax01() -> list:
    """MiniMax-01-style: seven lightning-attention layers then one softmax attention layer, repeated.
    Simplified: lightning attention (an I/O-aware kernel for TransNormer-style linear attention) is
    trevo's transnormer_norm (TransNormer's NormAttention) computed in plain torch, full RoPE on the
    softmax layers, and the dense channel mixer instead of MoE."""
    return ["transnormer_norm"] * 7 + [_layer("softmax_attention", "rope")]
