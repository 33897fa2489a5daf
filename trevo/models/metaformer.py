"""MetaFormer: one block with the token mixer as a plug-in (Yu et al., "MetaFormer Is Actually What
You Need for Vision", arXiv:2111.11418), with heads for causal LM, masked LM and classification.

Pre-norm block: ``x = x + mixer(norm1(x)); x = x + channel(norm2(x))``;
post-norm block: ``x = norm1(x + mixer(x)); x = norm2(x + channel(x))``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trevo.components.base import State
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.init import ScaledEmbedding, init_unit_scale
from trevo.models.tokens import check_token_ids
from trevo.registry import Paper, build, create, get, names, register
from trevo.tasks.base import TaskInfo

BLOCKS = ("prenorm", "postnorm")


class Block(nn.Module):
    def __init__(self, mixer: nn.Module, channel: nn.Module, norm1: nn.Module, norm2: nn.Module,
                 placement: str, dropout: float) -> None:
        super().__init__()
        self.mixer, self.channel, self.norm1, self.norm2 = mixer, channel, norm1, norm2
        self.prenorm = placement == "prenorm"
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        if self.prenorm:
            x = x + self.drop(self.mixer(self.norm1(x), padding_mask=padding_mask, layout=layout))
            return x + self.drop(self.channel(self.norm2(x)))
        x = self.norm1(x + self.drop(self.mixer(x, padding_mask=padding_mask, layout=layout)))
        return self.norm2(x + self.drop(self.channel(x)))

    def prefill(self, x: torch.Tensor, state: dict[str, State]) -> tuple[torch.Tensor, dict[str, State]]:
        if self.prenorm:
            y, ms = self.mixer.prefill(self.norm1(x), state["mixer"])
            x = x + y
            y, cs = self.channel.prefill(self.norm2(x), state["channel"])
            return x + y, {"mixer": ms, "channel": cs}
        y, ms = self.mixer.prefill(x, state["mixer"])
        x = self.norm1(x + y)
        y, cs = self.channel.prefill(x, state["channel"])
        return self.norm2(x + y), {"mixer": ms, "channel": cs}

    def step(self, x: torch.Tensor, state: dict[str, State]) -> tuple[torch.Tensor, dict[str, State]]:
        if self.prenorm:
            y, ms = self.mixer.step(self.norm1(x), state["mixer"])
            x = x + y
            y, cs = self.channel.step(self.norm2(x), state["channel"])
            return x + y, {"mixer": ms, "channel": cs}
        y, ms = self.mixer.step(x, state["mixer"])
        x = self.norm1(x + y)
        y, cs = self.channel.step(x, state["channel"])
        return self.norm2(x + y), {"mixer": ms, "channel": cs}


def resolve_causal(cfg: ModelConfig, info: TaskInfo) -> bool:
    """Whether the model is causal: forced by LM tasks, else bidirectional where the mixer allows."""
    mixer = get("mixer", cfg.mixer.name)
    if cfg.causal not in ("auto", "true", "false"):
        raise IncompatibleError(f"model.causal must be auto, true or false, got {cfg.causal!r}")
    wanted = {"auto": None, "true": True, "false": False}[cfg.causal]
    if info.causal == "required":
        if wanted is False:
            raise IncompatibleError("a causal language model needs model.causal=auto or true")
        wanted = True
    elif info.causal == "forbidden":
        if wanted is True:
            raise IncompatibleError("a masked LM sees both sides; use model.causal=auto or false")
        wanted = False
    elif wanted is None:
        wanted = not mixer.bidirectional
    if wanted and not mixer.causal:
        alternatives = [e.name for e in _mixers() if e.causal]
        raise IncompatibleError(f"mixer {mixer.name!r} is bidirectional only and cannot be used causally "
                                f"(this task needs a causal model); causal mixers: {', '.join(alternatives)}")
    if not wanted and not mixer.bidirectional:
        alternatives = [e.name for e in _mixers() if e.bidirectional]
        raise IncompatibleError(f"mixer {mixer.name!r} is causal only and this task needs a bidirectional "
                                f"model; bidirectional mixers: {', '.join(alternatives)}")
    return wanted


def _mixers():
    return [get("mixer", n) for n in names("mixer")]


def check_compatible(cfg: ModelConfig, info: TaskInfo) -> bool:
    """Every build-time check, without building: returns whether the model will be causal."""
    if cfg.options:
        raise IncompatibleError(f"model.options {sorted(cfg.options)} are not used by the metaformer; they are "
                                f"architecture options of perceiver, perceiver_io and perceiver_ar")
    if cfg.block not in BLOCKS:
        raise IncompatibleError(f"model.block must be one of {', '.join(BLOCKS)}, got {cfg.block!r}")
    for kind, spec in (("channel", cfg.channel), ("norm", cfg.norm), ("position", cfg.position)):
        get(kind, spec.name)
    causal = resolve_causal(cfg, info)
    mixer, position = get("mixer", cfg.mixer.name), get("position", cfg.position.name)
    if position.applies == "relative" and cfg.position.name not in mixer.relative_positions:
        absolute = [n for n in names("position") if get("position", n).applies == "absolute"]
        accepts = ", ".join(mixer.relative_positions) or "no relative position"
        raise IncompatibleError(
            f"position {cfg.position.name!r} acts inside the token mixer and mixer {mixer.name!r} accepts "
            f"{accepts}; choose an absolute position ({', '.join(absolute)}) or another mixer")
    if mixer.needs_2d and (info.layout is None or len(info.layout) != 2):
        raise IncompatibleError(f"mixer {mixer.name!r} needs a 2-D layout (an image task); "
                                f"this task's layout is {info.layout}")
    max_len = resolve_max_len(cfg, info)
    for entry in (position, mixer):
        if entry.fixed_length and info.seq_len > max_len:
            raise IncompatibleError(f"{entry.kind} {entry.name!r} holds {max_len} positions but the task's "
                                    f"sequences have {info.seq_len}; raise model.max_len")
    return causal


def resolve_max_len(cfg: ModelConfig, info: TaskInfo) -> int:
    return info.seq_len if cfg.max_len is None else cfg.max_len


@register("model", "metaformer", paper=Paper("MetaFormer Is Actually What You Need for Vision",
                                              "2111.11418", 2021), category="Arch", family="metaformer")
class MetaFormer(nn.Module):
    """Embedding (+ absolute position) → N blocks → final norm → head (lm, mlm or classify)."""

    def __init__(self, cfg: ModelConfig, info: TaskInfo) -> None:
        super().__init__()
        self.cfg, self.info = cfg, info
        self.causal = check_compatible(cfg, info)
        d = cfg.d_model
        self.embed = ScaledEmbedding(info.vocab_size, d)
        max_len = resolve_max_len(cfg, info)
        position = build("position", cfg.position.name, cfg.position.options, d_model=d, max_len=max_len)
        relative = getattr(position, "applies", "absolute") == "relative"
        self.position = None if relative else position
        self.blocks = nn.ModuleList()
        for i in range(cfg.n_layers):
            context = {"d_model": d, "causal": self.causal, "layer_idx": i, "n_layers": cfg.n_layers,
                       "max_len": max_len, "layout": info.layout or (info.seq_len,),
                       "position": position if relative else None}
            mixer = build("mixer", cfg.mixer.name, cfg.mixer.options, **context)
            channel = build("channel", cfg.channel.name, cfg.channel.options, **context)
            norms = [build("norm", cfg.norm.name, cfg.norm.options, d_model=d) for _ in range(2)]
            self.blocks.append(Block(mixer, channel, *norms, cfg.block, cfg.dropout))
        self.norm = build("norm", cfg.norm.name, cfg.norm.options, d_model=d)
        if cfg.block == "postnorm":
            self.norm = nn.Identity()  # each post-norm block already ends in a norm
        if info.head == "classify":
            self.head = nn.Linear(d, info.n_classes)
        else:
            self.head = nn.Linear(d, info.vocab_size, bias=False)
            if cfg.tie_embeddings:
                self.head.weight = self.embed.weight
        self.apply(init_unit_scale)

    def _embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        check_token_ids(tokens, self.info.vocab_size)
        x = self.embed(tokens)
        if self.position is not None:
            pos = self.position(torch.arange(offset, offset + tokens.shape[1], device=tokens.device))
            if pos is not None:
                x = x + pos.to(x.dtype)
        return x

    def _head(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(x)
        if self.info.head != "classify":
            return self.head(x)
        if padding_mask is None:
            return self.head(x.mean(dim=1))
        weights = padding_mask.to(x.dtype)[..., None]
        return self.head((x * weights).sum(1) / weights.sum(1).clamp_min(1))

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` (lm, mlm) or ``[B, n_classes]`` (classify)."""
        x = self._embed(tokens)
        layout = self.info.layout if self.info.layout and len(self.info.layout) > 1 else (tokens.shape[1],)
        for block in self.blocks:
            x = block(x, padding_mask, layout)
        return self._head(x, padding_mask)

    # Recurrent generation through every block's prefill/step (causal LM only).
    def init_state(self, batch: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> dict[str, Any]:
        if not self.causal:
            raise IncompatibleError("recurrent generation needs a causal model")
        layers = [{"mixer": b.mixer.init_state(batch, device, dtype),
                   "channel": b.channel.init_state(batch, device, dtype)} for b in self.blocks]
        return {"offset": 0, "layers": layers}

    def prefill(self, tokens: torch.Tensor, state: dict[str, Any] | None = None
                ) -> tuple[torch.Tensor, dict[str, Any]]:
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device, self.embed.weight.dtype)
        x = self._embed(tokens, state["offset"])
        layers = []
        for block, layer_state in zip(self.blocks, state["layers"], strict=True):
            x, layer_state = block.prefill(x, layer_state)
            layers.append(layer_state)
        return self._head(x, None), {"offset": state["offset"] + tokens.shape[1], "layers": layers}

    def step(self, token: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """token ``[B]`` → logits ``[B, vocab]`` for the next position."""
        x = self._embed(token[:, None], state["offset"])[:, 0]
        layers = []
        for block, layer_state in zip(self.blocks, state["layers"], strict=True):
            x, layer_state = block.step(x, layer_state)
            layers.append(layer_state)
        return self._head(x[:, None], None)[:, 0], {"offset": state["offset"] + 1, "layers": layers}

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(cfg: ModelConfig, info: TaskInfo) -> nn.Module:
    """The model named by ``cfg.arch`` for a task described by ``info``."""
    if info.models and cfg.arch not in info.models:
        raise IncompatibleError(f"this task needs model.arch to be one of {', '.join(info.models)}, "
                                f"got {cfg.arch!r}")
    return create("model", cfg.arch, cfg=cfg, info=info)
