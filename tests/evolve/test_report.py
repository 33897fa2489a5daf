"""The search report: the final leaderboard's paired differences and p-values from hand-made runs in the
store (checked against the paired t-test worked by hand), the winner's lineage, and user strings escaped
in HTML and Markdown."""

from __future__ import annotations

import math

import pytest

from tests.evolve.conftest import tiny_spec
from tests.evolve.test_search import _fake_evaluate
from trevo.arena.runner import DB_NAME
from trevo.arena.store import Run, Store
from trevo.evolve import search as search_module
from trevo.evolve.ladder import leaderboard
from trevo.evolve.report import lineage, md, write_report
from trevo.evolve.search import search
from trevo.evolve.spec import parse_spec


def _run(key, label, seed, bpb):
    return Run(key=key, sweep="t/final", label=label, family="", task="lm", seed=seed, lr=3e-3, status="done",
               config={}, metric="bpb", higher_is_better=False, val={"bpb": bpb}, test={"bpb": bpb}, params=100)


def test_leaderboard_pairs_seeds_with_the_baseline(tmp_path):
    store = Store(tmp_path / DB_NAME)
    base, cand = [5.0, 5.1, 5.3], [4.8, 4.95, 5.0]
    for seed in range(3):
        store.add(_run(f"b{seed}", "baseline", seed, base[seed]))
        store.add(_run(f"c{seed}", "x", seed, cand[seed]))
    result = {"crashed": False, "params": 100, "state_bytes": 10, "tokens_per_s": 1.0}
    state = {"archive": {"h": {"line": "1×d16 [gla] swiglu rmsnorm pre"}},
             "stages": {"final": {"baseline": {**result, "runs": ["b0", "b1", "b2"]},
                                  "genomes": {"h": {**result, "runs": ["c2", "c0", "c1"]}}}}}
    rows = leaderboard(parse_spec(tiny_spec()), state, store)
    assert [r["key"] for r in rows] == ["baseline", "h"]
    cell = rows[1]["tasks"]["lm"]
    diffs = [c - b for c, b in zip(cand, base, strict=True)]  # -0.2, -0.15, -0.3
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    t = mean / (sd / math.sqrt(3))
    assert cell["diff"] == pytest.approx(mean)
    # Two degrees of freedom: P(|T| > t) = 1 - |t| / sqrt(2 + t²), exactly.
    assert cell["p"] == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t))
    assert cell["estimate"].mean == pytest.approx(sum(cand) / 3) and cell["seeds"] == 3
    assert rows[0]["tasks"]["lm"]["p"] is None


def test_report_escapes_user_strings_and_traces_the_winner(tmp_path, monkeypatch):
    monkeypatch.setattr(search_module, "evaluate", _fake_evaluate([]))
    spec = parse_spec(tiny_spec(name="<script>alert(1)</script>|x", search={"population": 3, "generations": 3}))
    state = search(spec, tmp_path, log=lambda _: None)
    paths = write_report(tmp_path, spec)
    page, text = paths["html"].read_text(), paths["md"].read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<script>" not in text and "\\<script\\>" in text and "\\|x" in text
    chain = lineage(state, state["winner"])
    assert chain[0]["key"] == state["winner"] and chain[-1]["parents"] == []
    assert all(child["parents"][0] == parent["key"] for child, parent in zip(chain, chain[1:], strict=False))
    assert "lineage" in text and "Pareto set" in text and "← baseline" in text
    assert md("a|b*c") == "a\\|b\\*c"


def test_the_ablation_reverts_each_difference_from_the_baseline_once():
    from trevo.evolve.ablation import reversions
    from trevo.models.genome import Genome
    from trevo.registry import create, get

    winner = Genome.parse("4×d32 [gla|channel=none,attn+rope] swiglu rmsnorm post")
    baseline = Genome.parse("2×d32 [attn+rope] swiglu rmsnorm pre")
    kept, skipped = reversions(winner, baseline, [create("task", "byte_lm", seq_len=16).info])
    got = {what: g.line() for what, g in kept}
    # the mixer comes back with its relative position: attention without RoPE would measure the position
    assert got["mixer and its relative position → baseline's"] == \
        "4×d32 [attn+rope|channel=none,attn+rope] swiglu rmsnorm post"
    assert got["channel → baseline's"] == "4×d32 [gla,attn+rope] swiglu rmsnorm post"
    assert got["residual → baseline's"] == "4×d32 [gla|channel=none,attn+rope] swiglu rmsnorm pre"
    assert got["depth 4 → 2"] == "2×d32 [gla|channel=none,attn+rope] swiglu rmsnorm post"
    if "rope" in get("mixer", "gla").relative_positions:
        assert "position → baseline's" in got
    else:  # RoPE on GLA is not a valid genome: skipped, with the reason
        assert any(s.startswith("position → baseline's") for s in skipped)
    assert "norm → baseline's" not in got  # the same norm everywhere: nothing to revert


def test_the_random_control_gets_its_own_final_leaderboard(tmp_path):
    from trevo.evolve.search import save_state

    store = Store(tmp_path / DB_NAME)
    result = {"crashed": False, "params": 100, "state_bytes": 10, "tokens_per_s": 1.0}
    lines = {"evolution": "1×d16 [gla] swiglu rmsnorm pre", "random": "2×d16 [attn+rope] none rmsnorm pre"}
    for seed in range(3):
        store.add(_run(f"b{seed}", "baseline", seed, 5.0 + seed / 10))
    for strategy, line in lines.items():
        for seed in range(3):
            store.add(_run(f"{strategy}{seed}", line, seed, 4.0 + seed / 10))
        entry = {**result, "line": line, "quality": 1.0, "generation": 0, "edit": "random", "parents": []}
        final = {"baseline": {**result, "runs": ["b0", "b1", "b2"]},
                 "genomes": {"h": {**result, "runs": [f"{strategy}{s}" for s in range(3)]}}}
        save_state(tmp_path, {
            "strategy": strategy, "spec": "", "generation": 1, "population": ["h"], "archive": {"h": entry},
            "history": [{"generation": 0, "evaluations": 1, "best": 1.0, "median": 1.0, "crashed": 0}],
            "winner": "h", "stages": {"final": final}})
    text = write_report(tmp_path, parse_spec(tiny_spec()))["md"].read_text()
    for strategy, line in lines.items():
        board = text.split(f"## Final leaderboard ({strategy})")[1].split("##")[0]
        assert md(line) in board and "-1.0000" in board  # 1 bpb below the baseline on every seed
        assert f"{strategy}: {md(line)}" in text.splitlines()[2]  # the intro names both winners
    assert "lineage (evolution)" in text and "lineage (random)" not in text
