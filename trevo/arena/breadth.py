"""The must-show table of issue 18 (the index's Tier-A token mixers and architectures): one row per
registered component of the issue's list.

``python -m trevo.arena.breadth [--db OUT/arena.sqlite] [--bench BENCH_DIR …] [--context 1024]`` prints, per
component: its registered name, the tests of its defining property (the test functions of its test file
that name it), how it trains (each task's mean test metric over the chosen runs of an arena store),
``trevo bench mixers`` ms at T = 1024 and 4096 with the ratio to softmax attention (from a bench output
directory), and the bytes of its generation state after a prefill of ``--context`` tokens, computed as the
arena computes them (``trevo.generate.state_bytes_at``) on a reference model: ``REFERENCE`` with the
component as every layer's mixer (Skip-Attention after an attention layer). A cell without data says
"not run". Nothing is trained or benchmarked here.

The list is issue 18's, by hand (``ISSUE_18``): CATALOGUE.md's Tier A less the mixers trevo had before the
issue, each item mapped to the names it is registered under; the registry's ``category`` alone cannot say
which mixers came from the issue (the frontier mixers share its categories).
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trevo.errors import TrevoError
from trevo.registry import entries, get, where_tested
from trevo.tables import Table, markdown
from trevo.validation import cli_number

if TYPE_CHECKING:
    from trevo.arena.store import Run

NOT_RUN = "not run"
LENGTHS = (1024, 4096)
# The reference model for the state column: a 2-layer byte LM at the arena's quick-preset shape.
REFERENCE = {"model.d_model": 64, "model.n_layers": 2, "model.channel": {"name": "swiglu", "expand": 4},
             "model.norm": "rmsnorm", "model.position": "none", "task.name": "byte_lm"}


@dataclass(frozen=True)
class Item:
    """One component of the issue's list: its index category, its name in the issue, and the names it is
    registered under (``kind``: mixer unless it is a model, a tool or an arena preset)."""

    category: str
    component: str
    names: tuple[str, ...]
    kind: str = "mixer"


def _items(category: str, *rows: tuple) -> list[Item]:
    return [Item(category, r[0], tuple(r[1].split()), *r[2:]) for r in rows]


ISSUE_18: list[Item] = [
    *_items("FFT", ("AFNO", "afno afno_2d"), ("FNO layer", "fno fno_2d")),
    *_items("LocalGlobal", ("Neighborhood Attention", "neighborhood_attention"),
            ("NesT block-local attention", "nest_block_attention"), ("CrossFormer LSDA", "crossformer_attention"),
            ("FMMformer", "fmmformer"), ("adaptive attention span", "adaptive_span"),
            ("CoLT5 conditional routing", "colt5_attention")),
    *_items("MatrixMethod", ("Skyformer", "skyformer"),
            ("Hamburger (NMF, VQ, CD)", "hamburger hamburger_vq hamburger_cd")),
    *_items("RightProduct", ("Kronecker attention", "kronecker_attention"), ("FourierFormer", "fourierformer"),
            ("random feature attention, LARA", "rfa lara"), ("UFO-ViT (XNorm)", "ufo_attention"),
            ("SimpleTRON", "simpletron"),
            # DAFT (OpenReview JVR4JswsEM) is the AFT paper retitled by its authors: DAFT-full, DAFT-conv.
            ("DAFT (= AFT-full, AFT-conv)", "aft_full aft_conv"),
            ("learned-kernel attention", "learned_kernel_attention"), ("Momentum Transformer", "momentum_attention")),
    *_items("SparseOrLowRank", ("Scatterbrain", "scatterbrain"), ("blockwise attention", "blockwise_attention"),
            ("H-Transformer-1D", "h_transformer_1d"), ("ChunkFormer", "chunkformer"),
            ("LogSparse", "logsparse_attention"),
            ("clustered attention (and improved)", "clustered_attention improved_clustered_attention"),
            ("Long-Short Transformer", "long_short_attention"), ("LongT5 transient-global", "longt5_transient_global"),
            ("Luna", "luna"), ("separable self-attention", "separable_attention"), ("YOSO", "yoso yoso_e"),
            ("simple local attentions", "block_local_attention")),
    *_items("Others", ("Synthesizer factorized", "synthesizer_factorized_dense synthesizer_factorized_random"),
            ("Combiner", "combiner"), ("ripple attention", "ripple_attention"), ("Sinkformer", "sinkformer"),
            ("SOFT", "soft"), ("value-aware approximate attention (an analysis)", "value_aware_attention", "tool"),
            ("EL-attention", "el_attention"), ("Flowformer", "flowformer"),
            ("ETSformer exponential smoothing attention", "exponential_smoothing_attention"), ("IGLOO", "igloo"),
            ("skip-attention", "skip_attention"), ("Average Attention Network", "average_attention"),
            ("Slot Attention", "slot_attention")),
    *_items("LongConv", ("TaLK convolutions", "talk"), ("CKConv, FlexConv", "ckconv flexconv"), ("CCNN", "ccnn"),
            ("Legendre Memory Unit (parallel)", "lmu"), ("BiGS", "bigs")),
    *_items("Rnn", ("SRU, SRU++", "sru sru_pp"), ("QRNN", "qrnn"), ("recurrent fast weight programmers", "rfwp"),
            ("parallel linear-RNN scan (GILR-LSTM)", "gilr_lstm"), ("HGRN v1", "hgrn")),
    *_items("S4", ("S4 (DPLR, Cauchy + Woodbury)", "s4")),
    *_items("Arch", ("Hourglass", "hourglass", "model"), ("Branchformer", "branchformer"),
            ("HyperMixer", "hypermixer"), ("kNN-LM", "knn_lm", "tool"),
            ("Deeper vs Wider (an arena preset)", "deeper_vs_wider", "preset")),
    *_items("CrossAttention", ("ByteNet dilated convolutions", "bytenet")),
]


# Words in a test's name that say it checks a property against a reference, not an error or a shape.
PROPERTY_WORDS = ("equal", "match", "formula", "loop", "by_hand", "brute", "reference", "exact", "definition", "_is_")
# The defining test, by hand, where the test file calls the op or class rather than the registered name (so
# that the search by name cannot find it) or shares one file between forms.
DEFINING = {
    "afno": "test_afno_matches_a_numpy_loop_over_frequencies_and_blocks",
    "fno": "test_fno_single_mode_response_is_r_times_the_mode_and_high_modes_are_cut",
    "fno_2d": "test_fno_2d_matches_numpy_truncated_spectral_multiplication",
    "hamburger": "test_ham_is_the_reconstruction_after_the_multiplicative_updates",
    "hamburger_vq": "test_vq_replaces_each_column_by_the_mean_of_its_cluster",
    "hamburger_cd": "test_cd_reconstructs_a_matrix_of_rank_at_most_the_number_of_concepts",
    "lara": "test_lara_converges_to_softmax_attention_as_samples_grow",
    "clustered_attention": "test_clustered_output_is_the_centroid_attention",
    "improved_clustered_attention": "test_improved_equals_its_formula",
    "yoso": "test_collision_frequency_matches_the_closed_form",
}


def defining_tests(kind: str, name: str, root: Path) -> str:
    """``file::test`` for the tests of the component's own test file that are about it — all of the file's
    when it is the only component tested there, else those whose source names it (its registered name or
    its class) — the one whose name says it checks a property against a reference first, and how many
    more; the file alone when none is found, "" when there is no test file."""
    if kind == "preset":
        return "tests/arena/test_sweep.py::test_every_preset_plans"
    entry = get(kind, name)
    path = where_tested(entry)
    if not path or not (root / path).is_file():
        return ""
    source = (root / path).read_text()
    alone = [e.name for e in entries(kind) if where_tested(e) == path] == [name]
    words = {f'"{name}"', f"'{name}'", getattr(entry.factory, "__name__", name)}
    tests = [node.name for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.FunctionDef) and node.name.startswith("test")
             and (alone or node.name == DEFINING.get(name)
                  or any(w in (ast.get_source_segment(source, node) or "") for w in words))]
    if not tests:
        return path
    tests.sort(key=lambda t: (t != DEFINING.get(name), not any(w in t for w in PROPERTY_WORDS)))
    return f"{path}::{tests[0]}" + (f" (+{len(tests) - 1})" if len(tests) > 1 else "")


def stored_runs(db: str | None) -> list[tuple[Run, set[str]]] | None:
    """The store's chosen runs, each with the mixers of its layers (read once for the whole table); None
    without a store."""
    if db is None:
        return None
    from trevo.arena.leaderboard import choose
    from trevo.arena.store import Store

    return [(r, _mixers_of(r.config)) for r in choose(Store(db).runs())]


def trained(name: str, runs: list[tuple[Run, set[str]]] | None) -> str:
    """Per task and variant that uses ``name`` (its label, or a mixer of its layers), the mean test metric of
    the chosen runs (validation where a run has no test metrics), with the number of runs."""
    if runs is None:
        return NOT_RUN
    runs = [r for r, mixers in runs if r.label == name or name in mixers]
    cells = []
    for task, label in sorted({(r.task, r.label) for r in runs}):
        mine = [r for r in runs if (r.task, r.label) == (task, label)]
        split = "test" if all(r.test for r in mine) else "val"
        values = [(r.test if split == "test" else r.val)[r.metric] for r in mine]
        variant = "" if label == name else f", as {label}"
        cells.append(f"{task} {mine[0].metric} {statistics.fmean(values):.4f} ({len(mine)} runs, {split}{variant})")
    return "; ".join(cells) or NOT_RUN


def _mixers_of(config: dict) -> set[str]:
    """The mixers of a stored run's layers (its config as the store keeps it: ``RunConfig.to_dict()``)."""
    from trevo.config import RunConfig
    from trevo.models.layers import resolve_layers

    return {layer.mixer.name for layer in resolve_layers(RunConfig.from_dict(config).model)}


