"""``trevo knn RUN``: evaluate a trained causal LM with and without kNN-LM retrieval. ``trevo context RUN``:
score continuations of long contexts with the context-extension tools (PCW, structured prompting, NBCE)
beside plain decoding of the last window and of the whole context. ``trevo inspect attention RUN``: draw
where a trained Perceiver's latents attend. ``trevo inspect value-aware RUN``: how far the best r-sparse
attention rows that ignore and that use the values are from a softmax layer's outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trevo.errors import TrevoError
from trevo.validation import cli_number


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    if name == "inspect":
        _add_inspect(sub, name)
        return
    if name == "context":
        _add_context_parser(sub, name)
        return
    s = sub.add_parser(name, help="kNN-LM: a trained LM interpolated with retrieval from its training contexts",
                       description="Build a datastore of (final hidden state, next token) from the run's training "
                                   "data, then report bits per token of the LM and of the kNN-LM interpolation "
                                   "(Khandelwal et al. 2020) on a split.")
    s.add_argument("run_dir", metavar="RUN", help="a run directory of a causal LM (byte_lm or token_lm)")
    s.add_argument("--store-batches", type=cli_number(int, ge=1), default=64,
                   help="training batches stored in the datastore")
    s.add_argument("--batch-size", type=cli_number(int, ge=1), default=16)
    s.add_argument("--k", type=cli_number(int, ge=1), default=8, help="neighbours retrieved")
    s.add_argument("--lam", type=cli_number(float, ge=0, le=1), default=0.25,
                   help="the interpolation weight λ of p_kNN")
    s.add_argument("--temperature", type=cli_number(float, gt=0), default=1.0, help="τ in exp(−d/τ)")
    s.add_argument("--split", default="val", choices=("val", "test"))
    s.add_argument("--eval-batches", type=cli_number(int, ge=1), default=8)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(run=_knn)


def _knn(args: argparse.Namespace) -> None:
    from trevo.api import load
    from trevo.tools.knn_lm import KNNLM

    model, cfg, task = load(args.run_dir)
    knn = KNNLM(model, k=args.k, lam=args.lam, temperature=args.temperature)
    knn.build(task, args.store_batches, args.batch_size, seed=cfg.train.seed)
    result = knn.evaluate(task.eval_batches(args.split, args.batch_size, args.eval_batches))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.split}: LM {result['bits_lm']:.4f} bits/token, kNN-LM {result['bits_knn_lm']:.4f} "
          f"(k={args.k}, λ={args.lam}, τ={args.temperature}; {result['datastore']:,} stored contexts, "
          f"{result['tokens']:,} tokens scored)")


def _add_inspect(sub: argparse._SubParsersAction, name: str) -> None:
    s = sub.add_parser(name, help="look inside a trained run")
    verbs = s.add_subparsers(dest="inspect_command", required=True)
    v = verbs.add_parser("attention", help="latent cross-attention maps of a Perceiver run",
                         description="Where each latent of a trained perceiver / perceiver_io / perceiver_mlm run "
                                     "attends over its input, on examples of a split: bytes as HTML with per-byte "
                                     "shading, images as heat maps; a summary of every latent in attention.json.")
    v.add_argument("run_dir", metavar="RUN", help="a run directory written by `trevo train` or `trevo import`")
    v.add_argument("--out", required=True, help="directory for attention.html / attention.png and attention.json")
    v.add_argument("--latents", type=cli_number(int, ge=1, le=256), default=8,
                   help="how many latents to draw (the most focused: lowest entropy)")
    v.add_argument("--examples", type=cli_number(int, ge=1, le=16), default=2, help="examples of the split")
    v.add_argument("--split", default="val", choices=("val", "test"))
    v.add_argument("--cross-attend", type=cli_number(int, ge=0), default=0,
                   help="which cross-attend of a repeated encoder (0: the first)")
    v.set_defaults(run=_attention)
    va = verbs.add_parser("value-aware", help="value-oblivious vs value-aware sparse approximation of attention rows",
                          description="For attention rows of one softmax-attention layer of a metaformer run, the "
                                      "output error ‖(a − â)V‖ / ‖aV‖ of the best r-sparse â that ignores the values "
                                      "(the r largest weights) and of the best one that uses them (Gupta & Berant "
                                      "2021, arXiv:2103.09857): an analysis, not a layer.")
    va.add_argument("run_dir", metavar="RUN", help="a run directory whose model has softmax attention layers")
    va.add_argument("--layer", type=cli_number(int, ge=0), default=0, help="which layer (0: the first)")
    va.add_argument("--rank", type=cli_number(int, ge=1), default=4, help="r, the non-zero weights kept per row")
    va.add_argument("--rows", type=cli_number(int, ge=1), default=64, help="rows sampled (examples × heads × queries)")
    va.add_argument("--examples", type=cli_number(int, ge=1, le=64), default=2, help="examples of the split")
    va.add_argument("--split", default="val", choices=("val", "test"))
    va.add_argument("--json", action="store_true", help="machine-readable output")
    va.set_defaults(run=_value_aware)


def _value_aware(args: argparse.Namespace) -> None:
    from trevo.api import load
    from trevo.tools.value_aware import analyse

    model, _, task = load(args.run_dir)
    batch = next(iter(task.eval_batches(args.split, args.examples, 1)))
    result = analyse(model, batch["input"], layer=args.layer, rank=args.rank, rows=args.rows)
    if args.json:
        print(json.dumps(result))
        return
    print(f"layer {result['layer']}, r = {result['rank']} of head width {result['head_dim']}, {result['rows']} rows "
          f"({result['exhaustive']} searched exhaustively, the rest by matching pursuit):")
    print(f"  value-oblivious ‖(a − â)V‖/‖aV‖  {result['oblivious']:.4f}")
    print(f"  value-aware     ‖(a − â)V‖/‖aV‖  {result['aware']:.4f}  (strictly better on "
          f"{100 * result['aware_better']:.0f}% of rows)")


def _attention(args: argparse.Namespace) -> None:
    import torch

    from trevo.api import load
    from trevo.tools.latent_attention import BYTE_VOCABS, attention_maps, describe, draw_images, enrichments, html_bytes

    model, _, task = load(args.run_dir)
    batch = next(iter(task.eval_batches(args.split, args.examples, 1)))
    with torch.no_grad():
        _, maps = attention_maps(model, batch["input"], batch.get("padding_mask"))
    if args.cross_attend >= len(maps):
        raise TrevoError(f"--cross-attend {args.cross_attend}: this model has {len(maps)} cross-attend(s)")
    weights = maps[args.cross_attend].mean(dim=1).double()  # heads averaged: [B, N, M]
    info, inputs = task.info, batch["input"]
    is_bytes = inputs.dim() == 2 and info.vocab_size in BYTE_VOCABS and len(info.layout or (1,)) == 1
    points = getattr(info, "coordinate_dims", 0) if getattr(info, "unordered", False) else 0
    stats = [describe(w, inputs[i] if is_bytes else None, inputs[i, :, :points].double() if points else None)
             for i, w in enumerate(weights)]
    latents = sorted(range(weights.shape[1]), key=lambda n: stats[0][n]["entropy_bits"])[:args.latents]
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "attention.json").write_text(json.dumps({"run": str(args.run_dir), "split": args.split,
                                                        "inputs": weights.shape[2], "latents": stats}, indent=1))
        if is_bytes:
            path = out / "attention.html"
            path.write_text("\n".join(html_bytes(inputs[i], weights[i], latents, stats[i])
                                       for i in range(len(inputs))), encoding="utf-8")
        elif info.layout and len(info.layout) == 2:
            path = out / "attention.png"
            draw_images(weights.float(), tuple(info.layout), latents, path, inputs if inputs.dim() == 2 else None)
        else:
            path = out / "attention.json"
    except OSError as e:
        raise TrevoError(f"cannot write into {out}: {e.strerror}; choose another --out") from None
    uniform = torch.log2(torch.tensor(float(weights.shape[2])))
    print(f"{weights.shape[1]} latents over {weights.shape[2]} inputs (uniform: {uniform:.2f} bits); "
          f"the {len(latents)} most focused, example 0:")
    for n in latents:
        s = stats[0][n]
        where = (f"centre ({', '.join(f'{c:+.2f}' for c in s['point'])}), radius {s['radius']:.2f}" if points else
                 f"centre {s['mean_pos']:6.1f}, spread {s['spread']:6.1f}  {enrichments(s)}")
        print(f"  latent {n:>3}: {s['entropy_bits']:.2f} bits, {where}")
    print(f"written to {path}")


def _add_context_parser(sub: argparse._SubParsersAction, name: str) -> None:
    s = sub.add_parser(name, help="score long contexts with PCW, structured prompting and NBCE",
                       description="For windows of a split, read --context tokens as windows of --window tokens "
                                   "(the last --prompt of them kept as the prompt), and report bits per token of "
                                   "the next --continuation tokens under each method: the last window alone "
                                   "(truncation), Parallel Context Windows, structured prompting, NBCE, and the "
                                   "whole context (past the training length for most models).")
    s.add_argument("run_dir", metavar="RUN", help="a run directory of a causal LM (byte_lm or token_lm)")
    s.add_argument("--window", type=cli_number(int, ge=1), default=48, help="tokens per window")
    s.add_argument("--context", type=cli_number(int, ge=2), default=192, help="context tokens (prompt included)")
    s.add_argument("--prompt", type=cli_number(int, ge=1), default=8, help="the context's last tokens, kept as "
                   "the prompt every window is read with")
    s.add_argument("--continuation", type=cli_number(int, ge=1), default=16, help="tokens scored")
    s.add_argument("--samples", type=cli_number(int, ge=1), default=8, help="sequences scored")
    s.add_argument("--split", default="val", choices=("val", "test"))
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(run=_context)


def _context(args: argparse.Namespace) -> None:
    import math

    import torch

    from trevo.api import load
    from trevo.errors import TrevoError
    from trevo.tools.nbce import NBCE
    from trevo.tools.parallel_context import ParallelContextWindows, StructuredPrompting

    if args.prompt >= args.context:
        raise TrevoError(f"--prompt ({args.prompt}) must be shorter than --context ({args.context})")
    model, _, task = load(args.run_dir)
    data = task.corpus.split(args.split) if hasattr(task, "corpus") else None
    if data is None:
        raise TrevoError("trevo context reads the run's text corpus: use a byte_lm run")
    span = args.context + args.continuation
    starts = torch.linspace(0, data.numel() - span - 1, args.samples).long()
    pcw = ParallelContextWindows(model, window=args.window)
    methods = {"last window": lambda w, p, c: pcw.continuation_log_probs(w[-1:], p, c),
               "pcw": pcw.continuation_log_probs,
               "structured prompting": StructuredPrompting(model).continuation_log_probs,
               "nbce": NBCE(model, window=args.window).continuation_log_probs,
               "whole context": lambda w, p, c: pcw.continuation_log_probs([torch.cat(w, 1)], p, c)}
    totals = dict.fromkeys(methods, 0.0)
    for start in starts.tolist():
        sequence = data[start:start + span].long()[None]
        context, continuation = sequence[:, :args.context], sequence[:, args.context:]
        windows, prompt = pcw.split(context[:, :-args.prompt]), context[:, -args.prompt:]
        for name, score in methods.items():
            totals[name] -= float(score(windows, prompt, continuation).sum())
    count = args.samples * args.continuation
    result = {name: total / count / math.log(2) for name, total in totals.items()}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.split}: bits per token of {args.continuation} tokens after {args.context} of context "
          f"(windows of {args.window}, prompt {args.prompt}; {args.samples} samples)")
    for name, bits in result.items():
        print(f"  {name:22s} {bits:.4f}")
