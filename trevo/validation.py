"""Declarative checks of user-given values: a ``Rule`` (bounds, choices, a pattern) beside each
field, a type read from the field's annotation, and one line per bad value naming the field, the
value and what it may be.

Config dataclasses carry their rules as field metadata (``setting(default, ge=1)``); component
options (a mixer's ``n_heads``, a task's ``seq_len``) are checked against the type their
constructor's signature declares, and against ``OPTION_RULES``, the bounds that an option of that
name has in every component. Command-line numbers use the same rules as ``argparse`` types.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from trevo.errors import TrevoError

# The longest sequence any task may ask for. No benchmark the arena runs comes near it (LRA's
# longest is 16K); past it a single batch's index tensors alone run to gigabytes, so a typo such as
# seq_len=1000000000 is refused here instead of allocating for minutes.
MAX_SEQ_LEN = 2**24
# Seeds are combined with the step into one 64-bit generator seed (trevo.tasks.base.step_generator).
MAX_SEED = 2**32 - 1


class ConfigError(TrevoError, ValueError):
    """A config that cannot be read, names something that does not exist, or holds a bad value."""

    @classmethod
    def of(cls, problems: list[str]) -> ConfigError:
        if len(problems) == 1:
            return cls(problems[0])
        return cls(f"{len(problems)} invalid settings:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Rule:
    """What a value must be beyond its type: inclusive (``ge``, ``le``) or strict (``gt``, ``lt``)
    bounds, a set of ``choices``, or a regular expression the whole string must match (``pattern``,
    described to the user as ``pattern_text``). Numbers must also be finite."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ""
    pattern_text: str = ""
    note: str = ""  # said after "expected …" when the value is refused: where the value the user meant lives

    def holds(self, value: Any) -> bool:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return False
            return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                    and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        if isinstance(value, str):
            return ((not self.choices or value in self.choices)
                    and (not self.pattern or re.fullmatch(self.pattern, value) is not None))
        return True

    def bounds_text(self) -> str:
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else ""
        high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else ""
        if low and high:
            return f" in {low}, {high}"
        if low:
            return f" {'≥' if self.ge is not None else '>'} {low[1:]}"
        if high:
            return f" {'≤' if self.le is not None else '<'} {high[:-1]}"
        return ""


def _num(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) and abs(x) >= 10_000 else f"{x:g}"


def setting(default: Any, **rule: Any) -> Any:
    """A dataclass field with a default and a ``Rule``."""
    return field(default=default, metadata={"rule": Rule(**rule)})


def describe(hint: Any, rule: Rule | None = None) -> str:
    """What a value of type ``hint`` under ``rule`` may be, in words ("an integer ≥ 1")."""
    rule = rule or Rule()
    if rule.choices:
        return "one of " + ", ".join(rule.choices)
    if rule.pattern_text:
        return rule.pattern_text
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        text = " or ".join(describe(a, rule) for a in present)
        return text + " or null" if len(present) < len(args) else text
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {describe(args[0]) if args else 'values'}"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string", dict: "a mapping"}
    return names.get(hint, getattr(hint, "__name__", str(hint))) + rule.bounds_text()


def matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` (as YAML gives it) has type ``hint``. Types that YAML cannot express (a
    module, a callable) are not checked: a user cannot set them."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(a, value) for a in args)
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple)) and all(matches(args[0] if args else Any, v) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, dict):
        return isinstance(value, hint)
    return True


def check(where: str, value: Any, hint: Any, rule: Rule | None = None) -> str | None:
    """The one-line problem with ``value`` at ``where``, or None when it is valid."""
    if matches(hint, value) and (value is None or rule is None or rule.holds(value)):
        return None
    note = f"; {rule.note}" if rule is not None and rule.note else ""
    return f"{where} = {value!r}: expected {describe(hint, rule)}{note}"


def field_rule(cls: type, name: str) -> Rule | None:
    return next((f.metadata.get("rule") for f in dataclasses.fields(cls) if f.name == name), None)


def check_field(cls: type, name: str, value: Any, where: str) -> str | None:
    """``check`` against the annotation and rule of field ``name`` of dataclass ``cls`` (so that
    e.g. a sweep's list of learning rates obeys ``train.lr``'s rule)."""
    return check(where, value, typing.get_type_hints(cls)[name], field_rule(cls, name))


# Bounds that an option of this name has in every component that takes it (sizes and counts are
# positive; multipliers and epsilons too). A component's own constructor checks the relations.
_POSITIVE_INT = Rule(ge=1)
OPTION_RULES: dict[str, Rule] = {
    **dict.fromkeys(("n_heads", "n_kv_heads", "head_dim", "chunk_size", "fft_chunk_size", "block_size", "d_state",
                     "conv_size", "n_features", "n_landmarks", "low_rank_dim", "decay_low_rank_dim",
                     "dt_low_rank_dim", "gate_low_rank_dim", "mix_low_rank_dim", "qk_dim", "topk", "window",
                     "stride", "pool_size", "max_len", "n_bands", "kernel_dim", "filter_hidden", "n_pairs", "n_data",
                     "image_size"), _POSITIVE_INT),
    "seq_len": Rule(ge=1, le=MAX_SEQ_LEN),
    "vocab_size": Rule(ge=2),
    **dict.fromkeys(("expand", "expand_k", "eps", "tau"), Rule(gt=0)),
}
# Option words that name a size or a count in every component (docs/components.md): select_block_size,
# kv_low_rank_dim, rope_head_dim, light_n_heads, n_blocks … are positive integers too.
_POSITIVE_NAME = re.compile(r"n_[a-z_]+|[a-z_]+_(size|low_rank_dim|head_dim|n_heads)")


def option_rule(name: str, hint: Any = Any) -> Rule | None:
    """The bounds of option ``name`` (declared as ``hint``) in every component that takes it (None: none
    declared). A name that reads as a size or a count bounds integers only (``init_size=0.5`` is a fraction)."""
    if name in OPTION_RULES:
        return OPTION_RULES[name]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    integer = hint is int or (union and int in typing.get_args(hint))
    return _POSITIVE_INT if integer and _POSITIVE_NAME.fullmatch(name) else None


def _init_of(factory: Any) -> Any:
    return factory.__init__ if inspect.isclass(factory) else factory


def option_problems(entry: Any, options: dict[str, Any], where: str) -> list[str]:
    """One line per option of registry ``entry`` whose value has the wrong type (read from the
    constructor's annotation, else from its default's type) or breaks ``OPTION_RULES``. Unknown
    option names are left to ``registry.create``, which lists the valid ones."""
    params = inspect.signature(entry.factory).parameters
    try:
        hints = typing.get_type_hints(_init_of(entry.factory))
    except (NameError, TypeError):  # an annotation that cannot be resolved is not checked
        hints = {}
    var_kw = next((n for n, p in params.items() if p.kind is p.VAR_KEYWORD), None)
    problems = []
    for name, value in options.items():
        if name in params and params[name].kind is not inspect.Parameter.VAR_KEYWORD:
            default = params[name].default
            hint = hints.get(name, type(default) if isinstance(default, (bool, int, float, str)) else Any)
        elif var_kw is not None:
            hint = hints.get(var_kw, Any)
        else:
            continue
        problem = check(f"{where}.{name}", value, hint, option_rule(name, hint))
        if problem:
            problems.append(problem)
    return problems


def cli_number(kind: type, **rule: Any) -> Any:
    """An ``argparse`` type: parse a ``kind`` (int or float) and apply ``Rule(**rule)``."""
    r = Rule(**rule)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {describe(kind, r)}") from None
        if not r.holds(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {describe(kind, r)}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