def bench_rows(bench_dirs: Sequence[str] = ()) -> list[dict]:
    """The timed rows of every ``trevo bench mixers`` result in ``bench_dirs`` (forward + backward preferred;
    among results of one mode, the first directory's)."""
    import json

    for bench_dir in bench_dirs:
        if not Path(bench_dir).is_dir():
            raise TrevoError(f"no benchmark directory at {bench_dir}; give the --out of `trevo bench mixers`")
    results = []
    paths = [(order, path) for order, d in enumerate(bench_dirs) for path in sorted(Path(d).glob("mixers-*.json"))]
    for order, path in paths:
        try:
            result = json.loads(path.read_text())
            mode = result["meta"]["mode"]
        except (OSError, ValueError, KeyError, TypeError):
            raise TrevoError(f"{path} is not a `trevo bench mixers` result (JSON with meta.mode and rows)") from None
        if mode != "generate":
            results.append(((mode != "fwdbwd", order), result["rows"]))
    return [row for _, rows in sorted(results, key=lambda r: r[0]) for row in rows]


def bench_cell(name: str, rows: list[dict]) -> str:
    """Per length: the first timed row of ``name``, or the first that was not timed (a time cap, a crash) with
    its reason."""
    cells = []
    for length in LENGTHS:
        mine = [r for r in rows if r.get("mixer") == name and r.get("length") == length]
        row = next((r for r in mine if r.get("status") == "ok" and r.get("ms") is not None), None)
        if row is not None:
            ratio = row.get("ratio_to_softmax")
            cells.append(f"T={length}: {row['ms']:.1f} ms" + (f" ({ratio:.2f}× softmax)" if ratio else ""))
        elif mine:
            reason = mine[0].get("reason")
            cells.append(f"T={length}: {mine[0].get('status')}" + (f" ({reason})" if reason else ""))
    return "; ".join(cells) or NOT_RUN


