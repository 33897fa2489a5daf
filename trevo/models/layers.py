"""The block stack built from per-layer specs (DESIGN.md, "Genomes").

``model.layers`` is a list of layer specs repeated cyclically to fill ``model.n_layers``; a spec sets
any of mixer, channel, norm, residual and position, and what it leaves unset is the model's. A
model-level relative position (RoPE, ALiBi) is every layer's unless a layer sets its own; an
absolute one is added to the embeddings. ``model_problems`` checks every layer against the
registry's capabilities and returns the reasons a model cannot be built (the genome's validity check
and the model's build-time check are this one function); ``build_blocks`` builds the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trevo.components.base import State
from trevo.components.mixers.skip_attention import AttentionCarry
from trevo.components.residuals import ScoreCarry
from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError, TrevoError, UnknownComponentError
from trevo.registry import CONTEXT, SYNONYMS, build, check_kwargs, get, names
from trevo.tasks.base import TaskInfo

NONE = ComponentSpec("none")


@dataclass(frozen=True)
class Layer:
    """One layer of the stack with every field resolved (``position``: the relative position its mixer
    applies, or ``none``)."""

    mixer: ComponentSpec
    channel: ComponentSpec
    norm: ComponentSpec
    residual: ComponentSpec
    position: ComponentSpec


def _is_relative(spec: ComponentSpec) -> bool:
    try:
        return get("position", spec.name).applies == "relative"
    except TrevoError:
        return False


def resolve_layers(cfg: ModelConfig) -> list[Layer]:
    """The ``n_layers`` layers of ``cfg``: ``cfg.layers`` cycled, unset fields from the model."""
    pattern = cfg.layers or [None]
    default_position = cfg.position if _is_relative(cfg.position) else NONE
    out = []
    for i in range(cfg.n_layers):
        spec = pattern[i % len(pattern)]

        def pick(name: str, default: ComponentSpec, spec=spec) -> ComponentSpec:
            value = getattr(spec, name) if spec is not None else None
            return default if value is None else value

        out.append(Layer(mixer=pick("mixer", cfg.mixer), channel=pick("channel", cfg.channel),
                         norm=pick("norm", cfg.norm), residual=pick("residual", cfg.residual),
                         position=pick("position", default_position)))
    return out


def exposes_scores(mixer: str) -> bool:
    """Whether a mixer hands its attention scores to RealFormer's residual attention."""
    return bool(getattr(get("mixer", mixer).factory, "exposes_scores", False))


def reuses_attention(mixer: str) -> bool:
    """Whether a mixer maps the previous layer's mixer output instead of computing attention (Skip-Attention)."""
    return bool(getattr(get("mixer", mixer).factory, "reuses_attention", False))


def refuse_reused_attention(mixer: str, arch: str) -> None:
    """An architecture that repeats one mixer has no attention layer for Skip-Attention to reuse."""
    if reuses_attention(mixer):
        raise IncompatibleError(f"mixer {mixer!r} reuses the attention output of the layer before it, and {arch} "
                                f"repeats one mixer, so no layer computes attention; use model.arch=metaformer with "
                                f"model.layers [softmax_attention, {mixer}]")


def model_family(cfg: ModelConfig) -> str:
    """The family of a model's mixers: the one family of a homogeneous stack, ``hybrid`` for a mix."""
    mixers = {layer.mixer.name for layer in resolve_layers(cfg)}
    return get("mixer", mixers.pop()).family if len(mixers) == 1 else "hybrid"


def _option_problem(kind: str, spec: ComponentSpec) -> str | None:
    entry = get(kind, spec.name)
    clash = sorted(set(spec.options) & set(CONTEXT))
    if clash:
        return (f"{kind} {spec.name!r}: {', '.join(clash)} is set by the model (model.d_model, model.max_len, "
                f"the task …), not by the {kind}'s options")
    try:
        check_kwargs(entry, dict(spec.options))
    except IncompatibleError as e:
        return str(e)
    return None


def _mixers() -> list:
    return [get("mixer", n) for n in names("mixer")]


