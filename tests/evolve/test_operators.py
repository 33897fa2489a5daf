"""Genome operators: 1000 random mutations and crossovers from random valid genomes are all valid
(inside the space, and the genome validity check finds nothing for every task) and each changes
exactly what its Edit says — checked by rebuilding the expected child from the parent's unit by hand."""

from __future__ import annotations

import random

import pytest

from trevo.evolve.operators import FIELD_KINDS, MUTATIONS, Edit, crossover, mutate
from trevo.evolve.space import parse_space
from trevo.models.genome import Genome, GenomeError
from trevo.registry import create, get

INFOS = [create("task", "mqar", seq_len=32, n_pairs=4, vocab_size=32).info,
         create("task", "byte_lm", seq_len=32).info]
SWA = {"name": "sliding_window_attention", "options": {"window": [8, 16]}}
SPACE_SPEC = {"mixers": ["softmax_attention", "gla", SWA, "mamba", "hyena"],
              "channels": ["swiglu", "mlp", "none"], "norms": ["rmsnorm", "layernorm"],
              "residuals": ["prenorm", "postnorm", "sandwich"], "positions": ["rope"],
              "depth": [2, 6], "period": [1, 3], "d_model": 32}


def _space():
    space, problems = parse_space(SPACE_SPEC, INFOS)
    assert problems == []
    return space


def _expected_after(parent: Genome, edit: Edit, child: Genome) -> list:
    """The layer list the edit says the child has, built from the parent's unit by hand."""
    unit = list(parent.pattern)
    repeats = parent.n_layers // len(unit)
    if edit.kind in FIELD_KINDS or edit.kind == "mixer_options":
        kind = "mixer" if edit.kind == "mixer_options" else edit.kind
        new = getattr(child.layers[edit.index], kind)
        assert new != getattr(unit[edit.index], kind), edit
        fields = {kind: new}
        if kind == "mixer":  # a position the new mixer does not accept is dropped
            pos = unit[edit.index].position
            fields["position"] = pos if pos.name in ("none", *get("mixer", new.name).relative_positions) else "none"
        unit[edit.index] = unit[edit.index].replace(**fields)
        depth = parent.n_layers
    elif edit.kind == "insert":
        unit.insert(edit.index, child.layers[edit.index])
        depth = len(unit) * repeats
        assert edit.after == edit.before + 1
    elif edit.kind == "delete":
        del unit[edit.index]
        depth = len(unit) * repeats
    elif edit.kind == "depth":
        depth = edit.after
        assert edit.before == parent.n_layers and edit.after != edit.before
    elif edit.kind == "period":
        unit = [unit[k % len(unit)] for k in range(edit.after)]
        depth = child.n_layers
        assert depth % edit.after == 0
    else:
        raise AssertionError(edit)
    return [unit[k % len(unit)] for k in range(depth)]


def test_a_thousand_mutations_and_crossovers_are_valid_and_do_what_they_say():
    space = _space()
    rng = random.Random(0)
    pool = [space.random_genome(rng) for _ in range(12)]
    kinds_seen = set()
    for step in range(1000):
        if step % 4 == 3:
            a, b = rng.sample(pool, 2)
            child, edit = crossover(a, b, space, rng)
            i, j = edit.before, edit.after
            unit = list(a.pattern)[:i] + list(b.pattern)[j:]
            assert list(child.layers) == [unit[k % len(unit)] for k in range(child.n_layers)]
            assert child not in (a, b)
        else:
            parent = rng.choice(pool)
            child, edit = mutate(parent, space, rng)
            assert edit.kind in MUTATIONS
            assert list(child.layers) == _expected_after(parent, edit, child), edit.describe()
            assert child != parent
        kinds_seen.add(edit.kind)
        assert space.limits(child) == []
        # The registry's capability check for every child; the trial build (which the space ran) for some.
        assert all(child.problems(info, build=step % 10 == 0) == [] for info in INFOS), child.line()
        pool[rng.randrange(len(pool))] = child
    assert kinds_seen == {*MUTATIONS, "crossover"}


def test_equal_genomes_have_one_hash_and_edits_that_change_nothing_are_never_returned():
    space = _space()
    a = Genome.parse("4×d32 [gla,attn+rope] swiglu rmsnorm pre")
    b = Genome.of(list(a.layers)[:2] * 2, 32)  # the same stack spelled as its full layer list
    assert a == b and a.hash == b.hash and len({a, b}) == 1
    rng = random.Random(1)
    for _ in range(50):
        child, _ = mutate(a, space, rng, kinds=("period",))
        assert child != a and child.hash != a.hash


def test_a_space_with_no_valid_member_says_so():
    space, problems = parse_space({**SPACE_SPEC, "mixers": ["fnet"]}, INFOS)
    if problems:  # the name may not exist in this registry: then the spec check names it
        assert "fnet" in problems[0]
        return
    with pytest.raises(GenomeError, match="no valid genome"):
        space.random_genome(random.Random(0), tries=20)


def test_unknown_components_are_all_listed():
    _, problems = parse_space({**SPACE_SPEC, "mixers": ["gla", "glaa"], "norms": ["rmsnorn"], "depth": [5, 2]},
                              INFOS)
    text = "\n".join(problems)
    assert "unknown mixer 'glaa'" in text and "unknown norm 'rmsnorn'" in text and "depth" in text
