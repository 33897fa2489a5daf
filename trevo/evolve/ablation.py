"""The winner's ablation: each of its differences from the baseline reverted one at a time.

A difference is a field kind (mixer, channel, norm, residual, relative position) in which some layer of
the winner differs from the baseline's layer at the same place (layers aligned cyclically), the depth,
the absolute position, or the head tying. Reverting one sets it to the baseline's in every layer and
keeps the rest of the winner. A relative position acts inside its mixer, so reverting the mixer reverts
the layer's relative position with it (the baseline's ``attn+rope``, not attention without positions,
which would measure the missing position rather than the winner's mixer); a reverted genome that is not
valid for the search's tasks (e.g. RoPE on a mixer that takes no relative position) is skipped with its
reason. Each reverted genome is trained at the final stage with the winner's seeds and learning rates,
so each difference's worth is measured paired by seed, as the Evolved Transformer's and Primer's
ablations were (So et al. 2019, 2021).
"""

from __future__ import annotations

from trevo.evolve.operators import FIELD_KINDS
from trevo.models.genome import Genome
from trevo.tasks.base import TaskInfo


def reversions(winner: Genome, baseline: Genome, infos: list[TaskInfo]) -> tuple[list[tuple[str, Genome]], list[str]]:
    """(what was reverted, the reverted genome) for every difference, and the reasons some were skipped."""
    base = baseline.layers
    candidates = []
    for kind in FIELD_KINDS:
        if any(getattr(g, kind) != getattr(base[i % len(base)], kind) for i, g in enumerate(winner.layers)):
            fields = ("mixer", "position") if kind == "mixer" else (kind,)
            layers = [g.replace(**{f: getattr(base[i % len(base)], f) for f in fields})
                      for i, g in enumerate(winner.layers)]
            moved = any(g.position != b.position for g, b in zip(winner.layers, layers, strict=True))
            what = "mixer and its relative position" if kind == "mixer" and moved else kind
            candidates.append((f"{what} → baseline's", Genome.of(layers, winner.d_model, position=winner.position,
                                                                 tie_embeddings=winner.tie_embeddings)))
    if winner.n_layers != baseline.n_layers:
        candidates.append((f"depth {winner.n_layers} → {baseline.n_layers}",
                           Genome.of(winner.pattern, winner.d_model, baseline.n_layers, position=winner.position,
                                     tie_embeddings=winner.tie_embeddings)))
    if winner.position != baseline.position:
        candidates.append(("absolute position → baseline's", winner.replace(position=baseline.position)))
    if winner.tie_embeddings != baseline.tie_embeddings:
        candidates.append(("head tying → baseline's", winner.replace(tie_embeddings=baseline.tie_embeddings)))
    kept, skipped, seen = [], [], {winner, baseline}
    for what, genome in candidates:
        problems = [p for info in infos for p in genome.problems(info)]
        if problems:
            skipped.append(f"{what}: {problems[0]}")
        elif genome not in seen:
            seen.add(genome)
            kept.append((what, genome))
    return kept, skipped
