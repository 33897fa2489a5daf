"""Residual and norm placements (registry kind ``residual``): how a block joins its sublayers — the
token mixer, then the channel mixer unless it is ``none`` — to the residual stream.

A residual is built per layer with ``registry.build("residual", name, options, d_model=…,
layer_idx=…, n_layers=…)``; the block asks it for ``norm_count(n_sublayers)`` and builds that many
norms of the layer's norm kind (its ``norm1``, ``norm2`` …, the names checkpoints use), calls
``attach(n_sublayers)`` (for a placement's own parameters), and the model calls
``initialize(sublayers)`` after its own weight initialisation (for placements that rescale weights at
init: DeepNorm, depth-scaled init). ``forward(x, sublayers, norms)`` takes the sublayers as functions
of one tensor, so the same code serves training, prefill and one-token steps (any shape ending in
``d_model``).

Class attributes tell the model what else a placement needs: ``ends_in_norm`` (the block's output is
normalised, so the model adds no final norm), ``needs_profiling`` (Admin's initialisation pass) and
``carries_scores`` (RealFormer's attention scores, handed from layer to layer through a
``ScoreCarry``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from trevo.errors import IncompatibleError
from trevo.registry import Paper, register

Sublayer = Callable[[torch.Tensor], torch.Tensor]

# The Linear a sublayer writes into the residual stream through, by the names trevo's components use.
MIXER_OUTPUTS = ("out_proj", "output", "proj_out")
CHANNEL_OUTPUTS = ("down", "value")
_META = dict(category="Normalize_And_Residual", family="residuals")


class Residual(nn.Module):
    """Base of the residual placements; ``forward(x, sublayers)`` applies the block."""

    ends_in_norm: ClassVar[bool] = False
    needs_profiling: ClassVar[bool] = False
    carries_scores: ClassVar[bool] = False
    norms_per_sublayer: ClassVar[int] = 1

    def __init__(self, d_model: int, *, layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__()
        self.d_model, self.layer_idx, self.n_layers = d_model, layer_idx, n_layers

    def norm_count(self, n_sublayers: int) -> int:
        """How many norms this placement puts around ``n_sublayers`` sublayers (the block builds them)."""
        return self.norms_per_sublayer * n_sublayers

    def attach(self, n_sublayers: int) -> None:
        """Build this placement's own parameters for ``n_sublayers`` sublayers (called once by the block)."""
        self.n_sublayers = n_sublayers

    def initialize(self, sublayers: list[nn.Module]) -> None:
        """Rescale the sublayers' weights after the model's initialisation (``sublayers``: mixer, then channel)."""

    def forward(self, x: torch.Tensor, sublayers: list[Sublayer], norms: list[nn.Module]) -> torch.Tensor:
        raise NotImplementedError


@register("residual", "prenorm", paper=Paper("On Layer Normalization in the Transformer Architecture",
                                             "2002.04745", 2020), **_META)
class PreNorm(Residual):
    """Pre-LN (Xiong et al. 2020): x = x + f(norm(x)) for each sublayer; the model ends in a norm."""

    def forward(self, x, sublayers, norms):
        for norm, f in zip(norms, sublayers, strict=True):
            x = x + f(norm(x))
        return x


@register("residual", "postnorm", paper=Paper("Attention Is All You Need", "1706.03762", 2017), **_META)
class PostNorm(Residual):
    """Post-LN (Vaswani et al. 2017, §3.1): x = norm(x + f(x)) for each sublayer."""

    ends_in_norm = True

    def forward(self, x, sublayers, norms):
        for norm, f in zip(norms, sublayers, strict=True):
            x = norm(x + f(x))
        return x


@register("residual", "sandwich", paper=Paper("CogView: Mastering Text-to-Image Generation via Transformers",
                                              "2105.13290", 2021), **_META)
class SandwichNorm(Residual):
    """Sandwich-LN (CogView, Ding et al. 2021): x = x + norm_out(f(norm_in(x))) — a second norm on each sublayer's
    output keeps the residual stream from growing with depth."""

    norms_per_sublayer = 2

    def forward(self, x, sublayers, norms):
        for i, f in enumerate(sublayers):
            x = x + norms[2 * i + 1](f(norms[2 * i](x)))
        return x


@register("residual", "rezero", paper=Paper("ReZero is All You Need: Fast Convergence at Large Depth",
                                            "2003.04887", 2020), **_META)
