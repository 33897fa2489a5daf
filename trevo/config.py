"""Typed run configuration: dataclasses, YAML load/save (safe loader only), dotted overrides.

A run is ``RunConfig(model, task, train)``. Components are named by registry name plus options::

    model:
      d_model: 256
      n_layers: 4
      mixer: {name: rwkv4, chunk_size: 32}
      channel: {name: swiglu, expand: 4}
      norm: rmsnorm
    task: {name: byte_lm, seq_len: 256}
    train: {steps: 300, lr: 0.002}

``--set model.mixer.name=linear_attention`` (or ``model.mixer.n_heads=8``) overrides one field.
Every value is checked when a config is built (``RunConfig.from_dict``, which ``load``, ``override``
and ``replace`` go through): its type comes from the field's annotation, its range from the rule
beside the field (``setting(default, ge=1)``, see ``trevo.validation``), and a component's options
are checked against its constructor's signature. All bad values are reported together, one line each.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trevo.dtypes import PRECISIONS, TRAINING_DTYPES
from trevo.errors import UnknownComponentError
from trevo.registry import get
from trevo.validation import MAX_SEED, ConfigError, check, field_rule, option_problems, setting

__all__ = ["ComponentSpec", "ConfigError", "ModelConfig", "RunConfig", "TrainConfig"]


@dataclass
class ComponentSpec:
    """A registry name and the options passed to its constructor."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_yaml(self) -> Any:
        return {"name": self.name, **self.options} if self.options else self.name

    @classmethod
    def parse(cls, value: Any, where: str) -> ComponentSpec:
        if isinstance(value, ComponentSpec):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            options = {k: v for k, v in value.items() if k != "name"}
            return cls(value["name"], options)
        raise ConfigError(f"{where}: expected a component name or {{name: ..., <options>}}, got {value!r}")


def _spec(name: str, **options: Any) -> Any:
    return field(default_factory=lambda: ComponentSpec(name, dict(options)))


# The block fields one entry of ``model.layers`` may set; what it leaves unset is the model's.
LAYER_FIELDS = ("mixer", "channel", "norm", "residual", "position")


@dataclass
class LayerSpec:
    """One entry of ``model.layers``: a bare mixer name, or a mapping of block fields (mixer, channel,
    norm, residual, position), each a component name or ``{name: ..., <options>}``; None inherits."""

    mixer: ComponentSpec | None = None
    channel: ComponentSpec | None = None
    norm: ComponentSpec | None = None
    residual: ComponentSpec | None = None
    position: ComponentSpec | None = None

    def to_yaml(self) -> Any:
        set_fields = {f: getattr(self, f) for f in LAYER_FIELDS if getattr(self, f) is not None}
        if list(set_fields) == ["mixer"] and not self.mixer.options:
            return self.mixer.name
        return {f: spec.to_yaml() for f, spec in set_fields.items()}

    @classmethod
    def parse(cls, value: Any, where: str) -> LayerSpec:
        if isinstance(value, LayerSpec):
            return value
        if isinstance(value, str):
            return cls(mixer=ComponentSpec(value))
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: a layer is a mixer name or a mapping of {', '.join(LAYER_FIELDS)}, "
                              f"got {value!r}")
        if "name" in value:
            raise ConfigError(f"{where}: a layer is a mixer name or {{mixer: ..., channel: ...}}; for a mixer with "
                              f"options write {{mixer: {{name: {value['name']}, ...}}}}")
        unknown = [k for k in value if k not in LAYER_FIELDS]
        if unknown:
            raise ConfigError(f"{where}: unknown field {', '.join(map(repr, unknown))}; a layer sets "
                              f"{', '.join(LAYER_FIELDS)} (the rest comes from the model)")
        return cls(**{k: ComponentSpec.parse(v, f"{where}.{k}") for k, v in value.items()})


def _parse_layers(value: Any, where: str) -> list[LayerSpec]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of layers (mixer names or mappings), got {value!r}")
    return [LayerSpec.parse(v, f"{where}[{i}]") for i, v in enumerate(value)]