def state_bytes(name: str, context: int) -> str:
    """Bytes of generation state after ``context`` tokens in the reference model (its KV caches or recurrent
    states), as the arena's runner computes them."""
    from trevo.config import RunConfig
    from trevo.generate import state_bytes_at
    from trevo.models.layers import reuses_attention
    from trevo.train import build

    entry = get("mixer", name)
    if not entry.causal:
        return "no generation (bidirectional only)"
    if entry.needs_2d:
        return "no generation (2-D only)"
    layers = [{"mixer": {"name": "softmax_attention"}}, {}] if reuses_attention(name) else []
    cfg = RunConfig().replace({**REFERENCE, "model.mixer": {"name": name}, "model.layers": layers,
                               "task.seq_len": context, "model.max_len": context})
    try:
        _, model = build(cfg)
        with torch.no_grad():
            n = state_bytes_at(model, context)
    except TrevoError as e:
        return f"not computed ({e})"
    return f"{n:,}" + (" (with the attention layer before it)" if layers else "")


def rows(db: str | None = None, bench_dirs: Sequence[str] = (), context: int = 1024, state: bool = True,
         items: list[Item] | None = None, root: Path | None = None) -> list[list[str]]:
    """The table's rows: one per registered name of every item."""
    root = Path(__file__).resolve().parents[2] if root is None else root
    timed, runs = bench_rows(bench_dirs), stored_runs(db)
    out = []
    for item in ISSUE_18 if items is None else items:
        for name in item.names:
            if item.kind != "mixer":
                what = f"not a mixer ({item.kind})"
                out.append([item.component, name, defining_tests(item.kind, name, root) or NOT_RUN,
                            trained(name, runs) if item.kind == "model" else what, what, what])
                continue
            out.append([item.component, name, defining_tests("mixer", name, root) or NOT_RUN, trained(name, runs),
                        bench_cell(name, timed), state_bytes(name, context) if state else NOT_RUN])
    return out


def table(body: list[list[str]], context: int) -> Table:
    header = ["component", "registered name", "defining-property test", "trains (arena)",
              "bench ms (T=1024, 4096) × softmax", f"state bytes at {context} tokens"]
    return Table(header, body, left=set(range(6)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trevo.arena.breadth", description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="an arena results store (OUT/arena.sqlite) for the trains column")
    parser.add_argument("--bench", action="append", default=[],
                        help="the --out directory of `trevo bench mixers` for the speed column (repeatable)")
    parser.add_argument("--context", type=cli_number(int, ge=1), default=1024,
                        help="tokens prefilled before the state is measured (default 1024)")
    parser.add_argument("--no-state", action="store_true", help="skip building models for the state column")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.db and not Path(args.db).is_file():
        print(f"trevo: error: no results database at {args.db}; run `trevo arena` first", file=sys.stderr)
        return 2
    try:
        print(markdown(table(rows(args.db, args.bench, args.context, not args.no_state), args.context)))
    except TrevoError as e:
        print(f"trevo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