class ReZero(Residual):
    """ReZero (Bachlechner et al. 2020): x = x + α·f(x) with no norm and one learned scalar α per
    layer, shared by its sublayers (as the authors' Transformer code), initialised to 0: every block
    starts as the identity."""

    norms_per_sublayer = 0

    def __init__(self, d_model: int, *, layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__(d_model, layer_idx=layer_idx, n_layers=n_layers)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x, sublayers, norms):
        for f in sublayers:
            x = x + self.alpha * f(x)
        return x


@register("residual", "skipinit", paper=Paper("Batch Normalization Biases Residual Blocks Towards the Identity "
                                              "Function in Deep Networks", "2002.10444", 2020), **_META)
class SkipInit(Residual):
    """SkipInit (De & Smith 2020): no norm; a learned scalar α at the end of each residual branch,
    x = x + α_i·f_i(x), initialised to ``alpha_init`` (0: the identity at initialisation)."""

    norms_per_sublayer = 0

    def __init__(self, d_model: int, *, layer_idx: int = 0, n_layers: int = 1, alpha_init: float = 0.0) -> None:
        super().__init__(d_model, layer_idx=layer_idx, n_layers=n_layers)
        self.alpha_init = alpha_init

    def attach(self, n_sublayers):
        super().attach(n_sublayers)
        self.alpha = nn.Parameter(torch.full((n_sublayers,), float(self.alpha_init)))

    def forward(self, x, sublayers, norms):
        for i, f in enumerate(sublayers):
            x = x + self.alpha[i] * f(x)
        return x


def output_projection(sublayer: nn.Module, channel: bool) -> nn.Linear | None:
    """The Linear through which ``sublayer`` writes into the residual stream, or None if it names none."""
    for name in CHANNEL_OUTPUTS if channel else MIXER_OUTPUTS:
        module = getattr(sublayer, name, None)
        if isinstance(module, nn.Linear) and module.out_features == getattr(sublayer, "d_model", module.out_features):
            return module
    return None


def _component_name(sublayer: nn.Module) -> str:
    entry = getattr(type(sublayer), "registry_entry", None)
    return repr(entry.name) if entry is not None else type(sublayer).__name__


def _output_projections(sublayers: list[nn.Module], residual: str) -> list[nn.Linear]:
    """Each sublayer's output projection; a clear error for a sublayer with weights but none trevo recognises."""
    found = []
    for i, sublayer in enumerate(sublayers):
        if callable(getattr(sublayer, "output_projections", None)):  # writes through several (a mixture's experts)
            found.extend(sublayer.output_projections())
            continue
        proj = output_projection(sublayer, channel=i > 0)
        if proj is None and any(True for _ in sublayer.parameters()):
            kind, names = ("channel mixer", CHANNEL_OUTPUTS) if i else ("mixer", MIXER_OUTPUTS)
            raise IncompatibleError(
                f"residual {residual!r} rescales the output projection of each sublayer (a Linear named "
                f"{' or '.join(names)}), and {kind} {_component_name(sublayer)} has none; choose another "
                f"residual for this layer (prenorm, postnorm, sandwich, rezero, skipinit, parallel)")
        if proj is not None:
            found.append(proj)
    return found


@register("residual", "depth_scaled", paper=Paper("Language Models are Unsupervised Multitask Learners (GPT-2)",
                                                  "", 2019), **_META)
class DepthScaled(PreNorm):
    """Pre-norm with depth-scaled initialisation (GPT-2 §2.3; Fixup's idea, arXiv:1901.09321): the output
    projection of every residual branch is scaled by 1/√(2N) at init, N = n_layers (2N branches), so
    the residual stream's variance at init does not grow with depth."""

    def initialize(self, sublayers):
        with torch.no_grad():
            for proj in _output_projections(sublayers, "depth_scaled"):
                proj.weight.mul_((2 * self.n_layers) ** -0.5)


def deepnorm_constants(n_layers: int) -> tuple[float, float]:
    """(α, β) of DeepNet (Wang et al. 2022, Fig. 2b) for an encoder-only or decoder-only
    stack of N layers: α = (2N)^(1/4), β = (8N)^(-1/4)."""
    return (2 * n_layers) ** 0.25, (8 * n_layers) ** -0.25


