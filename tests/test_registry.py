"""The registry: unknown names and options get errors naming the valid ones, entries carry their
metadata, and the project's layout rules hold for every registered component (its test file exists,
a mixer family's module is named after the family, forms and option names come from the vocabulary)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from trevo import registry
from trevo.errors import IncompatibleError, UnknownComponentError
from trevo.registry import CONTEXT, FORMS, SYNONYMS, Entry, build, create, entries, get
from trevo.train import build as build_run

ROOT = Path(__file__).resolve().parents[1]
COMPONENT_KINDS = ("mixer", "channel", "norm", "position", "activation")


def _ours(kind: str | None = None) -> list[Entry]:
    """trevo's own entries (a plug-in registered by another test has no test file here)."""
    return [e for e in entries(kind) if e.module.startswith("trevo.")]


def _ids(items: list[Entry]) -> list[str]:
    return [f"{e.kind}-{e.name}" for e in items]


def test_unknown_component_names_the_valid_choices(tiny_cfg):
    with pytest.raises(UnknownComponentError, match="Did you mean .*'rwkv[4-7]'") as e:
        build_run(tiny_cfg("model.mixer.name=rwkv"))
    assert "softmax_attention" in str(e.value)
    with pytest.raises(UnknownComponentError, match="unknown channel 'swishglu'"):
        build_run(tiny_cfg("model.channel.name=swishglu"))
    with pytest.raises(IncompatibleError, match="takes no option 'n_haeds'.*Its options are: .*n_heads"):
        create("mixer", "softmax_attention", d_model=8, causal=True, n_haeds=2)
    with pytest.raises(IncompatibleError, match="option 'n_head' is now 'n_heads'"):
        create("mixer", "softmax_attention", d_model=8, causal=True, n_head=2)


def test_registry_entries_carry_metadata():
    e = get("mixer", "rwkv4")
    assert e.paper.arxiv == "2305.13048" and e.recurrent and not e.bidirectional
    d = e.to_dict()
    assert "recurrent" in e.capabilities() and d["forms"] == ["chunk", "quadratic", "recurrent"]
    where = d["where"]
    assert where["module"] == "trevo.components.mixers.rwkv4" and where["tests"] == "tests/mixers/test_rwkv4.py"
    assert where["file"].endswith("trevo/components/mixers/rwkv4.py") and "trevo.ops.rwkv4" in where["ops"]


def test_the_test_file_rule():
    assert registry.where_tested(get("mixer", "gla")) == "tests/mixers/test_gla.py"
    assert registry.where_tested(get("norm", "rmsnorm")) == "tests/components/test_norms.py"
    assert registry.where_tested(get("task", "mqar")) == "tests/tasks/test_mqar.py"
    outside = Entry(kind="mixer", name="x", factory=type("Mix", (), {"__module__": "my_plugin.mix"}))
    assert registry.where_tested(outside) == ""


@pytest.mark.parametrize("entry", _ours(), ids=_ids(_ours()))
def test_every_registered_component_has_its_test_file(entry):
    tests = entry.where()["tests"]
    assert tests and (ROOT / tests).is_file(), f"{entry.kind} {entry.name!r} ({entry.module}): no {tests}"


@pytest.mark.parametrize("entry", _ours("mixer"), ids=_ids(_ours("mixer")))
def test_every_mixer_module_is_named_after_its_family(entry):
    assert Path(entry.where()["file"]).stem == entry.family, (entry.name, entry.where()["file"], entry.family)


@pytest.mark.parametrize("entry", _ours("mixer"), ids=_ids(_ours("mixer")))
def test_every_mixer_form_is_a_vocabulary_form(entry):
    assert set(entry.forms) <= set(FORMS) and len(set(entry.forms)) == len(entry.forms), (entry.name, entry.forms)


@pytest.mark.parametrize("entry", [e for k in COMPONENT_KINDS for e in _ours(k)],
                         ids=_ids([e for k in COMPONENT_KINDS for e in _ours(k)]))
def test_no_constructor_takes_a_synonym_of_a_vocabulary_word(entry):
    synonyms = sorted(set(inspect.signature(entry.factory).parameters) & set(SYNONYMS))
    assert not synonyms, f"{entry.kind} {entry.name!r} takes {synonyms}: spell them {[SYNONYMS[s] for s in synonyms]}"


def test_build_passes_context_and_refuses_it_as_an_option():
    mixer = build("mixer", "gla", {"chunk_size": 8}, d_model=16, causal=True, max_len=99, layout=(99,))
    assert mixer.d_model == 16 and mixer.causal and mixer.chunk_size == 8  # context it does not take is dropped
    for option in ("d_model", "causal", "max_len"):
        assert option in CONTEXT
        with pytest.raises(IncompatibleError, match=f"{option} is set by the model"):
            build("mixer", "gla", {option: 8}, d_model=16, causal=True)
    with pytest.raises(ValueError, match="not context arguments"):
        build("mixer", "gla", {}, d_model=16, causal=True, chunk_size=8)


def test_an_unknown_option_gets_a_did_you_mean():
    with pytest.raises(IncompatibleError, match="takes no option 'chunk_sise'. Did you mean 'chunk_size'"):
        build("mixer", "gla", {"chunk_sise": 8}, d_model=16, causal=True)


@pytest.mark.parametrize("old,new,value", [("impl", "form", "chunk"), ("gate_rank", "gate_low_rank_dim", 4),
                                           ("num_heads", "n_heads", 2)])
def test_a_renamed_option_gets_an_error_naming_the_new_word(old, new, value):
    with pytest.raises(IncompatibleError, match=f"option '{old}' is now '{new}'"):
        create("mixer", "gla", d_model=16, causal=True, **{old: value})
    with pytest.raises(IncompatibleError, match=f"'{old}' is now '{new}'"):
        build("mixer", "gla", {old: value}, d_model=16, causal=True)
