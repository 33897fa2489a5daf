"""The genome: a metaformer architecture as data (DESIGN.md, "Genomes").

A ``Genome`` is the per-layer list of ``Gene`` s — each layer's mixer, channel, norm, residual and
(relative) position, every one a ``Part``: a registry name and its options — plus the width, the
absolute position added to the embeddings, and whether the output head is tied. It is canonical:
options equal to a constructor's default are dropped, options are sorted, and the layer list is
described by its shortest repeating pattern, so two genomes that build the same model are equal and
have the same hash (sha256 of the canonical JSON, the same in every process).

- ``Genome.from_config(model_config)`` / ``genome.to_config(base)`` round-trip exactly with a
  ``ModelConfig`` (recipes such as ``arch: griffin`` expand to their layers); ``to_dict``/``to_yaml``
  give the ``model:`` section of a run config, and ``from_dict``/``from_yaml`` read one back;
- ``genome.line()`` is the one-line form, ``8×d96 [gla,gla,gla,attn+rope] swiglu rmsnorm pre``, and
  ``Genome.parse(line)`` reads it back exactly;
- ``genome.problems(info)`` is the validity check: every reason the genome cannot be built for a
  task (the registry's capabilities, per layer), ``[]`` for a valid one; ``check(info)`` raises them.

For a search: ``genome.layers`` is a tuple to edit (``Gene.replace``), ``Genome.of(layers, ...)``
makes the canonical genome of an edited list, ``with_period``/``pattern`` change or read the
repeating unit, and ``hash`` deduplicates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from trevo.config import LAYER_FIELDS, ComponentSpec, ConfigError, LayerSpec, ModelConfig, RunConfig
from trevo.errors import TrevoError
from trevo.models.layers import model_problems, resolve_layers
from trevo.models.recipes import expand_recipe
from trevo.registry import get, names
from trevo.tasks.base import TaskInfo

# Short names of the one-line form; full registry names are always understood too.
ABBREVIATIONS = {"softmax_attention": "attn", "sliding_window_attention": "swa", "gated_deltanet": "gdn",
                 "multi_query_attention": "mqa", "grouped_query_attention": "gqa", "prenorm": "pre",
                 "postnorm": "post"}
_FULL = {short: full for full, short in ABBREVIATIONS.items()}


class GenomeError(TrevoError, ValueError):
    """A genome that cannot be read, or one that is not valid (the message lists the reasons)."""


def _freeze(value: Any, where: str) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, where) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise GenomeError(f"{where}: a genome's option values are numbers, strings, booleans or lists, got {value!r}")


def _thaw(value: Any) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


def _defaults(kind: str, name: str) -> dict[str, Any]:
    try:
        params = inspect.signature(get(kind, name).factory).parameters
    except TrevoError:
        return {}  # an unknown name: the validity check reports it
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _same(value: Any, default: Any) -> bool:
    """Whether an option value is its default (True is not 1; 4 is 4.0)."""
    if isinstance(value, bool) or isinstance(default, bool):
        return type(value) is type(default) and value == default
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return value == default
    return type(value) is type(default) and value == default


@dataclass(frozen=True)
class Part:
    """A component of a genome: its registry name and options (sorted; frozen)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, kind: str, value: Part | ComponentSpec | str | dict[str, Any]) -> Part:
        """The canonical part of a name, ``{name: ..., <options>}``, ComponentSpec or Part: options equal
        to the constructor's default dropped, an integer where the default is a float made a float."""
        if isinstance(value, Part):
            name, options = value.name, dict(value.options)
        else:
            try:
                spec = ComponentSpec.parse(value, kind)
            except ConfigError as e:
                raise GenomeError(str(e)) from None
            name, options = spec.name, dict(spec.options)
        defaults = _defaults(kind, name)
        canonical = []
        for key in sorted(options):
            v = options[key]
            if isinstance(defaults.get(key), float) and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if key in defaults and _same(v, defaults[key]):
                continue
            canonical.append((key, _freeze(v, f"{kind} {name}.{key}")))
        return cls(name, tuple(canonical))

    def spec(self) -> ComponentSpec:
        return ComponentSpec(self.name, {k: _thaw(v) for k, v in self.options})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "options": {k: _thaw(v) for k, v in self.options}}


NONE = Part("none")