def resolve_causal(cfg: ModelConfig, info: TaskInfo, layers: list[Layer] | None = None) -> tuple[bool, list[str]]:
    """Whether the model is causal (forced by LM tasks; else bidirectional where every layer's mixer
    allows it), and the problems with that choice."""
    layers = resolve_layers(cfg) if layers is None else layers
    if cfg.causal not in ("auto", "true", "false"):
        return True, [f"model.causal must be auto, true or false, got {cfg.causal!r}"]
    wanted = {"auto": None, "true": True, "false": False}[cfg.causal]
    mixers = [get("mixer", layer.mixer.name) for layer in layers]
    if info.causal == "required":
        if wanted is False:
            return True, ["a causal language model needs model.causal=auto or true"]
        wanted = True
    elif info.causal == "forbidden":
        if wanted is True:
            return False, ["a masked LM sees both sides; use model.causal=auto or false"]
        wanted = False
    elif wanted is None:
        wanted = not all(m.bidirectional for m in mixers)
    problems = []
    first = {}  # each mixer once, at the first layer that has it
    for i, mixer in enumerate(mixers[:len(cfg.layers) or 1]):
        first.setdefault(mixer.name, (i, mixer))
    for i, mixer in first.values():
        where = f"layer {i}: " if cfg.layers else ""
        # The alternatives are a command, not a list: with over a hundred mixers a list buries the reason.
        if wanted and not mixer.causal:
            n = sum(e.causal for e in _mixers())
            problems.append(f"{where}mixer {mixer.name!r} is bidirectional only and cannot be used causally (this "
                            f"task needs a causal model); `trevo list --capability causal` lists the {n} causal "
                            f"mixers")
        if not wanted and not mixer.bidirectional:
            n = sum(e.bidirectional for e in _mixers())
            problems.append(f"{where}mixer {mixer.name!r} is causal only and this task needs a bidirectional "
                            f"model; `trevo list --capability bidirectional` lists the {n} bidirectional mixers")
    return wanted, problems


def _names_problems(cfg: ModelConfig) -> list[str]:
    fields = ("mixer", "channel", "norm", "residual", "position")
    specs = [("", k, getattr(cfg, k)) for k in fields]
    for i, spec in enumerate(cfg.layers):
        specs += [(f"model.layers[{i}].{k}: ", k, getattr(spec, k)) for k in fields if getattr(spec, k)]
    problems = []
    for where, kind, spec in specs:
        try:
            get(kind, spec.name)
        except TrevoError as e:
            problems.append(f"{where}{e}")
    return problems


def model_problems(cfg: ModelConfig, info: TaskInfo) -> list[str]:
    """Every reason the metaformer ``cfg`` cannot be built for a task described by ``info`` ([] if none)."""
    if cfg.options:
        return [f"model.options {sorted(cfg.options)} are not used by the metaformer; they are architecture "
                f"options of perceiver, perceiver_io and perceiver_ar"]
    problems = _names_problems(cfg)
    if len(cfg.layers) > cfg.n_layers:
        problems.append(f"model.layers has {len(cfg.layers)} entries but model.n_layers is {cfg.n_layers}: the "
                        f"entries past the depth would never be built; raise n_layers or shorten the list")
    if problems:
        return problems
    layers = resolve_layers(cfg)
    causal, problems = resolve_causal(cfg, info, layers)
    max_len = resolve_max_len(cfg, info)
    model_position = get("position", cfg.position.name)
    if model_position.fixed_length and info.seq_len > max_len:
        problems.append(f"position {model_position.name!r} holds {max_len} positions but the task's sequences "
                        f"have {info.seq_len}; raise model.max_len")
    for i, layer in enumerate(layers[:len(cfg.layers) or 1]):  # one cycle of the pattern covers every layer
        where = f"layer {i}: " if cfg.layers else ""
        for kind in ("mixer", "channel", "norm", "residual", "position"):
            problem = _option_problem(kind, getattr(layer, kind))
            if problem:
                problems.append(where + problem)
        problems += [where + p for p in _layer_problems(layer, info, max_len, bool(cfg.layers))]
    if reuses_attention(layers[0].mixer.name):
        problems.append(f"layer 0: mixer {layers[0].mixer.name!r} reuses the attention output of the layer before "
                        f"it and the first layer has none; start model.layers with an attention layer (e.g. "
                        f"[softmax_attention, {layers[0].mixer.name}])")
    return list(dict.fromkeys(problems))


