"""Running a sweep: each run in its own process, results in the store, crashes recorded, resumable.

Every run executes in a fresh worker process (``--workers N`` at a time), which isolates crashes and
makes the peak-memory figure the run's own. A run writes checkpoints into ``runs/<key>/``; a sweep
killed midway is re-run with the same command and continues each unfinished run from its checkpoint.
After training, the best learning rate of each variant and task is chosen on validation only, and the
test metric is evaluated once, for the chosen runs.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from trevo.arena.store import Run, Store
from trevo.arena.sweep import PlannedRun, Sweep, plan_sweep

DB_NAME = "arena.sqlite"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _flops_per_token(cfg) -> float:
    """Matmul FLOPs of one training step (forward + backward) per token, counted by PyTorch's
    FlopCounterMode (element-wise work, e.g. a recurrent scan's, is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from trevo.train import build

    task, model = build(cfg)
    batch = task.train_batch(0, cfg.train.batch_size, cfg.train.seed)
    with FlopCounterMode(display=False) as counter:
        task.loss(model(batch["input"], batch.get("padding_mask")), batch).backward()
    return counter.get_total_flops() / batch["input"].numel()


def execute_run(db_path: str, key: str, run_dir: str, threads: int) -> tuple[str, str]:
    """Train one run (in a worker process) and record it; never raises for the run's own failure."""
    from trevo.config import RunConfig
    from trevo.train import train

    torch.set_num_threads(threads)
    store = Store(db_path)
    if not store.claim(key):
        return key, "skipped"
    run = store.get(key)
    try:
        cfg = RunConfig.from_dict(run.config)
        baseline = _rss_mb()
        result = train(cfg, run_dir, resume=True, progress=False)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline
        if cfg.train.device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2**20
        store.update(key, status="done", metric=result["metric"], val=result["final"],
                     curves={"losses": result["losses"], "history": result["history"]},
                     params=result["params"], tokens_per_s=result["tokens_per_s"], wall_s=result["wall_s"],
                     peak_mem_mb=peak, flops_per_token=_flops_per_token(cfg), versions=result["versions"],
                     higher_is_better=int(result["higher_is_better"]))
        return key, "done"
    except Exception as e:  # a crashed run is recorded and the sweep goes on
        store.update(key, status="failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}")
        return key, "failed"


def evaluate_test(db_path: str, key: str, run_dir: str, threads: int) -> dict[str, float]:
    """The test metrics of a finished run, from its final checkpoint (evaluated once)."""
    from trevo.checkpoint import CHECKPOINT, load_checkpoint
    from trevo.config import RunConfig
    from trevo.train import build, evaluate

    torch.set_num_threads(threads)
    store = Store(db_path)
    cfg = RunConfig.from_dict(store.get(key).config)
    task, model = build(cfg)
    load_checkpoint(Path(run_dir) / CHECKPOINT, model)
    metrics = evaluate(model, task, "test", cfg.train.batch_size, cfg.train.eval_batches, cfg.train.device)
    store.update(key, test=metrics)
    return metrics


def choose(runs: list[Run]) -> list[Run]:
    """Per (task, variant): the runs of the learning rate with the best mean validation metric."""
    groups: dict[tuple[str, str], dict[float, list[Run]]] = {}
    for r in runs:
        if r.status == "done":
            groups.setdefault((r.task, r.label), {}).setdefault(r.lr, []).append(r)
    chosen = []
    for by_lr in groups.values():
        def score(lr: float, by_lr=by_lr) -> float:
            rs = by_lr[lr]
            mean = statistics.fmean(r.val[r.metric] for r in rs)
            return -mean if rs[0].higher_is_better else mean
        chosen.extend(by_lr[min(by_lr, key=score)])
    return chosen


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               max_tasks_per_child=1)


def run_sweep(sweep: Sweep, out_dir: str | Path, *, workers: int = 1,
              log: Callable[[str], None] = print) -> tuple[Store, list[Run]]:
    """Run every unfinished run of ``sweep`` into ``out_dir``; returns the store and the chosen runs."""
    out = Path(out_dir)
    plan: list[PlannedRun] = plan_sweep(sweep)  # raises before anything runs
    store = Store(out / DB_NAME)
    store.add_sweep(sweep.name, sweep.baseline, sweep.description, sweep.spec)
    for p in plan:
        store.add(Run(key=p.key, sweep=sweep.name, label=p.label, family=p.family, task=p.task, seed=p.seed,
                      lr=p.lr, status="pending", config=p.config.to_dict()))
    todo = [p for p in plan if store.get(p.key).status != "done"]
    log(f"arena {sweep.name!r}: {len(plan)} runs, {len(plan) - len(todo)} already done, {len(todo)} to run "
        f"with {workers} worker(s); results in {out / DB_NAME}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    by_key = {p.key: p for p in plan}
    start = time.perf_counter()
    with _pool(workers) as pool:
        futures = [pool.submit(execute_run, str(out / DB_NAME), p.key, str(out / "runs" / p.key), threads)
                   for p in todo]
        for i, future in enumerate(as_completed(futures), 1):
            key, status = future.result()
            p, r = by_key[key], store.get(key)
            detail = (f"{r.metric} {r.val[r.metric]:.4f}, {r.params:,} params, {r.wall_s:.0f} s" if status == "done"
                      else (r.error or "").splitlines()[0] if status == "failed" else "claimed by another process")
            log(f"[{i}/{len(todo)}] {p.task} / {p.label} lr={p.lr:g} seed={p.seed}: {status} ({detail})")
    chosen = choose([store.get(p.key) for p in plan])
    pending = [r for r in chosen if r.test is None]
    with _pool(workers) as pool:
        for future in [pool.submit(evaluate_test, str(out / DB_NAME), r.key, str(out / "runs" / r.key), threads)
                       for r in pending]:
            future.result()
    log(f"arena {sweep.name!r} finished in {time.perf_counter() - start:.0f} s")
    return store, [store.get(r.key) for r in chosen]


def failed_runs(store: Store, sweep: str) -> list[dict[str, Any]]:
    return [{"task": r.task, "label": r.label, "seed": r.seed, "error": r.error}
            for r in store.runs(sweep) if r.status == "failed"]
