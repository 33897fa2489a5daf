"""The search loop with a stand-in evaluation (no training): no genome is evaluated twice, crashed
evaluations get the worst fitness and the search goes on, an interrupted search continues to the same
state as an uninterrupted one, and both strategies spend the same number of evaluations."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.evolve.conftest import tiny_spec
from trevo.errors import TrevoError
from trevo.evolve import search as search_module
from trevo.evolve.search import CRASHED, objectives, search, state_path
from trevo.evolve.selection import WORST
from trevo.evolve.spec import parse_spec

SPEC = tiny_spec(search={"population": 3, "generations": 4},
                 space={"mixers": ["softmax_attention", "gla", "sliding_window_attention"],
                        "channels": ["swiglu", "none", "mlp"], "positions": ["rope"], "depth": [1, 4],
                        "period": [1, 2], "d_model": 16})


def _fake_evaluate(calls):
    """A deterministic quality per genome (from its hash); every genome with a GLA layer and no channel
    mixer crashes."""
    def evaluate(spec, stage, genomes, out, workers, log, baseline=False):
        results = {}
        for g in genomes:
            calls.append(g.hash)
            if any(gene.mixer.name == "gla" and gene.channel.name == "none" for gene in g.layers):
                results[g.line()] = {**CRASHED, "error": "boom"}
                continue
            x = int(hashlib.sha256(g.hash.encode()).hexdigest()[:8], 16) / 2**32
            results[g.line()] = {"crashed": False, "error": None, "quality": 1 + x, "state_bytes": 100 * g.n_layers,
                                 "tokens_per_s": 1000.0, "params": 1, "runs": []}
        if baseline:
            results["baseline"] = {"crashed": False, "error": None, "quality": 1.5, "state_bytes": 400,
                                   "tokens_per_s": 1000.0, "params": 1, "runs": []}
        return results
    return evaluate


def _summary(state):
    return {k: state[k] for k in ("population", "history", "generation", "winner")} | {
        "archive": {h: {k: e[k] for k in ("line", "parents", "edit", "quality", "crashed", "generation")}
                    for h, e in state["archive"].items()}}


def test_no_genome_is_evaluated_twice_and_crashes_get_the_worst_fitness(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(search_module, "evaluate", _fake_evaluate(calls))
    spec = parse_spec(SPEC)
    state = search(spec, tmp_path, log=lambda _: None)
    assert len(calls) == len(set(calls)) == len(state["archive"]) == 3 * 4
    crashed = [e for e in state["archive"].values() if e["crashed"]]
    assert crashed, "the stand-in crashes some genomes: the search must have gone on past them"
    assert all(objectives(e, spec.objectives) == [WORST, WORST] for e in crashed)
    finished = [h for h, e in state["archive"].items() if not e["crashed"]]
    if len(finished) >= spec.population:  # NSGA-II never keeps a crash over a finished genome
        assert all(not state["archive"][h]["crashed"] for h in state["population"])
    children = [e for e in state["archive"].values() if e["generation"] > 0]
    assert all(e["parents"] and all(p in state["archive"] for p in e["parents"]) for e in children)
    assert state["history"][-1]["best"] == min(state["archive"][h]["quality"] for h in finished)
    saved = json.loads(state_path(tmp_path, "evolution").read_text())
    assert saved["generation"] == 4 and saved["winner"] == state["winner"]


def test_an_interrupted_search_continues_to_the_same_result(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(search_module, "evaluate", _fake_evaluate(calls))
    whole = search(parse_spec(SPEC), tmp_path / "a", log=lambda _: None)

    real = _fake_evaluate([])
    count = {"n": 0}

    def dies_on_the_third(*args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt  # as a kill midway through generation 2
        return real(*args, **kwargs)

    monkeypatch.setattr(search_module, "evaluate", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        search(parse_spec(SPEC), tmp_path / "b", log=lambda _: None)
    assert json.loads(state_path(tmp_path / "b", "evolution").read_text())["generation"] == 2
    resumed = search(parse_spec(SPEC), tmp_path / "b", log=lambda _: None)
    assert _summary(resumed) == _summary(whole)


def test_the_random_control_spends_the_same_evaluations(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(search_module, "evaluate", _fake_evaluate(calls))
    evolved = search(parse_spec(SPEC), tmp_path, log=lambda _: None)
    randomised = search(parse_spec(SPEC), tmp_path, strategy="random", log=lambda _: None)
    assert len(randomised["archive"]) == len(evolved["archive"])
    assert all(e["edit"] == "random" for e in randomised["archive"].values())
    first = {h for h, e in evolved["archive"].items() if e["generation"] == 0}
    assert first == {h for h, e in randomised["archive"].items() if e["generation"] == 0}  # they start level
    assert state_path(tmp_path, "random").is_file() and state_path(tmp_path, "evolution").is_file()


@pytest.mark.slow
def test_a_search_on_ray_ends_where_the_local_search_ends(tmp_path):
    """Real evaluations (tiny byte-LM runs), once in local worker processes and once as Ray tasks: the same
    archive, qualities, population and winner (tokens/s is a timing, not compared)."""
    ray = pytest.importorskip("ray")
    lm = {"label": "lm", "set": {"task.name": "byte_lm", "task.seq_len": 8, "train.eval_every": 2}}
    spec = parse_spec(tiny_spec(search={"population": 2, "generations": 1},
                                stages={"cheap": {"tasks": [lm], "steps": 2, "seeds": [0]}}))
    local = search(spec, tmp_path / "local", log=lambda _: None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = search(spec, tmp_path / "ray", backend="ray", log=lambda _: None)
    finally:
        ray.shutdown()

    def result(state):
        return {"population": state["population"], "winner": state["winner"], "history": state["history"],
                "archive": {h: {k: e[k] for k in ("line", "quality", "state_bytes", "crashed", "runs")}
                            for h, e in state["archive"].items()}}

    assert result(remote) == result(local)
    assert len(local["archive"]) == 2 and not any(e["crashed"] for e in local["archive"].values())


def test_an_unknown_backend_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TrevoError, match="--backend must be one of local, ray, got 'dask'"):
        search(parse_spec(SPEC), tmp_path / "out", backend="dask", log=lambda _: None)
    assert not (tmp_path / "out").exists()