@dataclass
class ModelConfig:
    arch: str = "metaformer"
    d_model: int = setting(256, ge=1)
    n_layers: int = setting(4, ge=1)
    mixer: ComponentSpec = _spec("softmax_attention")
    channel: ComponentSpec = _spec("swiglu")
    norm: ComponentSpec = _spec("rmsnorm")
    position: ComponentSpec = _spec("none")
    # The residual/norm placement of every block (trevo list --kind residual): prenorm, postnorm, …
    residual: ComponentSpec = _spec("prenorm")
    # Per-layer specs, repeated cyclically to fill n_layers (hybrids); empty: every layer is the default.
    layers: list[LayerSpec] = field(default_factory=list)
    # "auto": causal for the causal LM, bidirectional where the task and mixer allow it. YAML's
    # true/false are read as "true"/"false".
    causal: str = setting("auto", choices=("auto", "true", "false"))
    # The longest sequence of fixed-length components (learned positions, AFT-full, Linformer …);
    # None: the task's sequence length.
    max_len: int | None = setting(None, ge=1)
    dropout: float = setting(0.0, ge=0, lt=1)
    tie_embeddings: bool = True
    # Architecture-specific options (e.g. the Perceiver's n_latents); metaformer takes none.
    options: dict[str, Any] = field(default_factory=dict)

    # Fields that were renamed: setting one is an error naming its successor, never a silent alias.
    replaced_fields: typing.ClassVar[dict[str, str]] = {
        "block": "model.block was replaced by model.residual (prenorm, postnorm, sandwich, rezero, deepnorm, … — "
                 "`trevo list --kind residual`): write model.residual: {value} instead of model.block: {value}",
    }

    @property
    def label(self) -> str:
        """The run in a word: the mixer's name, or the architecture's where it has layers of its own (xlnet,
        transcormer, perceiver, the memory models …) and does not read ``model.mixer``."""
        return self.mixer.name if self.arch == "metaformer" else self.arch