def _value_projections(mixer: nn.Module) -> list[tuple[nn.Linear, slice]]:
    """The value projection of a mixer, where it names one: v_proj, value, or the value half of kv_proj."""
    out = []
    for name in ("v_proj", "value"):
        module = getattr(mixer, name, None)
        if isinstance(module, nn.Linear):
            out.append((module, slice(None)))
    kv = getattr(mixer, "kv_proj", None)
    if isinstance(kv, nn.Linear):
        out.append((kv, slice(kv.out_features // 2, None)))
    return out


@register("residual", "deepnorm", paper=Paper("DeepNet: Scaling Transformers to 1,000 Layers", "2203.00555", 2022),
          **_META)
class DeepNorm(Residual):
    """DeepNorm (Wang et al. 2022, Fig. 2): x = norm(α·x + f(x)) (post-norm with the shortcut up-weighted),
    and at init the channel mixer's weights, the mixer's value projection (where it names one) and its
    output projection scaled by β; α = (2N)^(1/4), β = (8N)^(-1/4) for N = n_layers. The paper's init is
    Xavier-normal with gain β; trevo's LeCun-normal × β equals it for square matrices."""

    ends_in_norm = True

    def __init__(self, d_model: int, *, layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__(d_model, layer_idx=layer_idx, n_layers=n_layers)
        self.alpha, self.beta = deepnorm_constants(n_layers)

    def initialize(self, sublayers):
        _output_projections(sublayers, "deepnorm")  # refuses a sublayer it cannot scale
        with torch.no_grad():
            mixer, channels = sublayers[0], sublayers[1:]
            for proj, rows in _value_projections(mixer):
                proj.weight[rows].mul_(self.beta)
            out = output_projection(mixer, channel=False)
            if out is not None:
                out.weight.mul_(self.beta)
            for channel in channels:
                for module in channel.modules():
                    if isinstance(module, nn.Linear):
                        module.weight.mul_(self.beta)

    def forward(self, x, sublayers, norms):
        for norm, f in zip(norms, sublayers, strict=True):
            x = norm(self.alpha * x + f(x))
        return x


@register("residual", "admin", paper=Paper("Understanding the Difficulty of Training Transformers", "2004.08249",
                                           2020), **_META)
class Admin(Residual):
    """Admin (Liu et al. 2020): post-norm with a learned shortcut scale, x_i = norm(x_{i−1}·ω_i +
    f_i(x_{i−1})), ω_i a vector. Its initialisation is a profiling pass (one forward at init, run by the
    model): following the sublayers in order, ω_1 = 1 and ω_{i+1} = √(Var[x_{i−1}·ω_i] + Var[f_i(x_{i−1})])
    — the authors' code's running form of ω_i = √(Σ_{j<i} Var[f_j]) — so that each sublayer's share of
    the output stays balanced at any depth."""

    ends_in_norm = True
    needs_profiling = True

    def __init__(self, d_model: int, *, layer_idx: int = 0, n_layers: int = 1) -> None:
        super().__init__(d_model, layer_idx=layer_idx, n_layers=n_layers)
        self.profile: list[float] | None = None  # the running ω, shared by the stack during profiling

    def attach(self, n_sublayers):
        super().attach(n_sublayers)
        self.omega = nn.Parameter(torch.ones(n_sublayers, self.d_model))

    def forward(self, x, sublayers, norms):
        for i, (norm, f) in enumerate(zip(norms, sublayers, strict=True)):
            y = f(x)
            if self.profile is not None:
                with torch.no_grad():
                    self.omega[i].fill_(self.profile[0])
                    variance = (x * self.omega[i]).var(unbiased=False) + y.var(unbiased=False)
                    self.profile[0] = math.sqrt(float(variance))
            x = norm(x * self.omega[i] + y)
        return x


@register("residual", "parallel", paper=Paper("PaLM: Scaling Language Modeling with Pathways", "2204.02311", 2022),
          **_META)
class Parallel(Residual):
    """Parallel block (GPT-J; PaLM §2): x = x + mixer(norm(x)) + channel(norm(x)) — both sublayers read the
    same normalised input (one norm), so they can run at once."""

    def norm_count(self, n_sublayers: int) -> int:
        return 1

    def forward(self, x, sublayers, norms):
        h = norms[0](x)
        return x + sum(f(h) for f in sublayers)


class ScoreCarry:
    """The pre-softmax attention scores one RealFormer layer hands to the next attention layer."""

    def __init__(self) -> None:
        self.scores: torch.Tensor | None = None


@register("residual", "realformer", paper=Paper("RealFormer: Transformer Likes Residual Attention", "2012.11747",
                                                2020), **_META)
class RealFormer(PostNorm):
    """RealFormer (He et al. 2020): post-norm blocks whose attention adds the previous attention
    layer's raw scores to its own, softmax(QKᵀ/√d + S_prev)·V, and hands the sum on. Only layers whose
    mixer exposes its scores (softmax attention) take part; the model owns the ``ScoreCarry``."""

    carries_scores = True