@dataclass(frozen=True)
class Gene:
    """One layer: mixer, channel, norm, residual, and the relative position its mixer applies (or none).
    Fields may be given as names, mappings, ComponentSpecs or Parts; they are stored canonical."""

    mixer: Part
    channel: Part = Part("swiglu")
    norm: Part = Part("rmsnorm")
    residual: Part = Part("prenorm")
    position: Part = NONE

    def __post_init__(self) -> None:
        for kind in LAYER_FIELDS:
            object.__setattr__(self, kind, Part.of(kind, getattr(self, kind)))

    def replace(self, **fields: Any) -> Gene:
        """This gene with some fields changed (``gene.replace(mixer="gla", residual="postnorm")``)."""
        return dataclasses.replace(self, **fields)

    def to_json(self) -> dict[str, Any]:
        return {kind: getattr(self, kind).to_json() for kind in LAYER_FIELDS}


def _period(layers: tuple[Gene, ...]) -> int:
    """The length of the shortest prefix whose whole repetitions give ``layers`` (a divisor of the depth:
    the pattern is a group of layers the stack repeats, as a config's ``layers`` reads)."""
    n = len(layers)
    return next(p for p in range(1, n + 1) if n % p == 0 and all(layers[i] == layers[i % p] for i in range(n)))


