"""``trevo bench mixers`` and ``trevo bench ops`` (plugged into ``trevo`` by trevo/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trevo.bench.output import fmt
from trevo.dtypes import DTYPES
from trevo.errors import TrevoError
from trevo.validation import cli_number

POSITIVE = cli_number(int, ge=1)


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive lengths, got {text!r}")
    return out


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _progress(row: dict) -> None:
    what = row.get("mixer") or row.get("form")
    took = f"{fmt(row['ms'])} ms" if row.get("ms") is not None else ""
    extra = f" ({row['reason']})" if row.get("reason") else ""
    print(f"  {what:<28} {row['mode']:<8} T={row['length']:<6} {row['status']:<9} {took}{extra}"[:160],
          file=sys.stderr, flush=True)


def _check(args: argparse.Namespace) -> None:
    """What can be refused before anything is measured: a missing device or plotting library."""
    from trevo import plotting

    _check_device(args)
    if not args.no_plots and not plotting.available():
        raise plotting.MissingExtraError(f"the benchmark's plots need matplotlib, which is not installed: "
                                         f"{plotting.INSTALL}, or pass --no-plots")


def _check_device(args: argparse.Namespace) -> None:
    from trevo.config import ConfigError, TrainConfig
    from trevo.train import check_device
    from trevo.validation import check_field

    problem = check_field(TrainConfig, "device", args.device, "--device")
    if problem:
        raise ConfigError(problem)
    check_device(args.device, "--device")


def _mixers(args: argparse.Namespace) -> None:
    from trevo.bench import mixers, output

    _check(args)

    result = mixers.run(args.mixers, args.lengths, args.mode, d_model=args.d_model, batch=args.batch,
                        repeats=args.repeats, time_cap_s=args.time_cap, device=args.device, dtype=args.dtype,
                        seed=args.seed, isolate=not args.in_process, threads=args.threads, on_row=_progress)
    paths = output.write_results(result, args.out, f"mixers-{args.mode}")
    if not args.no_plots:
        paths["png"] = output.plot_mixers(result, args.out)
    print(output.mixer_table(result))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))


def _ops(args: argparse.Namespace) -> None:
    from trevo.bench import ops, output

    _check(args)

    result = ops.run(args.lengths, args.forms, isolate=not args.in_process, threads=args.threads,
                     on_row=_progress, batch=args.batch, n_heads=args.n_heads, head_dim=args.head_dim,
                     chunk_size=args.chunk_size, gate=args.gate, repeats=args.repeats, time_cap_s=args.time_cap,
                     recurrent_max_len=args.recurrent_max_len, device=args.device, dtype=args.dtype)
    paths = output.write_results(result, args.out, "ops")
    if not args.no_plots:
        paths["png"] = ops.plot(result, Path(args.out) / (output.stem(result["meta"], "ops") + ".png"))
    print(ops.table(result))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))


def _calibrate(args: argparse.Namespace) -> None:
    from trevo.bench import calibrate, output
    from trevo.bench.form_table import reload, user_table_path

    result = calibrate.run(args.mixers, args.lengths, modes=args.modes, chunk_sizes=args.chunk_sizes,
                           threads=args.threads, isolate=not args.in_process, on_row=_progress, d_model=args.d_model,
                           batch=args.batch, repeats=args.repeats, time_cap_s=args.time_cap, device=args.device,
                           dtype=args.dtype)
    paths = output.write_results(result, args.out, "calibrate")
    if args.check:
        table, fine = calibrate.check(result)
        print(table)
        print(f"\nauto within {calibrate.TOLERANCE:.2f}× of the fastest exact form at every point: "
              f"{'yes' if fine else 'NO'}")
    else:
        target = args.table or user_table_path(result["meta"]["device"])
        paths["table"] = calibrate.write_table(result, target)
        reload()
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))


def _peers(args: argparse.Namespace) -> None:
    from trevo.bench import output, peers

    _check_device(args)  # the peers table has no plots
    result = peers.run(args.pairs, args.lengths, args.modes, repeats=args.repeats, time_cap_s=args.time_cap,
                       threads=args.threads, isolate=not args.in_process, on_row=_peer_progress, device=args.device,
                       dtype=args.dtype)
    paths = output.write_results(result, args.out, "peers")
    print(peers.table(result))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))


def _peer_progress(row: dict) -> None:
    took = f"trevo {fmt(row.get('trevo_ms'))} ms, peer {fmt(row.get('peer_ms'))} ms" if row.get("trevo_ms") else ""
    print(f"  {row['pair']:<13} {row['peer'][:34]:<34} {row['mode']:<6} T={row['length']:<6} {row['status']:<9} {took}"
          f"{' (' + row['reason'] + ')' if row.get('reason') else ''}"[:200], file=sys.stderr, flush=True)


def _common(s: argparse.ArgumentParser, repeats: int) -> None:
    s.add_argument("--repeats", type=POSITIVE, default=repeats, help="timed calls per point after the warm-up")
    s.add_argument("--time-cap", type=cli_number(float, gt=0), default=30.0, metavar="S",
                   help="a point whose one call takes longer than S seconds is recorded as time_cap and the "
                        "longer lengths of that mixer/form are skipped (a hard limit of 5·S+60 s ends a stuck point)")
    s.add_argument("--out", default="runs/bench",
                   help="folder for the CSV, JSON and PNG files (default runs/bench); inside an arena output "
                        "folder (e.g. runs/arena/bench) `trevo report` adds a benchmark section")
    s.add_argument("--device", default="cpu", help="cpu or cuda (CUDA events time the calls there)")
    s.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    s.add_argument("--threads", type=POSITIVE,
                   help="torch threads (default: torch's own choice); on a shared or busy machine 1 avoids "
                        "thread-pool stalls that dominate small ops")
    s.add_argument("--in-process", action="store_true",
                   help="measure in this process instead of one child process per mixer/form (no isolation "
                        "from crashes; peak memory less clean)")
    s.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def _no_verb(args: argparse.Namespace) -> None:
    raise TrevoError("`trevo bench` needs a verb: `trevo bench mixers`, `ops`, `calibrate` or `peers` (see --help)")


def add_parser(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help="speed and memory of mixers and ops against sequence length",
                              description="Benchmarks: times, peak memory, ratios to softmax attention and "
                                          "log-log scaling exponents, written as CSV + JSON + PNG.")
    p.set_defaults(run=_no_verb)
    verbs = p.add_subparsers(dest="bench_verb")

    s = verbs.add_parser("mixers", help="every token mixer at matched width against sequence length",
                         description="Per mixer and length: time per token (median after warm-up), peak "
                                     "memory, ratio to softmax attention, log-log slopes, achieved FLOP/s as a "
                                     "fraction of this machine's matmul FLOP/s. Peak memory: "
                                     "torch.cuda.max_memory_allocated on CUDA; on CPU the resident-set "
                                     "high-water mark of the measuring child process, with glibc's mmap "
                                     "threshold pinned so that freed tensors leave it (trevo.bench.measure).")
    s.add_argument("--mixers", type=_names, help="comma-separated mixer names (default: every registered mixer)")
    s.add_argument("--lengths", type=_ints, default=[256, 1024, 4096], help="comma-separated sequence lengths")
    s.add_argument("--mode", choices=("fwd", "fwdbwd", "generate"), default="fwdbwd",
                   help="fwd (inference), fwdbwd (training), generate (prefill a context, then one step)")
    s.add_argument("--d-model", type=POSITIVE, default=256)
    s.add_argument("--batch", type=POSITIVE, default=1)
    s.add_argument("--seed", type=cli_number(int, ge=0, le=2**63 - 1), default=0)
    _common(s, repeats=5)
    s.set_defaults(run=_mixers)

    s = verbs.add_parser("ops", help="the linear-recurrence engine's forms against causal softmax attention",
                         description="Forward and forward+backward time of linear_recurrence per form and of "
                                     "causal SDPA at the same B, H, D; chunk/recurrent ratio, chunk slope, "
                                     "crossover length, chunk FLOP/s fraction.")
    s.add_argument("--lengths", type=_ints, default=[512, 1024, 2048, 4096, 8192, 16384])
    s.add_argument("--forms", type=_names, default=["quadratic", "chunk", "recurrent"])
    s.add_argument("--batch", type=POSITIVE, default=1)
    s.add_argument("--n-heads", type=POSITIVE, default=4)
    s.add_argument("--head-dim", type=POSITIVE, default=64)
    s.add_argument("--chunk-size", type=POSITIVE, default=64)
    s.add_argument("--gate", choices=("none", "scalar", "vector"), default="scalar",
                   help="log decay: none, one per head and step, or one per key channel and step")
    s.add_argument("--recurrent-max-len", type=POSITIVE, default=4096,
                   help="the recurrent form is skipped above this length (it takes T sequential steps)")
    _common(s, repeats=3)
    s.set_defaults(run=_ops)

    s = verbs.add_parser("calibrate", help="measure every exact form of every mixer and write the table auto uses",
                         description="Per mixer with several forms, per form, mode (fwdbwd, fwd) and length: the "
                                     "median time of a call; the fastest form per point becomes the choice of "
                                     "form=\"auto\" (trevo.bench.form_table). Written to --table (default "
                                     "~/.cache/trevo/form_table_<device>.json); a table shipped as "
                                     "trevo/bench/form_table_cpu.json is read last. --check compares instead of "
                                     "writing.")
    s.add_argument("--mixers", type=_names,
                   help="comma-separated mixer names (default: every mixer with several forms)")
    s.add_argument("--lengths", type=_ints, default=[256, 1024, 4096], help="comma-separated sequence lengths")
    s.add_argument("--modes", type=_names, default=["fwdbwd", "fwd"], help="fwdbwd (training), fwd (no_grad)")
    s.add_argument("--chunk-sizes", type=_ints, help="also measure the chunk form at each of these chunk sizes")
    s.add_argument("--table", help="where to write the table (default: the user table of this device)")
    s.add_argument("--check", action="store_true",
                   help="write nothing; show the time of auto's choice over the fastest form in this run")
    s.add_argument("--d-model", type=int, default=256)
    s.add_argument("--batch", type=int, default=1)
    _common(s, repeats=3)
    s.set_defaults(run=_calibrate, threads=1, time_cap=10.0)

    s = verbs.add_parser("peers", help="trevo's ops and mixers beside fla's and Hugging Face's torch references",
                         description="Per pair (see trevo.bench.peers.PAIRS), length and mode: both sides run on the "
                                     "same inputs, their agreement is checked (a pair that disagrees is not timed), "
                                     "then both are timed in this process; speedup = peer time / trevo time. Needs "
                                     "the peers extra (fla-core 0.6.0 without its dependencies, einops, transformers); "
                                     "with --device cuda fla's Triton kernels are peers too (Triton needed).")
    s.add_argument("--pairs", type=_names, help="comma-separated pairs (default: all)")
    s.add_argument("--lengths", type=_ints, default=[1024, 4096], help="comma-separated sequence lengths")
    s.add_argument("--modes", type=_names, default=["fwd", "fwdbwd"], help="fwd, fwdbwd")
    _common(s, repeats=5)
    s.set_defaults(run=_peers, threads=1, time_cap=120.0)
