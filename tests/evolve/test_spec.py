"""The search spec is checked whole before anything runs: every problem listed in one error (unknown
components, unknown fields, bad ranges, an impossible parameter budget), and `trevo evolve --plan` /
a refused spec leave no output directory behind."""

from __future__ import annotations

import pytest
import yaml

from tests.evolve.conftest import tiny_spec
from trevo.cli import main
from trevo.evolve.spec import SpecError, load_spec, parse_spec, preset_names


def test_a_spec_with_unknown_components_and_an_impossible_budget_lists_every_problem():
    bad = tiny_spec(param_budget=300, colour="red",
                    space={"mixers": ["gla", "glaa"], "norms": ["rmsnorn"], "depth": [1, 2], "period": [3, 4]},
                    search={"population": 1, "generations": 0})
    with pytest.raises(SpecError) as e:
        parse_spec(bad)
    text = str(e.value)
    for expected in ("unknown field 'colour'", "unknown mixer 'glaa'", "unknown norm 'rmsnorn'",
                     "period (3, 4) cannot fit in depth (1, 2)", "search.population: at least 2",
                     "search.generations: at least 1", "param_budget 300 cannot be met", "nothing was started"):
        assert expected in text, expected


def test_unknown_tasks_and_stage_fields_are_named():
    bad = tiny_spec(stages={"cheap": {"tasks": ["no_such_task"], "steps": 0, "seeds": [0], "epochs": 3},
                            "finale": {}})
    with pytest.raises(SpecError) as e:
        parse_spec(bad)
    text = str(e.value)
    assert "no_such_task" in text and "stages.cheap.steps" in text and "'epochs'" in text and "'finale'" in text


def test_a_refused_spec_runs_nothing(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(space={"mixers": ["glaa"]})))
    assert main(["evolve", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "unknown mixer 'glaa'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_presets_load_and_plan(tmp_path, capsys):
    assert {"default", "tiny"} <= set(preset_names())
    for name in preset_names():
        load_spec(name)
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(tiny_spec()))
    assert main(["evolve", str(path), "--plan", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "population 2 × 2 generations = 4 genomes" in out and "baseline: 2×d16 [attn+rope]" in out
    assert not (tmp_path / "out").exists()


def test_rewording_the_description_keeps_the_hash_and_changing_the_search_does_not():
    spec = parse_spec(tiny_spec(description="one wording"))
    assert parse_spec(tiny_spec(description="another wording, measured times added")).hash == spec.hash
    assert parse_spec(tiny_spec(description="one wording", param_budget=15000)).hash != spec.hash
    assert parse_spec(tiny_spec(description="one wording", seed=1)).hash != spec.hash