@dataclass(frozen=True)
class Genome:
    """An architecture: ``layers`` (one Gene per layer, so the depth is ``len(layers)``), the width, the
    absolute ``position`` added to the embeddings (``none``: NoPE, or relative positions per layer), and
    whether the head is tied to the embedding."""

    layers: tuple[Gene, ...]
    d_model: int
    position: Part = NONE
    tie_embeddings: bool = True
    _canonical: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        layers = tuple(g if isinstance(g, Gene) else Gene(mixer=g) for g in self.layers)
        if not layers:
            raise GenomeError("a genome has at least one layer")
        if not isinstance(self.d_model, int) or isinstance(self.d_model, bool) or self.d_model < 1:
            raise GenomeError(f"a genome's d_model is a positive integer, got {self.d_model!r}")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "position", Part.of("position", self.position))
        if _applies(self.position) == "relative":
            raise GenomeError(f"a genome's position is the absolute one added to the embeddings; a relative one "
                              f"({self.position.name}) acts inside each layer's mixer: set it on the genes")
        object.__setattr__(self, "_canonical", json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")))

    # Identity -----------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Genome) and self._canonical == other._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)

    def canonical(self) -> dict[str, Any]:
        """The canonical JSON-able form: width, depth, the repeating pattern of genes, position, tying."""
        return {"d_model": self.d_model, "n_layers": self.n_layers, "pattern": [g.to_json() for g in self.pattern],
                "position": self.position.to_json(), "tie_embeddings": self.tie_embeddings}

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON (hex): equal genomes, equal hashes, in every process."""
        return hashlib.sha256(self._canonical.encode()).hexdigest()

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def pattern(self) -> tuple[Gene, ...]:
        """The shortest unit the layers repeat a whole number of times (a divisor of the depth)."""
        return self.layers[:_period(self.layers)]

    # Construction -------------------------------------------------------------------------------------
    @classmethod
    def of(cls, layers: Iterable[Gene | str], d_model: int, n_layers: int | None = None, **rest: Any) -> Genome:
        """The genome whose layers are ``layers`` repeated to ``n_layers`` (default: as many as given)."""
        layers = tuple(layers)
        n_layers = len(layers) if n_layers is None else n_layers
        if not layers or n_layers < 1:
            raise GenomeError("a genome has at least one layer")
        return cls(tuple(layers[i % len(layers)] for i in range(n_layers)), d_model, **rest)

    def replace(self, **fields: Any) -> Genome:
        return dataclasses.replace(self, **fields)

    def with_period(self, period: int) -> Genome:
        """The first ``period`` layers repeated to the same depth."""
        if not 1 <= period <= self.n_layers:
            raise GenomeError(f"a period is between 1 and the depth {self.n_layers}, got {period}")
        return Genome.of(self.layers[:period], self.d_model, self.n_layers, position=self.position,
                         tie_embeddings=self.tie_embeddings)

    @classmethod
    def from_config(cls, cfg: ModelConfig | RunConfig) -> Genome:
        """The genome of a model config (a recipe's ``arch`` expands to its layers). What is not
        architecture — causal, max_len, dropout — stays in the config (``to_config(base)``)."""
        cfg = cfg.model if isinstance(cfg, RunConfig) else cfg
        try:
            cfg = expand_recipe(cfg)
        except TrevoError as e:
            raise GenomeError(str(e)) from None
        if cfg.arch != "metaformer":
            raise GenomeError(f"a genome describes a metaformer stack (or a recipe on it); model.arch is "
                              f"{cfg.arch!r}")
        relative = _applies(Part(cfg.position.name)) == "relative"
        genes = tuple(Gene(mixer=la.mixer, channel=la.channel, norm=la.norm, residual=la.residual,
                           position=la.position) for la in resolve_layers(cfg))
        return cls(genes, cfg.d_model, NONE if relative else cfg.position, cfg.tie_embeddings)

    def to_config(self, base: ModelConfig | None = None) -> ModelConfig:
        """The ModelConfig of this genome; the fields a genome does not hold (causal, max_len, dropout)
        come from ``base``. The model-level mixer, channel, norm and residual are the most common ones of
        the pattern, and each layer entry sets only what differs from them."""
        pattern = self.pattern
        default = _common(pattern, ("mixer", "channel", "norm", "residual"))
        positions = {g.position for g in pattern}
        model_position = self.position
        if self.position == NONE and len(positions) == 1:  # one relative position for every layer
            model_position = positions.pop()
        layer_default_position = model_position if _applies(model_position) == "relative" else NONE
        entries = []
        for g in pattern:
            entry = {kind: getattr(g, kind).spec() for kind in default
                     if kind == "mixer" or getattr(g, kind) != default[kind]}  # the mixer names every layer
            if g.position != layer_default_position:
                entry["position"] = g.position.spec()
            entries.append(LayerSpec(**entry))
        homogeneous = len(pattern) == 1 and entries[0] == LayerSpec(mixer=default["mixer"].spec())
        layers = [] if homogeneous else entries
        base = base or ModelConfig()
        return dataclasses.replace(base, arch="metaformer", d_model=self.d_model, n_layers=self.n_layers,
                                   mixer=default["mixer"].spec(), channel=default["channel"].spec(),
                                   norm=default["norm"].spec(), residual=default["residual"].spec(),
                                   position=model_position.spec(), layers=layers,
                                   tie_embeddings=self.tie_embeddings, options={})

    def to_dict(self) -> dict[str, Any]:
        """The ``model:`` section of a run config (genome fields only)."""
        data = RunConfig(model=self.to_config()).to_dict()["model"]
        return {k: v for k, v in data.items() if k in GENOME_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genome:
        """A genome from a ``model:`` section (any ModelConfig fields, a recipe's ``arch`` too)."""
        if not isinstance(data, dict):
            raise GenomeError(f"a genome is a mapping of model fields (d_model, n_layers, layers, …), got {data!r}")
        try:
            return cls.from_config(RunConfig.from_dict({"model": data}).model)
        except ConfigError as e:
            raise GenomeError(f"genome: {e}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Genome:
        try:
            return cls.from_dict(yaml.safe_load(text))
        except yaml.YAMLError as e:
            raise GenomeError(f"a genome's YAML is not valid: {e}") from None

    @classmethod
    def from_any(cls, value: Genome | str | dict[str, Any]) -> Genome:
        """A genome from itself, its one-line form or a ``model:`` mapping."""
        if isinstance(value, Genome):
            return value
        return cls.parse(value) if isinstance(value, str) else cls.from_dict(value)

    # Validity -----------------------------------------------------------------------------------------
    def problems(self, info: TaskInfo, *, build: bool = True) -> list[str]:
        """Every reason this genome cannot be built for a task described by ``info`` (``[]``: valid). The
        registry's capabilities per layer first; then, if those pass and ``build``, a trial build, whose
        own refusals (a width a mixer cannot take, an output projection a residual needs) are reasons too."""
        cfg = self.to_config()
        problems = model_problems(cfg, info)
        if problems or not build:
            return problems
        from trevo.models import build_model

        try:
            build_model(cfg, info)
        except TrevoError as e:
            return [str(e)]
        return []

    def check(self, info: TaskInfo) -> None:
        """Raise a GenomeError listing every problem (before anything is built)."""
        problems = self.problems(info)
        if problems:
            raise GenomeError(f"genome {self.line()} cannot be built:\n  - " + "\n  - ".join(problems))

    # The one-line form --------------------------------------------------------------------------------
    def line(self) -> str:
        """``{depth}×d{width} [{layer},…] {channel} {norm} {residual}`` — the repeating pattern, each layer
        ``mixer[+position][|field=part]`` for what differs from the shown defaults; then ``pos=…`` for an
        absolute position and ``untied`` for an untied head."""
        pattern = self.pattern
        default = _common(pattern, ("channel", "norm", "residual"))
        layers = []
        for g in pattern:
            text = _render_part(g.mixer)
            if g.position != NONE:
                text += "+" + _render_part(g.position)
            text += "".join(f"|{kind}={_render_part(getattr(g, kind))}" for kind in default
                            if getattr(g, kind) != default[kind])
            layers.append(text)
        words = [f"{self.n_layers}×d{self.d_model}", "[" + ",".join(layers) + "]",
                 *(_render_part(default[k]) for k in ("channel", "norm", "residual"))]
        if self.position != NONE:
            words.append("pos=" + _render_part(self.position))
        if not self.tie_embeddings:
            words.append("untied")
        return " ".join(words)

    @classmethod
    def parse(cls, line: str) -> Genome:
        """The genome of a one-line form (``Genome.line``); a clear error for anything else."""
        words = _split(line.strip(), " ")
        shape = re.fullmatch(r"(\d+)\s*[×x]\s*d(\d+)", words[0]) if words else None
        if shape is None or len(words) < 5 or not (words[1].startswith("[") and words[1].endswith("]")):
            raise GenomeError(f"{line!r} is not a one-line genome: expected '{{depth}}×d{{width}} [layer,…] "
                              f"channel norm residual', e.g. '8×d96 [gla,gla,gla,attn+rope] swiglu rmsnorm pre'")
        depth, width = int(shape.group(1)), int(shape.group(2))
        defaults = {"channel": _parse_part("channel", words[2]), "norm": _parse_part("norm", words[3]),
                    "residual": _parse_part("residual", words[4])}
        position, tied = NONE, True
        for word in words[5:]:
            if word.startswith("pos="):
                position = _parse_part("position", word[4:])
            elif word == "untied":
                tied = False
            else:
                raise GenomeError(f"{line!r}: unknown word {word!r} after the residual (pos=NAME or untied)")
        genes = [_parse_gene(text, defaults) for text in _split(words[1][1:-1], ",")]
        if not genes:
            raise GenomeError(f"{line!r}: the layer list is empty")
        return cls.of(genes, width, depth, position=position, tie_embeddings=tied)

    def __str__(self) -> str:
        return self.line()


GENOME_FIELDS = ("d_model", "n_layers", "mixer", "channel", "norm", "position", "residual", "layers", "tie_embeddings")


def _common(pattern: tuple[Gene, ...], kinds: tuple[str, ...]) -> dict[str, Part]:
    """The model-level default of each field: its most common part in the pattern; a tie goes to a part
    that is not ``none``, then to the first."""
    out = {}
    for kind in kinds:
        parts = [getattr(g, kind) for g in pattern]
        counts = Counter(parts)
        out[kind] = max(counts, key=lambda p, c=counts, ps=parts: (c[p], p.name != "none", -ps.index(p)))
    return out


def _applies(part: Part) -> str:
    try:
        return get("position", part.name).applies
    except TrevoError:
        return ""


def _render_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_render_value(v) for v in value) + "]"
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][\w.-]*", value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _render_part(part: Part) -> str:
    name = ABBREVIATIONS.get(part.name, part.name)
    if not part.options:
        return name
    return name + "(" + ",".join(f"{k}={_render_value(v)}" for k, v in part.options) + ")"


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets, parentheses and quotes."""
    out, depth, quoted, current = [], 0, False, ""
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            if current:
                out.append(current)
            current = ""
        else:
            current += ch
    if current:
        out.append(current)
    return out


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            raise GenomeError(f"option value {text!r} is not a number, boolean, string or list") from None


def _parse_part(kind: str, text: str) -> Part:
    match = re.fullmatch(r"([A-Za-z_][\w.-]*)(?:\((.*)\))?", text)
    if match is None:
        raise GenomeError(f"{text!r} is not a {kind}: expected NAME or NAME(key=value,…)")
    name = match.group(1)
    if name in _FULL and name not in names(kind):
        name = _FULL[name]
    options = {}
    for item in _split(match.group(2) or "", ","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GenomeError(f"{text!r}: options are key=value, got {item!r}")
        options[key.strip()] = _parse_value(value.strip())
    return Part.of(kind, {"name": name, **options})


def _parse_gene(text: str, defaults: dict[str, Part]) -> Gene:
    head, *overrides = _split(text, "|") or [""]
    mixer, *position = _split(head, "+") or [""]
    if len(position) > 1:
        raise GenomeError(f"layer {text!r}: one position per layer (mixer+position)")
    fields = dict(defaults)
    for item in overrides:
        kind, sep, value = item.partition("=")
        if not sep or kind not in ("channel", "norm", "residual"):
            raise GenomeError(f"layer {text!r}: '|' sets channel=, norm= or residual=, got {item!r}")
        fields[kind] = _parse_part(kind, value)
    return Gene(mixer=_parse_part("mixer", mixer), position=_parse_part("position", position[0]) if position else NONE,
                **fields)