@dataclass
class TrainConfig:
    steps: int = setting(300, ge=1)
    batch_size: int = setting(16, ge=1)
    lr: float = setting(2e-3, gt=0)
    min_lr_ratio: float = setting(0.1, ge=0, le=1)
    warmup_steps: int = setting(30, ge=0)
    weight_decay: float = setting(0.1, ge=0)
    beta1: float = setting(0.9, ge=0, lt=1)
    beta2: float = setting(0.95, ge=0, lt=1)
    grad_clip: float = setting(1.0, ge=0)  # 0: no clipping
    eval_every: int = setting(100, ge=1)
    eval_batches: int = setting(8, ge=1)
    checkpoint_every: int = setting(100, ge=1)
    # Early stopping: end the run at the first evaluation whose validation metric passes this value
    # (above it where higher is better; Zoology stops at accuracy > 0.99). None: every step runs.
    stop_at: float | None = None
    seed: int = setting(0, ge=0, le=MAX_SEED)
    device: str = setting("cpu", pattern=r"cpu|cuda(:\d+)?|mps", pattern_text="cpu, cuda, cuda:N or mps")
    # The type the weights and the optimizer state are stored in. float64 for exact checks; bfloat16 is pure
    # bfloat16 training (weights, moments and every op in bfloat16: half the memory, no float32 copy).
    dtype: str = setting("float32", choices=TRAINING_DTYPES,
                         note="for float16 compute (with a loss scaler) set train.precision=fp16, the weights float32")
    # Mixed precision (trevo.precision): fp32 (none), or bf16 / fp16 compute under torch.autocast with the
    # weights and optimizer state kept in float32 (train.dtype=float32); fp16 adds a gradient scaler.
    precision: str = setting("fp32", choices=PRECISIONS)
    # Per-step scalars: csv (steps.csv in the run directory, always written), or tensorboard as well.
    log: str = setting("csv", choices=("csv", "tensorboard"))
    # Data parallelism under torchrun (trevo.distributed): none, ddp (DistributedDataParallel), fsdp (FSDP2).
    parallel: str = setting("none", choices=("none", "ddp", "fsdp"))
    # torch.compile each block of the model for training (the first steps then include the compilation).
    compile: bool = False
    # A run directory whose weights start this run (fine-tuning an imported or trained model); None: fresh.
    init_from: str | None = None
    # On a task of segmented streams (trevo.segments): consecutive segments per optimizer step, through which
    # the gradient flows along the memory (truncated BPTT); the memory is detached between steps.
    bptt_segments: int = setting(1, ge=1)
    # The training objective (registry kind ``objective``: causal_lm, masked_lm, electra, permutation_lm …);
    # None: the task's own (``Task.objective``).
    objective: ComponentSpec | None = None
    # Parameter-efficient fine-tuning of the train.init_from model (registry kind ``peft`` that merges back into
    # the model: pafi, hiwi, with its options); None: every parameter trains.
    peft: ComponentSpec | None = None

    # Fields a run's key leaves out: ``log`` changes what is written, never the results; the others are
    # left out while they hold the value that reproduces a run of the trevo before they existed, so that
    # an arena store written then keeps its keys and resumes.
    unkeyed: typing.ClassVar[tuple[str, ...]] = ("log",)
    keyed_unless: typing.ClassVar[dict[str, Any]] = {"precision": "fp32", "parallel": "none", "compile": False,
                                                     "bptt_segments": 1, "objective": None, "stop_at": None,
                                                     "peft": None}


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: ComponentSpec = _spec("byte_lm")
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hash(self) -> str:
        """A stable hash of the full config (the arena's run key, and what a resume is checked against);
        see ``TrainConfig.unkeyed`` and ``keyed_unless`` for the fields it leaves out."""
        data = self.to_dict()
        train = data["train"]
        for name in TrainConfig.unkeyed:
            train.pop(name)
        for name, neutral in TrainConfig.keyed_unless.items():
            if train[name] == neutral:
                train.pop(name)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The config of ``data``; raises one ConfigError with a line for every bad value."""
        problems: list[str] = []
        cfg = _from_plain(cls, data, "config", problems)
        problems += _component_problems(cfg)
        if problems:
            raise ConfigError.of(problems)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping with model/task/train")
        return cls.from_dict(data)

    def override(self, assignments: list[str]) -> RunConfig:
        """A copy with each ``dotted.key=value`` applied (value parsed as YAML: 8, 1e-3, true, [1,2])."""
        values = {}
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {assignment!r} is not of the form dotted.key=value")
            try:
                values[key] = yaml.safe_load(raw)
            except yaml.YAMLError:
                values[key] = raw
        return self.replace(values)

    def replace(self, values: dict[str, Any]) -> RunConfig:
        """A copy with each ``{"dotted.key": value}`` applied."""
        data = self.to_dict()
        for key, value in values.items():
            _assign(data, key.split("."), value, key)
        return RunConfig.from_dict(data)


def _assign(data: dict[str, Any], path: list[str], value: Any, full: str) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if isinstance(child, str) and i == len(path) - 2:  # a bare component name gains options
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            raise ConfigError(f"override {full!r}: {'.'.join(path[:i + 1])!r} is not a section")
        node = child
    node[path[-1]] = value


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, (ComponentSpec, LayerSpec)):
        return obj.to_yaml()
    if isinstance(obj, list):
        return [_to_plain(x) for x in obj]
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return copy.deepcopy(obj)


def _from_plain(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """``cls`` built from ``data``; each bad value is appended to ``problems`` (and its field keeps
    its default, so that the other fields are still checked)."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping, got {data!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, message in getattr(cls, "replaced_fields", {}).items():
        if key in data:
            raise ConfigError(message.format(value=data[key]))
    unknown = [k for k in data if k not in fields]
    if unknown:
        problems.append(f"{where}: unknown field {', '.join(map(repr, unknown))}; "
                        f"valid fields: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        if name in fields:
            kwargs[name] = _coerce(hints[name], field_rule(cls, name), value, f"{where}.{name}", problems)
    kwargs = {k: v for k, v in kwargs.items() if v is not _INVALID}
    return cls(**kwargs)


_INVALID = object()


def _coerce(hint: Any, rule: Any, value: Any, where: str, problems: list[str]) -> Any:
    if hint == ComponentSpec | None:
        if value is None:
            return None
        hint = ComponentSpec
    if hint is ComponentSpec or hint == list[LayerSpec]:
        try:
            return ComponentSpec.parse(value, where) if hint is ComponentSpec else _parse_layers(value, where)
        except ConfigError as e:
            problems.append(str(e))
            return _INVALID
    if dataclasses.is_dataclass(hint):
        return _from_plain(hint, value, where, problems)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    elif hint is str and isinstance(value, bool) and rule is not None and "true" in rule.choices:
        value = str(value).lower()  # --set model.causal=true: YAML's boolean, meant as the choice
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    problem = check(where, value, hint, rule)
    if problem:
        problems.append(problem)
        return _INVALID
    return value


# Where each component of a run sits in the config, and its registry kind.
COMPONENTS = (("mixer", "model.mixer"), ("channel", "model.channel"), ("norm", "model.norm"),
              ("residual", "model.residual"), ("position", "model.position"), ("task", "task"))


def _component_problems(cfg: RunConfig) -> list[str]:
    """Options of the run's components (and of each ``model.layers`` entry's) whose values do not have
    the type or range their constructor declares (an unknown component name is left to the build,
    which suggests the valid ones)."""
    specs: list[tuple[str, str, ComponentSpec]] = []
    for kind, path in COMPONENTS:
        node: Any = cfg
        for part in path.split("."):
            node = getattr(node, part)
        specs.append((kind, f"config.{path}", node))
    if cfg.train.objective is not None:
        specs.append(("objective", "config.train.objective", cfg.train.objective))
    if cfg.train.peft is not None:
        specs.append(("peft", "config.train.peft", cfg.train.peft))
    model_level = {kind: getattr(cfg.model, kind) for kind in LAYER_FIELDS}
    for i, layer in enumerate(cfg.model.layers):  # an entry equal to the model's own spec is checked once, above
        specs += [(kind, f"config.model.layers[{i}].{kind}", getattr(layer, kind)) for kind in LAYER_FIELDS
                  if getattr(layer, kind) not in (None, model_level[kind])]
    problems = []
    for kind, where, spec in specs:
        try:
            entry = get(kind, spec.name)
        except UnknownComponentError:
            continue
        problems += option_problems(entry, spec.options, where)
    return problems
