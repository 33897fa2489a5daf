"""The fitness ladder after the search, and the final leaderboard.

As the Evolved Transformer's progressive dynamic hurdles (So, Liang & Le 2019) and STAR's staged
evaluation (arXiv 2411.17800): cheap fitness for every genome (the search), a longer budget with more
seeds for the best ``promote.top`` of the Pareto set, and a final stage where the best ``final.top`` of
those and the Transformer++ baseline (softmax attention + RoPE + SwiGLU + RMSNorm, pre-norm) train with
the same learning rates (the best on validation kept, per genome, as the arena chooses) and the same
seeds, at equal parameters; their test metrics are compared paired by seed (a paired t-test). Each rung
is saved in the state when done, so a re-run skips it. The winner — the best final quality — is written
as ``OUT/winner.yaml`` (``OUT/winner-random.yaml`` for the random control), a run config
``trevo train --config`` runs as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trevo.arena.runner import DB_NAME
from trevo.arena.stats import estimate, paired_t_test
from trevo.arena.store import Store
from trevo.config import RunConfig
from trevo.evolve.ablation import reversions
from trevo.evolve.search import Launch, evaluate, objectives, save_state
from trevo.evolve.selection import pareto_set
from trevo.evolve.spec import Spec
from trevo.models.genome import Genome


def _by_quality(entries: dict[str, dict[str, Any]], hashes: list[str]) -> list[str]:
    return sorted((h for h in hashes if not entries[h]["crashed"]), key=lambda h: entries[h]["quality"])


def run_ladder(spec: Spec, state: dict[str, Any], out: Path, launch: Launch, log: Callable[[str], None]) -> None:
    archive, stages = state["archive"], state["stages"]
    front = pareto_set([(h, objectives(e, spec.objectives)) for h, e in archive.items() if not e["crashed"]])
    state["pareto"] = front
    candidates, scores = _by_quality(archive, front), archive
    if "baseline" not in stages:  # the baseline's cheap fitness: its place beside the Pareto set
        stages["baseline"] = evaluate(spec, "cheap", [], out, launch, log, baseline=True)["baseline"]
        save_state(out, state)
    if "promote" in spec.stages:
        if "promote" not in stages:
            picked = candidates[:spec.stages["promote"].top]
            log(f"promote stage: {len(picked)} genome(s) of the Pareto set of {len(front)}")
            results = evaluate(spec, "promote", [Genome.from_dict(archive[h]["genome"]) for h in picked], out,
                               launch, log)
            stages["promote"] = {h: results[archive[h]["line"]] for h in picked}
            save_state(out, state)
        scores = stages["promote"]
        candidates = _by_quality(scores, list(scores))
    if "final" in spec.stages and "final" not in stages:
        picked = candidates[:spec.stages["final"].top]
        log(f"final stage: {len(picked)} genome(s) and the baseline {spec.baseline.line()}")
        results = evaluate(spec, "final", [Genome.from_dict(archive[h]["genome"]) for h in picked], out, launch,
                           log, baseline=True)
        stages["final"] = {"genomes": {h: results[archive[h]["line"]] for h in picked},
                           "baseline": results["baseline"]}
        save_state(out, state)
    last = stages["final"]["genomes"] if "final" in stages else scores
    if "final" in stages and spec.stages["final"].ablate and "ablation" not in stages:
        ranked = _by_quality(last, list(last))
        if ranked:
            kept, skipped = reversions(Genome.from_dict(archive[ranked[0]]["genome"]), spec.baseline, spec.space.infos)
            for reason in skipped:
                log(f"  ablation skips {reason}")
            log(f"ablation of the winner: {len(kept)} difference(s) from the baseline, each reverted")
            results = evaluate(spec, "final", [g for _, g in kept], out, launch, log)
            stages["ablation"] = [{"reverted": what, "line": g.line(), **results[g.line()]} for what, g in kept]
            save_state(out, state)
    ranked = _by_quality(last, list(last)) if last else []
    if ranked:
        state["winner"] = ranked[0]
        save_state(out, state)
        if last[ranked[0]]["runs"]:
            path = write_winner(out / winner_file(state["strategy"]), last[ranked[0]]["runs"], Store(out / DB_NAME))
            log(f"winner: {archive[ranked[0]]['line']} (its run config: {path})")


def winner_file(strategy: str) -> str:
    """Where a strategy's winner is written: the search's own, and the control's beside it."""
    return "winner.yaml" if strategy == "evolution" else f"winner-{strategy}.yaml"


def write_winner(path: Path, run_keys: list[str], store: Store) -> Path:
    """The winner's run config (its chosen learning rate, the first seed, its matched width) as YAML."""
    runs = sorted((store.get(k) for k in run_keys), key=lambda r: (r.task, r.seed))
    RunConfig.from_dict(runs[0].config).save(path)
    return path


def per_seed(result: dict[str, Any], store: Store) -> dict[str, dict[int, float]]:
    """Per task, per seed: the test metric of an evaluation's chosen runs."""
    out: dict[str, dict[int, float]] = {}
    for key in result.get("runs") or []:
        r = store.get(key)
        if r is not None and r.status == "done" and r.test and r.metric in r.test:
            out.setdefault(r.task, {})[r.seed] = r.test[r.metric]
    return out


def _rows(entries: list[tuple[str, str, dict[str, Any]]], reference: dict[str, Any] | None,
          store: Store) -> list[dict[str, Any]]:
    """Per entry and task: the test metric's mean and 95% interval over seeds, and the mean paired
    difference from ``reference`` (paired by seed) with its p-value."""
    ref = per_seed(reference, store) if reference else {}
    rows = []
    for key, line, result in entries:
        row = {"key": key, "line": line, "crashed": result["crashed"], "params": result["params"],
               "state_bytes": result["state_bytes"], "tokens_per_s": result["tokens_per_s"], "tasks": {}}
        for task, seeds in per_seed(result, store).items():
            shared = sorted(set(seeds) & set(ref.get(task, {})))
            diff, p = None, None
            if shared and result is not reference:
                diff, p = paired_t_test([seeds[s] for s in shared], [ref[task][s] for s in shared])
            row["tasks"][task] = {"estimate": estimate(list(seeds.values())), "diff": diff, "p": p,
                                  "seeds": len(seeds)}
        rows.append(row)
    return rows


def leaderboard(spec: Spec, state: dict[str, Any], store: Store) -> list[dict[str, Any]]:
    """The final stage's rows, baseline first, each compared with the baseline paired by seed."""
    final = state.get("stages", {}).get("final")
    if not final:
        return []
    entries = [("baseline", spec.baseline.line(), final["baseline"])]
    entries += [(h, state["archive"][h]["line"], r) for h, r in final["genomes"].items()]
    return _rows(entries, final["baseline"], store)


def ablation(state: dict[str, Any], store: Store) -> list[dict[str, Any]]:
    """The winner and each of its reversions, compared with the winner paired by seed."""
    stages, winner = state.get("stages", {}), state.get("winner")
    if not stages.get("ablation") or winner not in stages.get("final", {}).get("genomes", {}):
        return []
    reference = stages["final"]["genomes"][winner]
    entries = [("winner", state["archive"][winner]["line"], reference)]
    entries += [(a["reverted"], a["line"], a) for a in stages["ablation"]]
    return _rows(entries, reference, store)
