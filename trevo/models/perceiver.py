"""The Perceiver family: Perceiver, Perceiver IO and Perceiver AR.

- Perceiver (Jaegle et al., arXiv:2103.03206): a learned latent array z ∈ R^{N×D} cross-attends to the
  input array x ∈ R^{M×C} (M ≫ N, cost O(M·N)), then a stack of latent blocks processes z (cost
  O(N²) per block for softmax attention); the pair may repeat, sharing weights across depth. Each
  cross-attend is ``z = z + Attn(LN(z), LN(x)); z = z + MLP(LN(z))``. Classification averages z.
- Perceiver IO (arXiv:2107.14795): the decoder builds one query per output point (from position
  features, modality embeddings or a task index) that cross-attends to the latents, so the output
  size is independent of N and linear in the number of queries.
- Perceiver AR (arXiv:2202.07765): a causal LM whose latents are the last N positions; the
  cross-attention to the whole prefix is causally masked and the latent self-attention is causal.

Inputs: each token is embedded and its position features are **concatenated** (Perceiver §2; adding
is ``model.options.position_mode=add``). The latent stack is built from any registered mixer with the
same ``Block`` as MetaFormer. Architecture options live in ``model.options`` (see ``OPTIONS``).
Multimodal tasks describe their modalities in ``info.modalities``; each modality gets its own
embedding and positions, padded with a learned modality embedding to a common width, and all are
concatenated into one input array (Perceiver IO §3). ``info.task_classes`` asks for one decoder
query per classification target (multi-task decoding). ``info.input_features`` makes the input continuous
elements (points, table cells, pixel patches: ``trevo.models.perceiver_features``), and head ``regress``
decodes ``info.output_dims`` real numbers per output point (optical flow's (u, v) per pixel).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from trevo.components.kv_cache import empty_kv_cache
from trevo.components.multihead import merge_heads, split_heads
from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError, TrevoError
from trevo.models.init import ScaledEmbedding, init_unit_scale
from trevo.models.layers import Block, model_options, refuse_reused_attention, resolve_max_len
from trevo.models.tokens import check_token_ids, output_head
from trevo.ops.cross_attention import cross_attention, cross_attention_weights, windowed_causal_cross_attention
from trevo.registry import Paper, build, get, names, register
from trevo.tasks.base import TaskInfo

OPTIONS: dict[str, dict[str, Any]] = {
    "perceiver": {"n_latents": 32, "latent_dim": None, "embed_dim": None, "cross_heads": 1,
                  "n_cross_attends": 1, "share_weights": True, "position_mode": "concat", "pos_dim": 32,
                  "coordinate_bands": 8, "coordinate_resolution": 16.0},
    "perceiver_ar": {"n_latents": 64, "cross_heads": 1},
}
OPTIONS["perceiver_io"] = {**OPTIONS["perceiver"], "modality_pad": 4}
POSITION_MODES = ("concat", "add")


def _options(arch: str, cfg: ModelConfig) -> dict[str, Any]:
    opts = model_options(arch, OPTIONS[arch], cfg.options)
    if opts.get("position_mode", "concat") not in POSITION_MODES:
        raise IncompatibleError(f"model.options.position_mode must be one of {', '.join(POSITION_MODES)}, "
                                f"got {opts['position_mode']!r}")
    return opts


# ----------------------------------------------------------------------------------------------------------
# Input adapters: token embedding ⊕ position features; multimodal padding.

class PositionFeatures(nn.Module):
    """One position component, used to concatenate features to (or add them to) an input array."""

    def __init__(self, spec: ComponentSpec, *, mode: str, width: int, pos_dim: int, max_len: int,
                 layout: tuple[int, ...]) -> None:
        super().__init__()
        entry = get("position", spec.name)
        if entry.applies == "relative":
            absolute = [n for n in names("position") if get("position", n).applies == "absolute"]
            raise IncompatibleError(f"position {spec.name!r} acts inside attention; the Perceiver adds or "
                                    f"concatenates positions at its input: choose one of {', '.join(absolute)}")
        # A position that can concatenate its features (Fourier features) is told how it is combined.
        combine = {"combine": mode} if "combine" in inspect.signature(entry.factory).parameters else {}
        self.module = build("position", spec.name, {**combine, **spec.options},
                            d_model=width if mode == "add" else pos_dim, max_len=max_len, layout=layout)
        self.none = spec.name == "none"
        if hasattr(self.module, "out_width"):
            self.out_width = self.module.out_width(width)
            self.concat = self.out_width != width
        else:
            self.concat = mode == "concat" and not self.none
            self.out_width = width + pos_dim if self.concat else width

    def features(self, positions: torch.Tensor) -> torch.Tensor | None:
        """``[T, w]``: the raw features alone (used to build decoder queries), or None."""
        if self.none:
            return None
        feats = getattr(self.module, "features", self.module)
        return feats(positions)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.none:
            return x
        if hasattr(self.module, "combine"):
            return self.module.combine(x, positions)
        pos = self.module(positions).to(x.dtype)
        if self.concat:
            return torch.cat([x, pos.expand(x.shape[0], -1, -1)], dim=-1)
        return x + pos


class InputAdapter(nn.Module):
    """Embedding of one modality's tokens combined with its position features: ``[B, T] → [B, T, C]``.
    Without a vocabulary it yields the position features alone (decoder queries)."""

    def __init__(self, vocab: int, embed_dim: int, spec: ComponentSpec, *, mode: str, pos_dim: int,
                 max_len: int, layout: tuple[int, ...]) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed_dim) if vocab else None
        width = embed_dim if vocab else 0
        mode = mode if vocab else "concat"  # a query without content is its position features
        self.position = PositionFeatures(spec, mode=mode, width=width, pos_dim=pos_dim, max_len=max_len,
                                         layout=layout)
        self.width = self.position.out_width

    def forward(self, tokens: torch.Tensor | None, positions: torch.Tensor, batch: int,
                dtype: torch.dtype) -> torch.Tensor:
        if self.embed is not None:
            return self.position(self.embed(tokens), positions)
        feats = self.position.features(positions)
        if feats is None:
            return torch.zeros(batch, positions.shape[0], 0, dtype=dtype, device=positions.device)
        return feats.to(dtype).expand(batch, -1, -1)


class MultimodalAdapter(nn.Module):
    """Each modality: its own embedding and positions, padded to a common width with a learned
    modality embedding; all modalities concatenated along the sequence (Perceiver IO §3).

    ``modalities`` are (name, length, token offset, vocab, layout) in sequence order; a modality's
    tokens are ids in [offset, offset + vocab) of the joint vocabulary."""

    def __init__(self, modalities: tuple, embed_dim: int, spec: ComponentSpec, *, mode: str, pos_dim: int,
                 pad: int, content: bool) -> None:
        super().__init__()
        self.modalities = modalities
        self.adapters = nn.ModuleList(
            InputAdapter(m.vocab if content else 0, embed_dim, spec, mode=mode, pos_dim=pos_dim,
                         max_len=m.length, layout=tuple(m.layout or (m.length,))) for m in modalities)
        self.width = max(a.width for a in self.adapters) + pad
        self.pads = nn.ParameterList(nn.Parameter(torch.randn(self.width - a.width) * 0.02) for a in self.adapters)

    def forward(self, tokens: torch.Tensor | None, batch: int, dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:
        parts, start = [], 0
        for m, adapter, pad in zip(self.modalities, self.adapters, self.pads, strict=True):
            positions = torch.arange(m.length, device=device)
            mine = None if tokens is None else tokens[:, start:start + m.length] - m.offset
            if mine is not None and mine.numel() and (int(mine.min()) < 0 or int(mine.max()) >= m.vocab):
                raise TrevoError(f"modality {m.name!r} has token ids outside [{m.offset}, {m.offset + m.vocab})")
            x = adapter(mine, positions, batch, dtype)
            parts.append(torch.cat([x, pad.to(x.dtype).expand(batch, m.length, -1)], dim=-1))
            start += m.length
        return torch.cat(parts, dim=1)


# ----------------------------------------------------------------------------------------------------------
# Cross-attention and the latent stack.

class CrossAttend(nn.Module):
    """``z = q + Attn(LN(q), LN(kv)); z = z + MLP(LN(z))`` (Perceiver Fig. 1; single head by default).

    Attention projects q to ``q_dim`` and kv from ``kv_dim`` to ``q_dim``: one Nq×Nk score matrix."""

    def __init__(self, q_dim: int, kv_dim: int, *, n_heads: int, norm: ComponentSpec, channel: nn.Module,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if q_dim % n_heads:
            raise IncompatibleError(f"cross-attention: width {q_dim} is not divisible by cross_heads={n_heads}")
        self.n_heads, self.head_dim = n_heads, q_dim // n_heads
        self.q_norm = build("norm", norm.name, norm.options, d_model=q_dim)
        self.kv_norm = build("norm", norm.name, norm.options, d_model=kv_dim)
        self.mlp_norm = build("norm", norm.name, norm.options, d_model=q_dim)
        self.q_proj = nn.Linear(q_dim, q_dim, bias=False)
        self.kv_proj = nn.Linear(kv_dim, 2 * q_dim, bias=False)
        self.out_proj = nn.Linear(q_dim, q_dim, bias=False)
        self.channel = channel
        self.drop = nn.Dropout(dropout)

    def queries(self, q_in: torch.Tensor) -> torch.Tensor:
        return split_heads(self.q_proj(self.q_norm(q_in)), self.n_heads)

    def keys_values(self, kv_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv_proj(self.kv_norm(kv_in)).chunk(2, dim=-1)
        return split_heads(k, self.n_heads), split_heads(v, self.n_heads)

    def finish(self, q_in: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Residual and MLP after the attention output ``o [B, H, Nq, d]``."""
        z = q_in + self.drop(self.out_proj(merge_heads(o)))
        return z + self.drop(self.channel(self.mlp_norm(z)))

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor, *,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        k, v = self.keys_values(kv_in)
        return self.finish(q_in, cross_attention(self.queries(q_in), k, v, key_padding_mask=key_padding_mask))

    def forward_with_weights(self, q_in: torch.Tensor, kv_in: torch.Tensor, *,
                             key_padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward``'s output computed from the explicit attention weights ``[B, H, Nq, Nk]``, and those."""
        k, v = self.keys_values(kv_in)
        weights = cross_attention_weights(self.queries(q_in), k, key_padding_mask=key_padding_mask)
        return self.finish(q_in, weights @ v), weights


def latent_blocks(cfg: ModelConfig, d: int, n_latents: int, causal: bool) -> nn.ModuleList:
    """``cfg.n_layers`` blocks of ``cfg.mixer`` on the latent array, as MetaFormer builds them."""
    refuse_reused_attention(cfg.mixer.name, "the Perceiver's latent stack")
    mixer = get("mixer", cfg.mixer.name)
    if mixer.needs_2d:
        raise IncompatibleError(f"mixer {mixer.name!r} needs a 2-D layout; the latent array is a 1-D set")
    if not (mixer.causal if causal else mixer.bidirectional):
        kind = "causal" if causal else "bidirectional"
        fits = [n for n in names("mixer") if getattr(get("mixer", n), kind)]
        raise IncompatibleError(f"mixer {mixer.name!r} cannot be {kind}, which this Perceiver's latent stack "
                                f"needs; {kind} mixers: {', '.join(fits)}")
    if cfg.layers:
        raise IncompatibleError("model.layers (per-layer specs) builds hybrid metaformer stacks; the Perceiver's "
                                "latent stack repeats model.mixer")
    residual = get("residual", cfg.residual.name)
    if getattr(residual.factory, "needs_profiling", False) or getattr(residual.factory, "carries_scores", False):
        raise IncompatibleError(f"residual {cfg.residual.name!r} needs the metaformer's stack (an initialisation "
                                f"pass or scores carried between layers); choose another for a Perceiver")
    blocks = nn.ModuleList()
    for i in range(cfg.n_layers):
        context = {"d_model": d, "causal": causal, "layer_idx": i, "n_layers": cfg.n_layers,
                   "max_len": n_latents, "layout": (n_latents,), "position": None}

        def make_norm() -> nn.Module:
            return build("norm", cfg.norm.name, cfg.norm.options, d_model=d)

        blocks.append(Block(build("mixer", cfg.mixer.name, cfg.mixer.options, **context),
                            build("channel", cfg.channel.name, cfg.channel.options, **context),
                            build("residual", cfg.residual.name, cfg.residual.options, d_model=d, layer_idx=i,
                                  n_layers=cfg.n_layers), make_norm, cfg.dropout))
    return blocks


def _initialize(model: nn.Module) -> None:
    """trevo's unit-scale init, then each latent block's residual rescaling (DeepNorm, depth-scaled init)."""
    model.apply(init_unit_scale)
    for module in model.modules():
        if isinstance(module, Block):
            module.initialize()


def _channel(cfg: ModelConfig, d: int) -> nn.Module:
    return build("channel", cfg.channel.name, cfg.channel.options, d_model=d)


def _check_fixed_length(cfg: ModelConfig, info: TaskInfo) -> None:
    position, max_len = get("position", cfg.position.name), resolve_max_len(cfg, info)
    if position.fixed_length and info.seq_len > max_len:
        raise IncompatibleError(f"position {position.name!r} holds {max_len} positions but the task's "
                                f"sequences have {info.seq_len}; raise model.max_len")


# ----------------------------------------------------------------------------------------------------------
# Perceiver and Perceiver IO.

class PerceiverEncoder(nn.Module):
    """Input array → latent array: [cross-attend, latent blocks] × n_cross_attends. With
    ``share_weights`` every cross-attend after the first shares one set of weights and all repeats
    share one latent stack (Perceiver §2)."""

    def __init__(self, cfg: ModelConfig, info: TaskInfo, opts: dict[str, Any]) -> None:
        super().__init__()
        d = opts["latent_dim"] or cfg.d_model
        embed = opts["embed_dim"] or cfg.d_model
        self.n_latents, self.repeats = opts["n_latents"], opts["n_cross_attends"]
        if self.repeats < 1:
            raise IncompatibleError(f"model.options.n_cross_attends must be >= 1, got {self.repeats}")
        modalities = getattr(info, "modalities", None)
        self.n_features = getattr(info, "input_features", 0)
        layout = tuple(info.layout) if info.layout else (info.seq_len,)
        if self.n_features:
            from trevo.models.perceiver_features import FeatureAdapter  # it builds on this module's PositionFeatures

            self.inputs: nn.Module = FeatureAdapter(
                self.n_features, embed, cfg.position, coordinate_dims=getattr(info, "coordinate_dims", 0),
                coordinate_bands=opts["coordinate_bands"], coordinate_resolution=opts["coordinate_resolution"],
                unordered=getattr(info, "unordered", False), mode=opts["position_mode"], pos_dim=opts["pos_dim"],
                max_len=resolve_max_len(cfg, info), layout=layout)
        elif modalities:
            self.inputs = MultimodalAdapter(modalities, embed, cfg.position, mode=opts["position_mode"],
                                            pos_dim=opts["pos_dim"], pad=opts.get("modality_pad", 4), content=True)
        else:
            self.inputs = InputAdapter(info.vocab_size, embed, cfg.position, mode=opts["position_mode"],
                                       pos_dim=opts["pos_dim"], max_len=resolve_max_len(cfg, info),
                                       layout=layout)
        self.multimodal = bool(modalities)
        self.latents = nn.Parameter(torch.randn(self.n_latents, d) * 0.02)
        n_cross = min(self.repeats, 2) if opts["share_weights"] else self.repeats
        n_stacks = 1 if opts["share_weights"] else self.repeats
        self.cross = nn.ModuleList(CrossAttend(d, self.inputs.width, n_heads=opts["cross_heads"], norm=cfg.norm,
                                               channel=_channel(cfg, d), dropout=cfg.dropout)
                                   for _ in range(n_cross))
        self.stacks = nn.ModuleList(latent_blocks(cfg, d, self.n_latents, causal=False) for _ in range(n_stacks))
        self.width = d

    def check_inputs(self, tokens: torch.Tensor, vocab_size: int) -> None:
        """Token ids in the vocabulary, or continuous elements of the task's width."""
        if self.n_features:
            self.inputs.check(tokens)
        else:
            check_token_ids(tokens, vocab_size)

    def embed_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        dtype = self.latents.dtype
        if self.n_features:
            return self.inputs(tokens, dtype)
        if self.multimodal:
            return self.inputs(tokens, tokens.shape[0], dtype, tokens.device)
        return self.inputs(tokens, torch.arange(tokens.shape[1], device=tokens.device), tokens.shape[0], dtype)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, M]`` tokens → latents ``[B, N, D]``."""
        return self._encode(tokens, padding_mask, with_weights=False)[0]

    def forward_with_weights(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward``'s latents computed from explicit attention weights, and the weights ``[B, H, N, M]``
        of each cross-attend (what ``trevo inspect attention`` draws)."""
        return self._encode(tokens, padding_mask, with_weights=True)

    def _encode(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None, *,
                with_weights: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.embed_inputs(tokens)
        z, weights = self.latents.expand(tokens.shape[0], -1, -1), []
        for r in range(self.repeats):
            cross = self.cross[min(r, len(self.cross) - 1)]
            if with_weights:
                z, w = cross.forward_with_weights(z, x, key_padding_mask=padding_mask)
                weights.append(w)
            else:
                z = cross(z, x, key_padding_mask=padding_mask)
            for block in self.stacks[min(r, len(self.stacks) - 1)]:
                z = block(z, None, (self.n_latents,))
        return z, weights


class _PerceiverBase(nn.Module):
    arch = "perceiver"
    causal = False

    def _setup(self, cfg: ModelConfig, info: TaskInfo) -> dict[str, Any]:
        self.cfg, self.info = cfg, info
        opts = _options(self.arch, cfg)
        if info.causal == "required":
            raise IncompatibleError(f"{self.arch} has a bidirectional encoder and cannot be a causal language "
                                    f"model; use model.arch=perceiver_ar")
        if cfg.causal == "true":
            raise IncompatibleError(f"{self.arch} is bidirectional; set model.causal=auto or false")
        _check_fixed_length(cfg, info)
        self.encoder = PerceiverEncoder(cfg, info, opts)
        return opts

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@register("model", "perceiver", paper=Paper("Perceiver: General Perception with Iterative Attention",
                                             "2103.03206", 2021), category="Arch", family="perceiver",
          causal=False, time="O(M·N + L·N²)", memory="O(M·N + N²)")
class Perceiver(_PerceiverBase):
    """Perceiver classifier: latents cross-attend to the inputs, latent blocks, mean of the latents → class."""

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        if info.head != "classify" or getattr(info, "task_classes", None):
            raise IncompatibleError(f"perceiver predicts one class per sequence; a task with head {info.head!r} "
                                    f"needs per-output queries: use model.arch=perceiver_io")
        self._setup(cfg, info)
        d = self.encoder.width
        self.norm = build("norm", cfg.norm.name, cfg.norm.options, d_model=d)
        self.head = nn.Linear(d, info.n_classes)
        _initialize(self)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, n_classes]`` logits."""
        self.encoder.check_inputs(tokens, self.info.vocab_size)
        return self.head(self.norm(self.encoder(tokens, padding_mask).mean(dim=1)))


@register("model", "perceiver_io", paper=Paper("Perceiver IO: A General Architecture for Structured Inputs & "
                                                "Outputs", "2107.14795", 2021), category="Arch", family="perceiver",
          causal=False, time="O(M·N + L·N² + O·N)", memory="O(M·N + N² + O·N)")
class PerceiverIO(_PerceiverBase):
    """Perceiver IO: encoder as Perceiver; the decoder's queries (one per output point, built from
    position features and modality embeddings, or one learned query per classification target)
    cross-attend to the latents and a linear head reads each query's output."""

    arch = "perceiver_io"

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        opts = self._setup(cfg, info)
        d = self.encoder.width
        self.task_classes = tuple(getattr(info, "task_classes", None) or ())
        self.per_point = info.head in ("lm", "mlm", "regress")
        # the training loop passes a batch's loss_mask as outputs= to models that say so
        self.decodes_subset = info.head in ("lm", "mlm")
        if self.per_point:
            modalities = getattr(info, "modalities", None)
            if modalities:
                self.query_features: nn.Module = MultimodalAdapter(
                    modalities, 0, cfg.position, mode="concat", pos_dim=opts["pos_dim"],
                    pad=opts["modality_pad"], content=False)
            else:
                layout = tuple(info.layout) if info.layout else (info.seq_len,)
                self.query_features = InputAdapter(0, 0, cfg.position, mode="concat", pos_dim=opts["pos_dim"],
                                                   max_len=resolve_max_len(cfg, info), layout=layout)
            if self.query_features.width == 0:
                raise IncompatibleError("perceiver_io decodes one query per position from its position features; "
                                        "model.position=none gives none: choose fourier or learned")
            self.query_proj = nn.Linear(self.query_features.width, d)
            n_out = getattr(info, "output_dims", 0) if info.head == "regress" else info.vocab_size
        else:
            n_queries = len(self.task_classes) or 1
            self.queries = nn.Parameter(torch.randn(n_queries, d) * 0.02)
            n_out = max(self.task_classes or (info.n_classes,))
        self.decoder = CrossAttend(d, d, n_heads=opts["cross_heads"], norm=cfg.norm, channel=_channel(cfg, d),
                                   dropout=cfg.dropout)
        self.norm = build("norm", cfg.norm.name, cfg.norm.options, d_model=d)
        self.heads = nn.ModuleList(nn.Linear(d, c) for c in (self.task_classes or (n_out,)))
        _initialize(self)

    def output_queries(self, batch: int, outputs: torch.Tensor | None, n_points: int,
                       device: torch.device) -> torch.Tensor:
        """``[B, Q, D]`` decoder queries: per output point, or the learned task queries."""
        if not self.per_point:
            return self.queries.expand(batch, -1, -1)
        dtype = self.query_proj.weight.dtype
        if isinstance(self.query_features, MultimodalAdapter):
            feats = self.query_features(None, batch, dtype, device)
        else:
            feats = self.query_features(None, torch.arange(n_points, device=device), batch, dtype)
        q = self.query_proj(feats)
        if outputs is None:
            return q
        index = outputs if outputs.dim() == 2 else outputs.expand(batch, -1)
        return q.gather(1, index[..., None].expand(-1, -1, q.shape[-1]))

    def decode(self, latents: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Each query cross-attends to the latents on its own: the output at a query never depends on
        which other queries are decoded."""
        y = self.norm(self.decoder(queries, latents))
        if not self.task_classes:
            return self.heads[0](y[:, 0] if not self.per_point else y)
        width = max(self.task_classes)
        logits = [nn.functional.pad(head(y[:, i]), (0, width - head.out_features), value=float("-inf"))
                  for i, head in enumerate(self.heads)]
        return torch.stack(logits, dim=1)

    def decode_masked(self, latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, T, V]`` logits decoded only where ``mask [B, T]`` is True, zero elsewhere: one query per
        masked position (rows with fewer masked positions fill up with unmasked ones, whose outputs are
        dropped), so a masked LM's decoder costs O(#masked·N) instead of O(T·N)."""
        b, t = mask.shape
        n = int(mask.sum(1).max()) if mask.numel() else 0
        index = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :n]  # masked positions first
        y = self.decode(latents, self.output_queries(b, index, t, mask.device))
        y = torch.where(mask.gather(1, index)[..., None], y, torch.zeros((), dtype=y.dtype, device=y.device))
        return y.new_zeros(b, t, y.shape[-1]).scatter(1, index[..., None].expand(-1, -1, y.shape[-1]), y)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None,
                outputs: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, V]`` (lm/mlm heads; ``[B, Q, V]`` at the output points ``outputs`` ``[Q]`` or
        ``[B, Q]`` when given as indices; ``[B, T, V]`` decoded only where ``outputs`` is True, zero
        elsewhere, when given as a boolean mask ``[B, T]``), ``[B, T, output_dims]`` (regress), ``[B, n_classes]``
        (classify) or
        ``[B, n_tasks, max classes]`` (multi-task, classes past a task's own padded with -inf)."""
        self.encoder.check_inputs(tokens, self.info.vocab_size)
        if outputs is not None and not self.per_point:
            raise TrevoError("outputs= selects output points, which only per-position heads (lm, mlm) have")
        if outputs is not None and outputs.dtype == torch.bool and outputs.shape != tokens.shape:
            raise TrevoError(f"a boolean outputs= mask must have the tokens' shape {tuple(tokens.shape)}, "
                             f"got {tuple(outputs.shape)}")
        latents = self.encoder(tokens, padding_mask)
        if outputs is not None and outputs.dtype == torch.bool:
            return self.decode_masked(latents, outputs)
        return self.decode(latents, self.output_queries(tokens.shape[0], outputs, tokens.shape[1], tokens.device))


# ----------------------------------------------------------------------------------------------------------
# Perceiver AR.

@register("model", "perceiver_ar", paper=Paper("General-purpose, long-context autoregressive modeling with "
                                                "Perceiver AR", "2202.07765", 2022), category="Arch",
          family="perceiver", causal=True, bidirectional=False, time="O(T·N + L·T·N)", memory="O(T·N)")
class PerceiverAR(nn.Module):
    """Perceiver AR causal byte LM: the latents are the last N positions, initialised from their own
    input embeddings; they cross-attend causally to the whole prefix, then pass causal latent blocks.

    Every position is scored: positions are grouped into windows [wN, (w+1)N) and each window is one
    Perceiver AR call whose latents are that window (the paper's training step is the last window).
    Generation caches the cross-attention's keys and values and each latent mixer's state, restarting
    the latent state at each window boundary, so ``prefill``/``step`` equal ``forward`` exactly."""

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        self.cfg, self.info = cfg, info
        opts = _options("perceiver_ar", cfg)
        if info.head != "lm":
            raise IncompatibleError(f"perceiver_ar is a causal language model; a task with head {info.head!r} "
                                    f"needs model.arch=perceiver_io (or perceiver)")
        if cfg.causal == "false":
            raise IncompatibleError("perceiver_ar is causal; set model.causal=auto or true")
        _check_fixed_length(cfg, info)
        self.causal = True
        d, self.window = cfg.d_model, opts["n_latents"]
        self.embed = ScaledEmbedding(info.vocab_size, d)
        max_len = resolve_max_len(cfg, info)
        self.position = PositionFeatures(cfg.position, mode="add", width=d, pos_dim=d, max_len=max_len,
                                         layout=(max_len,))
        self.cross = CrossAttend(d, d, n_heads=opts["cross_heads"], norm=cfg.norm, channel=_channel(cfg, d),
                                 dropout=cfg.dropout)
        self.blocks = latent_blocks(cfg, d, self.window, causal=True)
        self.norm = build("norm", cfg.norm.name, cfg.norm.options, d_model=d)
        self.head = output_head(d, info, self.embed, cfg.tie_embeddings)  # info.head is lm (checked above)
        _initialize(self)

    def _embed(self, tokens: torch.Tensor, offset: int) -> torch.Tensor:
        check_token_ids(tokens, self.info.vocab_size)
        positions = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)
        return self.position(self.embed(tokens), positions)

    def _latents(self, z: torch.Tensor) -> torch.Tensor:
        """Causal latent blocks on each window of ``z [B, T, D]`` (windows start at 0)."""
        b, t, d = z.shape
        full = t - t % self.window
        parts = []
        if full:
            w = z[:, :full].reshape(b * (full // self.window), self.window, d)
            for block in self.blocks:
                w = block(w, None, (self.window,))
            parts.append(w.reshape(b, full, d))
        if t > full:
            r = z[:, full:]
            for block in self.blocks:
                r = block(r, None, (t - full,))
            parts.append(r)
        return torch.cat(parts, dim=1)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-byte logits ``[B, T, vocab]``; right padding is never seen by earlier positions."""
        x = self._embed(tokens, 0)
        k, v = self.cross.keys_values(x)
        o = windowed_causal_cross_attention(self.cross.queries(x), k, v, self.window)
        return self.head(self.norm(self._latents(self.cross.finish(x, o))))

    def init_state(self, batch: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        cross = empty_kv_cache((batch, self.cross.n_heads, 0, self.cross.head_dim), device, dtype)
        return {"offset": 0, "layers": {"cross": cross, "latent": self._fresh(batch, device, dtype)}}

    def _fresh(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> list[dict[str, Any]]:
        return [{"mixer": b.mixer.init_state(batch, device, dtype),
                 "channel": b.channel.init_state(batch, device, dtype)} for b in self.blocks]

    def prefill(self, tokens: torch.Tensor, state: dict[str, Any] | None = None
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Run ``tokens`` after the carried state: cross-attention against the cached prefix, latent
        blocks continuing the current window's state (restarted at each window boundary)."""
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device, self.embed.weight.dtype)
        offset = state["offset"]
        x = self._embed(tokens, offset)
        k_new, v_new = self.cross.keys_values(x)
        k = torch.cat([state["layers"]["cross"]["k"], k_new], dim=2)
        v = torch.cat([state["layers"]["cross"]["v"], v_new], dim=2)
        q = self.cross.queries(x)
        latent, outs, start = state["layers"]["latent"], [], 0
        while start < tokens.shape[1]:
            pos = offset + start
            stop = min(tokens.shape[1], start + self.window - pos % self.window)
            if pos % self.window == 0:
                latent = self._fresh(tokens.shape[0], tokens.device, x.dtype)
            o = cross_attention(q[:, :, start:stop], k[:, :, :offset + stop], v[:, :, :offset + stop], causal=True)
            z = self.cross.finish(x[:, start:stop], o)
            new_latent = []
            for block, layer_state in zip(self.blocks, latent, strict=True):
                z, layer_state = block.prefill(z, layer_state)
                new_latent.append(layer_state)
            latent = new_latent
            outs.append(z)
            start = stop
        logits = self.head(self.norm(torch.cat(outs, dim=1)))
        layers = {"cross": {"k": k, "v": v}, "latent": latent}
        return logits, {"offset": offset + tokens.shape[1], "layers": layers}

    def step(self, token: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """token ``[B]`` → logits ``[B, vocab]`` for the next position."""
        logits, state = self.prefill(token[:, None], state)
        return logits[:, 0], state

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