def _layer_problems(layer: Layer, info: TaskInfo, max_len: int, hybrid: bool) -> list[str]:
    problems = []
    mixer, position = get("mixer", layer.mixer.name), get("position", layer.position.name)
    if layer.position.name != "none" and position.applies != "relative":
        problems.append(f"a layer's position acts inside its mixer, and {position.name!r} is absolute (added to the "
                        f"embeddings): set it as model.position, or give the layer a relative one (rope, alibi)")
    elif position.applies == "relative" and layer.position.name not in mixer.relative_positions:
        absolute = [n for n in names("position") if get("position", n).applies == "absolute"]
        accepts = ", ".join(mixer.relative_positions) or "no relative position"
        per_layer = "; in a hybrid, set the position per layer in model.layers" if hybrid else ""
        problems.append(f"position {layer.position.name!r} acts inside the token mixer and mixer {mixer.name!r} "
                        f"accepts {accepts}; choose an absolute position ({', '.join(absolute)}) or another "
                        f"mixer{per_layer}")
    if mixer.needs_2d and (info.layout is None or len(info.layout) != 2):
        problems.append(f"mixer {mixer.name!r} needs a 2-D layout (an image task); this task's layout is "
                        f"{info.layout}")
    if mixer.fixed_length and info.seq_len > max_len:
        problems.append(f"mixer {mixer.name!r} holds {max_len} positions but the task's sequences have "
                        f"{info.seq_len}; raise model.max_len")
    residual = get("residual", layer.residual.name)
    if getattr(residual.factory, "carries_scores", False) and not exposes_scores(mixer.name):
        attention = [n for n in names("mixer") if exposes_scores(n)]
        problems.append(f"residual {residual.name!r} carries attention scores from layer to layer and mixer "
                        f"{mixer.name!r} exposes none; use it on {', '.join(attention)} layers, or postnorm here")
    return problems


