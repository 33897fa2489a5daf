"""One registry of named components, with the metadata a user chooses by.

Every part of a model or an experiment — token mixer, channel mixer, norm, position encoding,
activation, model, task — is registered under a kind and a name::

    @register("mixer", "rwkv4", paper=Paper("RWKV: Reinventing RNNs ...", "2305.13048", 2023),
              category="LongConv", family="rwkv", causal=True, bidirectional=False, recurrent=True,
              forms=("parallel", "chunk", "recurrent"), time="O(T·C·d)", memory="O(d) state")
    class RWKV4TimeMix(TokenMixer): ...

and built with ``create(kind, name, **kwargs)``. An unknown name raises ``UnknownComponentError``
naming the valid choices.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("mixer", "channel", "norm", "position", "activation", "model", "task")


class TrevoError(Exception):
    """Base of the errors trevo raises for bad input; each message names the fix."""


class UnknownComponentError(TrevoError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class IncompatibleError(TrevoError, ValueError):
    """A combination of components that cannot work together (found at build time)."""


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
    family: str = ""  # one family per file (e.g. "rwkv", "linear_attention")
    causal: bool = True
    bidirectional: bool = True
    recurrent: bool = False  # constant-size state in generation
    fixed_length: bool = False  # needs a maximum length at build time
    needs_2d: bool = False  # needs a 2-D layout (images)
    forms: tuple[str, ...] = ()
    time: str = ""
    memory: str = ""
    # Position encodings applied inside the mixer (e.g. RoPE, ALiBi) that this mixer accepts.
    relative_positions: tuple[str, ...] = ()
    # For positions: "absolute" (added to the embeddings) or "relative" (applied in the mixer).
    applies: str = ""
    summary: str = ""
    # Options that build a small instance for the registry-driven tests (e.g. a small chunk size, so
    # that test lengths cross chunk boundaries).
    test_options: dict[str, Any] = field(default_factory=dict, compare=False)

    def capabilities(self) -> list[str]:
        caps = [
            ("causal", self.causal),
            ("bidirectional", self.bidirectional),
            ("recurrent", self.recurrent),
            ("fixed_length", self.fixed_length),
            ("needs_2d", self.needs_2d),
        ]
        return [name for name, on in caps if on]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("factory")
        d["capabilities"] = self.capabilities()
        d["forms"] = list(self.forms)
        d["relative_positions"] = list(self.relative_positions)
        d.pop("test_options")
        return d


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class or function decorator that registers ``factory`` as ``kind``/``name``."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; kinds are {', '.join(KINDS)}")

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} {name!r} is registered twice")
        summary = meta.pop("summary", None) or _first_line(factory.__doc__)
        _REGISTRY[kind][name] = Entry(kind=kind, name=name, factory=factory, summary=summary, **meta)
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
            f"`trevo list --kind {kind}` describes them."
        )
    return table[name]


def names(kind: str) -> list[str]:
    return sorted(_REGISTRY[kind])


def entries(kind: str | None = None) -> list[Entry]:
    kinds = [kind] if kind else list(KINDS)
    return [e for k in kinds for _, e in sorted(_REGISTRY[k].items())]


def create(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Build ``kind``/``name`` with ``kwargs``; an unknown keyword names the accepted ones."""
    entry = get(kind, name)
    check_kwargs(entry, kwargs)
    return entry.factory(**kwargs)


def check_kwargs(entry: Entry, kwargs: dict[str, Any]) -> None:
    sig = inspect.signature(entry.factory)
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        valid = [p for p in params if p != "self"]
        raise IncompatibleError(
            f"{entry.kind} {entry.name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(valid)}"
        )
