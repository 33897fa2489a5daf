"""``trevo import hf``, ``trevo export``, ``trevo eval`` and ``trevo docs``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _offline() -> None:
    """Hugging Face libraries never reach the network from trevo."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _import(args: argparse.Namespace) -> None:
    from trevo.interop.hf_import import import_hf

    _offline()
    out = import_hf(args.path, args.out, seq_len=args.seq_len)
    print(f"imported {args.path} into {out}/ (config.yaml, checkpoint.safetensors). Next: "
          f"trevo eval {out} --data FILE, trevo generate --run {out}, or fine-tune with "
          f"trevo train --config {out}/config.yaml --set train.init_from={out}")


def _export(args: argparse.Namespace) -> None:
    from trevo.errors import TrevoError

    if args.format != "hf":
        raise TrevoError(f"export format {args.format!r} is not supported; formats: hf")
    _offline()
    try:
        from trevo.interop.hf_export import export_hf
    except ImportError:
        raise TrevoError("trevo export --format hf needs transformers: pip install 'trevo[hf]'") from None
    out = export_hf(args.run_dir, args.out)
    print(f"exported {args.run_dir} to {out}/. Load it with: import trevo.hf; "
          f"transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")


def _eval(args: argparse.Namespace) -> None:
    from trevo.interop.evaluate import evaluate_run

    _offline()
    metrics = evaluate_run(args.run_dir, args.data, args.split, args.batch_size, args.max_batches, args.seq_len)
    if args.json:
        print(json.dumps(metrics, indent=1))
        return
    where = args.data or f"the {args.split} split"
    print(f"{args.run_dir} on {where}:")
    for key, value in metrics.items():
        print(f"  {key:<10} {value:,.4f}" if isinstance(value, float) and not value.is_integer()
              else f"  {key:<10} {value:,.0f}")


def _docs(args: argparse.Namespace) -> None:
    from trevo.interop.site import write_site

    index = write_site(Path(args.out), results=args.results, bench=args.bench)
    print(f"catalogue written: {index} (open it in a browser; every page is static HTML)")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    if name == "import":
        s = sub.add_parser("import", help="import a model from another framework (hf: a Hugging Face folder)")
        kinds = s.add_subparsers(dest="import_format", required=True)
        v = kinds.add_parser("hf", help="a local Hugging Face model folder (config.json + model.safetensors)",
                             description="Map a Hugging Face model (rwkv, mamba, mamba2, llama, gpt2, perceiver) "
                                         "onto trevo components and write a trevo run directory. Reads safetensors "
                                         "only (never a pickle) and never the network.")
        v.add_argument("path", help="the model folder, as save_pretrained writes it")
        v.add_argument("--out", required=True, help="the trevo run directory to write")
        v.add_argument("--seq-len", type=int, help="the task's window length (default: the model's, at most 256)")
        v.set_defaults(run=_import)
    elif name == "export":
        s = sub.add_parser("export", help="export a trevo run (hf: a transformers folder for from_pretrained)")
        s.add_argument("run_dir", metavar="RUN", help="a run directory (trained or imported)")
        s.add_argument("--format", default="hf", help="hf (the only format so far)")
        s.add_argument("--out", required=True, help="the folder to write")
        s.set_defaults(run=_export)
    elif name == "eval":
        s = sub.add_parser("eval", help="evaluate a run: bits per byte / token, perplexity, accuracy",
                           description="Metrics of a run on a split of its task (default test) or on any file or "
                                       "folder (--data): text for language models, the task's data otherwise.")
        s.add_argument("run_dir", metavar="RUN", help="a run directory (trained or imported)")
        s.add_argument("--data", help="a file or folder to evaluate on (default: the run's task, --split)")
        s.add_argument("--split", default="test", choices=("val", "test"), help="the task split (without --data)")
        s.add_argument("--batch-size", type=int, default=8)
        s.add_argument("--max-batches", type=int, help="stop after this many batches (default: all)")
        s.add_argument("--seq-len", type=int, metavar="N",
                       help="language models: score windows of N tokens instead of the trained length (length "
                            "extrapolation)")
        s.add_argument("--json", action="store_true", help="machine-readable output")
        s.set_defaults(run=_eval)
    else:
        s = sub.add_parser("docs", help="write the component catalogue as a static site",
                           description="One page per registered component (paper, equation, capabilities, forms, "
                                       "complexity, bench figures and arena ranks when given) and a searchable index.")
        s.add_argument("--out", required=True, help="the folder to write the site into")
        s.add_argument("--results", help="an arena results database (arena.sqlite) for ranks")
        s.add_argument("--bench", help="a trevo bench output folder for speed figures")
        s.set_defaults(run=_docs)