def model_options(arch: str, defaults: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """``model.options`` over an architecture's ``defaults``; an option it does not take is one clear error
    naming them."""
    unknown = [k for k in options if k not in defaults]
    if unknown:
        renamed = "".join(f" ({k} is spelled {SYNONYMS[k]} in trevo)" for k in unknown if k in SYNONYMS)
        raise IncompatibleError(f"model {arch!r} takes no option {', '.join(map(repr, unknown))}{renamed}; its "
                                f"model.options are: {', '.join(defaults)}")
    return {**defaults, **options}


def resolve_max_len(cfg: ModelConfig, info: TaskInfo) -> int:
    return info.seq_len if cfg.max_len is None else cfg.max_len


def check_model(cfg: ModelConfig, info: TaskInfo) -> bool:
    """Raise one IncompatibleError listing every problem of ``cfg``; returns whether the model is causal."""
    unknown = _names_problems(cfg)
    problems = unknown or model_problems(cfg, info)
    error = UnknownComponentError if unknown else IncompatibleError
    if len(problems) == 1:
        raise error(problems[0])
    if problems:
        raise error("the model cannot be built:\n  - " + "\n  - ".join(problems))
    return resolve_causal(cfg, info)[0]


class Block(nn.Module):
    """One layer: the token mixer, then the channel mixer (skipped when it is ``none``), joined to the
    residual stream by a residual placement (``trevo.components.residuals``). A block followed by a
    ``skip_attention`` layer hands its mixer output on through ``attention_carry`` (``share_attention``)."""

    attention_carry: AttentionCarry | None = None

    def __init__(self, mixer: nn.Module, channel: nn.Module, residual: nn.Module, make_norm, dropout: float = 0.0
                 ) -> None:
        super().__init__()
        self.mixer = mixer
        self.channel = None if getattr(channel, "skip", False) else channel
        self.residual = residual
        self.drop = nn.Dropout(dropout)
        residual.attach(len(self.sublayers))
        self.n_norms = residual.norm_count(len(self.sublayers))
        for i in range(self.n_norms):  # norm1, norm2 …: the names checkpoints and importers use
            setattr(self, f"norm{i + 1}", make_norm())

    @property
    def sublayers(self) -> list[nn.Module]:
        return [self.mixer] if self.channel is None else [self.mixer, self.channel]

    @property
    def norms(self) -> list[nn.Module]:
        return [getattr(self, f"norm{i + 1}") for i in range(self.n_norms)]

    def initialize(self) -> None:
        """The residual's rescaling of the sublayers' weights, after the model's initialisation."""
        self.residual.initialize(self.sublayers)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        fns = [lambda h: self.drop(self._hand_on(self.mixer(h, padding_mask=padding_mask, layout=layout)))]
        if self.channel is not None:
            fns.append(lambda h: self.drop(self.channel(h)))
        return self.residual(x, fns, self.norms)

    def _hand_on(self, y: torch.Tensor) -> torch.Tensor:
        if self.attention_carry is not None:
            self.attention_carry.output = y
        return y

    def init_state(self, batch: int, device, dtype) -> dict[str, State]:
        channel = self.channel.init_state(batch, device, dtype) if self.channel is not None else {}
        return {"mixer": self.mixer.init_state(batch, device, dtype), "channel": channel}

    def _incremental(self, method: str, x: torch.Tensor, state: dict[str, State]
                     ) -> tuple[torch.Tensor, dict[str, State]]:
        new = dict(state)

        def run(name: str, module: nn.Module):
            def f(h: torch.Tensor) -> torch.Tensor:
                y, new[name] = getattr(module, method)(h, state[name])
                return self.drop(self._hand_on(y) if name == "mixer" else y)
            return f

        fns = [run(name, module) for name, module in zip(("mixer", "channel"), self.sublayers, strict=False)]
        return self.residual(x, fns, self.norms), new

    def prefill(self, x: torch.Tensor, state: dict[str, State]) -> tuple[torch.Tensor, dict[str, State]]:
        return self._incremental("prefill", x, state)

    def step(self, x: torch.Tensor, state: dict[str, State]) -> tuple[torch.Tensor, dict[str, State]]:
        return self._incremental("step", x, state)


def build_blocks(cfg: ModelConfig, *, causal: bool, max_len: int, layout: tuple[int, ...], dropout: float
                 ) -> tuple[nn.ModuleList, ScoreCarry | None]:
    """The blocks of ``cfg`` (already checked), and the ScoreCarry their RealFormer layers share (or None)."""
    d, n = cfg.d_model, cfg.n_layers
    blocks = nn.ModuleList()
    for i, layer in enumerate(resolve_layers(cfg)):
        position = None
        if layer.position.name != "none":
            position = build("position", layer.position.name, layer.position.options, d_model=d, max_len=max_len)
        context: dict[str, Any] = {"d_model": d, "causal": causal, "layer_idx": i, "n_layers": n,
                                   "max_len": max_len, "layout": layout, "position": position}
        mixer = build("mixer", layer.mixer.name, layer.mixer.options, **context)
        channel = build("channel", layer.channel.name, layer.channel.options, **context)
        residual = build("residual", layer.residual.name, layer.residual.options, d_model=d, layer_idx=i, n_layers=n)

        def make_norm(spec: ComponentSpec = layer.norm) -> nn.Module:
            return build("norm", spec.name, spec.options, d_model=d)

        blocks.append(Block(mixer, channel, residual, make_norm, dropout))
    share_attention(blocks)
    return blocks, share_scores(blocks)


def share_attention(blocks: nn.ModuleList) -> None:
    """Wire each Skip-Attention layer of ``blocks`` to the block before it, which hands its mixer output on."""
    for i, block in enumerate(blocks):
        if getattr(block.mixer, "reuses_attention", False):
            if i == 0:
                raise IncompatibleError(f"the first layer's mixer ({type(block.mixer).__name__}) reuses the attention "
                                        f"output of the layer before it and there is none")
            carry = AttentionCarry()
            blocks[i - 1].attention_carry = carry
            block.mixer.attention_carry = carry


def share_scores(blocks: nn.ModuleList) -> ScoreCarry | None:
    """One ScoreCarry for the RealFormer layers of ``blocks`` (None if there are none)."""
    carriers = [b for b in blocks if b.residual.carries_scores]
    if not carriers:
        return None
    heads = {getattr(b.mixer, "n_heads", None) for b in carriers}
    if len(heads) > 1:
        raise IncompatibleError(f"realformer adds each attention layer's scores to the next one's, so its layers "
                                f"need the same number of heads; they have {sorted(heads)}")
    carry = ScoreCarry()
    for b in carriers:
        b.mixer.score_carry = carry
    return carry


def profile_tokens(info: TaskInfo, batch: int = 2) -> torch.Tensor:
    """The batch an initialisation pass (Admin) profiles on: uniformly random tokens of the task's
    vocabulary at its length, from a fixed seed (the model is built without data)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(info.vocab_size, (batch, info.seq_len), generator=generator)


def run_profiling(model: nn.Module, blocks: nn.ModuleList, info: TaskInfo) -> None:
    """The initialisation pass of the residuals that need one (Admin): one forward in eval mode with the
    running ω shared by the stack, in layer order."""
    profiled = [b.residual for b in blocks if b.residual.needs_profiling]
    if not profiled:
        return
    tally = [1.0]
    for residual in profiled:
        residual.profile = tally
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(profile_tokens(info))
    finally:
        for residual in profiled:
            residual.profile = None
        model.train(was_training)
