"""One registry of named components, with the metadata a user chooses by.

Every part of a model or an experiment — token mixer, channel mixer, norm, residual placement,
position encoding, activation, model, task, tool (an inference-time method such as kNN-LM) — is
registered under a kind and a name::

    @register("mixer", "rwkv4", paper=Paper("RWKV: Reinventing RNNs ...", "2305.13048", 2023),
              category="LongConv", family="rwkv4", causal=True, bidirectional=False, recurrent=True,
              time="O(T·C·d)", memory="O(d) state")
    class RWKV4TimeMix(TokenMixer):
        forms = ("chunk", "quadratic", "recurrent")

A mixer's ``forms`` are declared once, on its class (the code that implements them); the registry
reads them from there. Components are built with ``build(kind, name, options, **context)``, which
passes each factory the context arguments it accepts (``d_model``, ``causal``, ``max_len`` …): the
models, the benchmark and the tests all build through it. Where a component's code and tests live is
data too (``Entry.where()``, ``trevo list --where NAME``). The argument and form vocabulary is in
``docs/components.md``; ``SYNONYMS`` names the words it replaced.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trevo.errors import IncompatibleError, TrevoError, UnknownComponentError

__all__ = ["KINDS", "CONTEXT", "FORMS", "SYNONYMS", "Paper", "Entry", "register", "get", "names", "entries",
           "create", "build", "check_kwargs", "TrevoError", "IncompatibleError", "UnknownComponentError"]

KINDS = ("mixer", "channel", "norm", "residual", "position", "activation", "attention_fn", "model", "task",
         "tool")

# Arguments a model (or the bench, or a test) gives every component that accepts them; a component's
# own options never set them. ``layout`` is the task's grid of positions ((T,) for text, (H, W) for images).
CONTEXT = ("d_model", "causal", "max_len", "layout", "layer_idx", "n_layers", "position")

# The form names (docs/components.md): one meaning each.
FORMS = {
    "quadratic": "every pairwise (query, key) or (output, input) term computed directly, O(T²): the reference",
    "chunk": "blocks of chunk_size: dense work inside a block, a state carried from block to block",
    "recurrent": "one token at a time through the generation state",
    "scan": "a log-depth parallel (associative) scan over time",
    "prefix": "cumulative (prefix) sums over time",
    "fft": "FFT convolution (the convolution theorem)",
    "sdpa": "torch.nn.functional.scaled_dot_product_attention",
    "absorbed": "attention in a compressed latent space, up-projections folded into queries and output (MLA)",
    "sparse": "only the (query, key) pairs of a sparsity pattern, block by block (NSA, MoBA, sliding window, strided)",
    "local": "the terms of a bounded neighbourhood computed directly, all farther terms as one shared (global) sum",
}

# Words the vocabulary replaced, with the word to use; an option spelled the old way gets an error
# naming the new word, and a registry-driven test refuses them in any constructor.
SYNONYMS = {
    "impl": "form", "form_name": "form",
    "d_conv": "conv_size", "short_conv": "conv_size", "shift_len": "conv_size",
    "expansion": "expand", "expand_ratio": "expand", "hidden_ratio": "expand", "mlp_ratio": "expand",
    "gate_rank": "gate_low_rank_dim", "mix_rank": "mix_low_rank_dim", "decay_rank": "decay_low_rank_dim",
    "dt_rank": "dt_low_rank_dim", "proj_len": "low_rank_dim",
    "num_heads": "n_heads", "heads": "n_heads", "nheads": "n_heads", "num_kv_heads": "n_kv_heads",
    "n_head": "n_heads", "dim_head": "head_dim", "head_size": "head_dim",
    "conv_block": "fft_chunk_size", "chunk_len": "chunk_size", "block_len": "chunk_size", "block": "block_size",
    "state_size": "d_state", "state_dim": "d_state", "is_causal": "causal",
    "window_size": "window", "kv_lora_rank": "kv_low_rank_dim", "q_lora_rank": "q_low_rank_dim",
    "qk_rope_head_dim": "rope_head_dim",
    "allow_neg_eigval": "negative_eigenvalues", "num_householder": "n_householder",
    "max_cg_step_training": "cg_steps",
    "num_slots": "n_slots", "top_k": "topk", "num_experts": "n_experts", "gate_logit_normalizer": "tau",
    "inv_t": "inverse_temperature",
}


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str = ""
    year: int = 0

    def cite(self) -> str:
        ref = f"arXiv:{self.arxiv}" if self.arxiv else ""
        return ", ".join(p for p in (self.title, ref, str(self.year) if self.year else "") if p)


@dataclass(frozen=True)
class Entry:
    """A registered component and its metadata."""

    kind: str
    name: str
    factory: Callable[..., Any] = field(repr=False, compare=False)
    paper: Paper | None = None
    category: str = ""  # index category of ../shared/CATALOGUE.md (e.g. "MHA/RightProduct")
    family: str = ""  # one family per file: a mixer family's module, op module and test file share its name
    causal: bool = True
    bidirectional: bool = True
    recurrent: bool = False  # constant-size state in generation
    fixed_length: bool = False  # needs a maximum length at build time
    needs_2d: bool = False  # needs a 2-D layout (images)
    time: str = ""
    memory: str = ""
    # Position encodings applied inside the mixer (e.g. RoPE, ALiBi) that this mixer accepts.
    relative_positions: tuple[str, ...] = ()
    # For positions: "absolute" (added to the embeddings) or "relative" (applied in the mixer).
    applies: str = ""
    summary: str = ""
    # Options that build a small instance for the registry-driven tests (e.g. a small chunk size, so
    # that test lengths cross chunk boundaries). Sizes that come from the context (max_len) are not here.
    test_options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def forms(self) -> tuple[str, ...]:
        """The exact forms, as the class declares them (the training default first); () for one form."""
        return tuple(getattr(self.factory, "forms", ()))

    @property
    def module(self) -> str:
        return self.factory.__module__

    def capabilities(self) -> list[str]:
        caps = [
            ("causal", self.causal),
            ("bidirectional", self.bidirectional),
            ("recurrent", self.recurrent),
            ("fixed_length", self.fixed_length),
            ("needs_2d", self.needs_2d),
        ]
        return [name for name, on in caps if on]

    def where(self) -> dict[str, Any]:
        """Where this component lives: its module (file), the op modules it calls, its test file."""
        module = sys.modules.get(self.module)
        path = Path(getattr(module, "__file__", "") or "")
        ops = sorted({obj.__module__ for obj in vars(module).values()
                      if callable(obj) and getattr(obj, "__module__", "").startswith("trevo.ops.")}) if module else []
        return {"module": self.module, "file": str(path) if path.name else "", "ops": ops, "tests": where_tested(self)}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("factory")
        d.pop("test_options")
        d["capabilities"] = self.capabilities()
        d["forms"] = list(self.forms)
        d["relative_positions"] = list(self.relative_positions)
        d["where"] = self.where()
        return d


def where_tested(entry: Entry) -> str:
    """The test file of a component, by one rule: ``tests/<package>/test_<module>.py`` for a trevo
    module ``trevo/…/<package>/<module>.py`` (a mixer family's module is named after the family);
    "" for a component from outside trevo."""
    parts = entry.module.split(".")
    if parts[0] != "trevo" or len(parts) < 3:
        return ""
    return f"tests/{parts[-2]}/test_{parts[-1]}.py"


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class or function decorator that registers ``factory`` as ``kind``/``name``."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; kinds are {', '.join(KINDS)}")
    if "forms" in meta:
        raise ValueError(f"{kind} {name!r}: declare forms on the class (``forms = (...)``), not in register()")

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} {name!r} is registered twice")
        unknown = set(getattr(factory, "forms", ())) - set(FORMS)
        if unknown:
            raise ValueError(f"{kind} {name!r}: unknown form name {sorted(unknown)}; form names are {sorted(FORMS)}")
        summary = meta.pop("summary", None) or _first_line(factory.__doc__)
        entry = Entry(kind=kind, name=name, factory=factory, summary=summary, **meta)
        _REGISTRY[kind][name] = entry
        if isinstance(factory, type) and "registry_entry" not in vars(factory):
            factory.registry_entry = entry  # the class checks its capabilities against it when built
        return factory

    return decorate


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0]


def get(kind: str, name: str) -> Entry:
    """The entry ``kind``/``name``; an unknown name raises an error listing the valid ones."""
    if kind not in _REGISTRY:
        raise UnknownComponentError(f"unknown registry kind {kind!r}; kinds are {', '.join(KINDS)}")
    table = _REGISTRY[kind]
    if name not in table:
        close = difflib.get_close_matches(str(name), table, n=3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise UnknownComponentError(
            f"unknown {kind} {name!r}.{hint} Valid {kind} names: {', '.join(sorted(table))}. "
            f"`trevo list --kind {kind}` describes them; a component of your own loads with --import."
        )
    return table[name]


def names(kind: str) -> list[str]:
    return sorted(_REGISTRY[kind])


def entries(kind: str | None = None) -> list[Entry]:
    kinds = [kind] if kind else list(KINDS)
    return [e for k in kinds for _, e in sorted(_REGISTRY[k].items())]


def create(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Build ``kind``/``name`` with exactly ``kwargs``; an unknown keyword names the accepted ones."""
    entry = get(kind, name)
    check_kwargs(entry, kwargs)
    return entry.factory(**kwargs)


def build(kind: str, name: str, options: dict[str, Any] | None = None, /, **context: Any) -> Any:
    """Build ``kind``/``name`` with its ``options`` and the ``context`` arguments (``CONTEXT``: d_model,
    causal, max_len, layout, layer_idx, n_layers, position) that its factory accepts. The one way components
    are built: by the models, the benchmark and the tests."""
    unknown = set(context) - set(CONTEXT)
    if unknown:
        raise ValueError(f"build(): {sorted(unknown)} are not context arguments; context is {', '.join(CONTEXT)}")
    options = dict(options or {})
    entry = get(kind, name)
    params = inspect.signature(entry.factory).parameters
    clash = sorted(set(options) & set(CONTEXT))
    if clash:
        raise IncompatibleError(f"{kind} {name!r}: {', '.join(clash)} is set by the model (model.d_model, "
                                f"model.max_len, the task …), not by the {kind}'s options")
    accepted = {k: v for k, v in context.items() if k in params}
    return create(kind, name, **accepted, **options)


def check_kwargs(entry: Entry, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(entry.factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in kwargs if k not in params]
    if not unknown:
        return
    renamed = [f"{k!r} is now {SYNONYMS[k]!r}" for k in unknown if SYNONYMS.get(k) in params]
    if renamed:
        raise IncompatibleError(f"{entry.kind} {entry.name!r}: option {'; '.join(renamed)} "
                                f"(the vocabulary of docs/components.md)")
    valid = [p for p in params if p not in ("self", *CONTEXT)]
    close = [m for k in unknown for m in difflib.get_close_matches(k, valid, n=1)]
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise IncompatibleError(
        f"{entry.kind} {entry.name!r} takes no option {', '.join(map(repr, unknown))}.{hint} "
        f"Its options are: {', '.join(valid) or '(none)'}"
    )
