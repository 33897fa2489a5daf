"""``trevo knn RUN``: evaluate a trained causal LM with and without kNN-LM retrieval."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    s = sub.add_parser(name, help="kNN-LM: a trained LM interpolated with retrieval from its training contexts",
                       description="Build a datastore of (final hidden state, next token) from the run's training "
                                   "data, then report bits per token of the LM and of the kNN-LM interpolation "
                                   "(Khandelwal et al. 2020) on a split.")
    s.add_argument("run_dir", metavar="RUN", help="a run directory of a causal LM (byte_lm or token_lm)")
    s.add_argument("--store-batches", type=int, default=64, help="training batches stored in the datastore")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--k", type=int, default=8, help="neighbours retrieved")
    s.add_argument("--lam", type=float, default=0.25, help="the interpolation weight λ of p_kNN")
    s.add_argument("--temperature", type=float, default=1.0, help="τ in exp(−d/τ)")
    s.add_argument("--split", default="val", choices=("val", "test"))
    s.add_argument("--eval-batches", type=int, default=8)
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
