"""Running a sweep: each run in its own process, results in the store, crashes recorded, resumable.

Every run executes in a fresh worker process (``--workers N`` at a time), which isolates crashes and
makes the peak-memory figure the run's own. A run writes checkpoints into ``runs/<key>/``; a sweep
killed midway is re-run with the same command and continues each unfinished run from its checkpoint.
After training, the best learning rate of each variant and task is chosen on validation only, and the
test metric is evaluated once, for the chosen runs.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trevo.arena.leaderboard import choose
from trevo.arena.store import Run, Store
from trevo.arena.sweep import PlannedRun, Sweep, SweepError, plan_sweep
from trevo.errors import TrevoError

DB_NAME = "arena.sqlite"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _flops_per_token(cfg) -> float:
    """Matmul FLOPs of one training step (forward + backward) per token, counted by PyTorch's
    FlopCounterMode (element-wise work, e.g. a recurrent scan's, is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from trevo.segments import train_segments
    from trevo.train import build, logits_of

    task, model = build(cfg)
    with FlopCounterMode(display=False) as counter:
        if task.info.segments > 1:  # the first step of a stream: its segments read through the memory
            logits, batch, _ = train_segments(model, task, 0, cfg.train.batch_size, cfg.train.seed,
                                              cfg.train.bptt_segments, None, cfg.train.device)
        else:  # on the model's device: a CPU batch into a CUDA model fails (and was recorded as a failed run)
            batch = {k: v.to(cfg.train.device) for k, v in
                     task.train_batch(0, cfg.train.batch_size, cfg.train.seed).items()}
            logits = logits_of(model, batch)
        task.loss(logits, batch).backward()
    return counter.get_total_flops() / batch["input"].numel()


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` runs at once: ``OMP_NUM_THREADS`` when it is set (a shared
    machine's cap: threads beyond a process's share of the cores spin at every parallel region and can
    slow a run down tenfold), else the cores this process may use, split between the workers."""
    cap = os.environ.get("OMP_NUM_THREADS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        return int(cap)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def _state_bytes(cfg) -> int | None:
    """Generation state after a prefill of the task's length (the weights do not change its size): on a
    task of segmented streams, a model that carries a memory across segments is measured after the whole
    stream (its memory, ``trevo.segments``), any other after one segment (all it ever reads at once);
    None for a model that does not generate (masked LM, classification)."""
    from trevo.generate import state_bytes_at
    from trevo.segments import memory_kind
    from trevo.train import build

    task, model = build(cfg)
    if not hasattr(model, "prefill"):
        return None
    segments = task.info.segments if memory_kind(model) != "none" else 1
    try:
        return state_bytes_at(model, task.info.seq_len * segments)
    except TrevoError:
        return None


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the sweep's process dies, however it dies (even SIGKILL),
    so that no orphan keeps training a run the re-started sweep wants to resume."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def run_fields(config: dict[str, Any], run_dir: str, eval_test: bool) -> dict[str, Any]:
    """Train one run and measure it: the fields of its row in the store (``status`` done, or failed
    with the error); never raises for the run's own failure. ``eval_test``: the run is chosen whatever
    its metric (no learning-rate sweep), so its test metric is evaluated here, once, instead of in a
    process of its own. The store is written by the caller: a local worker, or the Ray driver."""
    from trevo.config import RunConfig
    from trevo.train import train

    try:
        cfg = RunConfig.from_dict(config)
        baseline = _rss_mb()
        result = train(cfg, run_dir, resume=True, progress=False)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline
        if cfg.train.device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated(cfg.train.device) / 2**20
        fields = dict(status="done", metric=result["metric"], val=result["final"],
                      curves={"losses": result["losses"], "history": result["history"]},
                      params=result["params"], tokens_per_s=result["tokens_per_s"], wall_s=result["wall_s"],
                      peak_mem_mb=peak, flops_per_token=_flops_per_token(cfg), versions=result["versions"],
                      higher_is_better=int(result["higher_is_better"]), state_bytes=_state_bytes(cfg))
        if eval_test:
            fields["test"] = metrics_on_test(config, run_dir)
        return fields
    except Exception as e:  # a crashed run is recorded and the sweep goes on
        return {"status": "failed", "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"}


def execute_run(db_path: str, key: str, run_dir: str, threads: int, eval_test: bool) -> None:
    """Train one run in a worker process (``run_fields``) and record it in the store."""
    _die_with_parent()
    torch.set_num_threads(threads)
    store = Store(db_path)
    if not store.claim(key):
        return
    store.update(key, **run_fields(store.get(key).config, run_dir, eval_test))


def metrics_on_test(config: dict[str, Any], run_dir: str) -> dict[str, float]:
    """The test metrics of a finished run, from its final checkpoint (evaluated once)."""
    from trevo.checkpoint import CHECKPOINT, load_checkpoint
    from trevo.config import RunConfig
    from trevo.train import build, evaluate

    cfg = RunConfig.from_dict(config)
    task, model = build(cfg)
    load_checkpoint(Path(run_dir) / CHECKPOINT, model)
    return evaluate(model, task, "test", cfg.train.batch_size, cfg.train.eval_batches, cfg.train.device,
                    cfg.train.precision)


def evaluate_test(db_path: str, key: str, run_dir: str, threads: int) -> None:
    """``metrics_on_test`` of a run, in a worker process, recorded in the store."""
    torch.set_num_threads(threads)
    store = Store(db_path)
    store.update(key, test=metrics_on_test(store.get(key).config, run_dir))


def run_in_processes(jobs: list[tuple[Callable[..., Any], tuple]], workers: int,
                     on_exit: Callable[[int, int], None]) -> None:
    """Run each ``fn(*args)`` in a fresh spawned process, ``workers`` at a time; ``on_exit(index,
    exitcode)`` is called as each ends. A fresh process per job keeps runs from sharing memory peaks
    or state, and a run that kills its process (a segfault, the OOM killer) is seen by its exit code."""
    ctx = multiprocessing.get_context("spawn")
    pending = list(enumerate(jobs))
    running: dict[int, multiprocessing.process.BaseProcess] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                index, (fn, args) = pending.pop(0)
                proc = ctx.Process(target=fn, args=args)
                proc.start()
                running[index] = proc
            multiprocessing.connection.wait([p.sentinel for p in running.values()])
            for index, proc in list(running.items()):
                if not proc.is_alive():
                    proc.join()
                    del running[index]
                    on_exit(index, proc.exitcode)
    finally:
        for proc in running.values():
            proc.kill()


def changed_defaults(runs: list[Run]) -> list[str]:
    """For each finished run whose recorded resolved defaults (its stamp's) differ from what this trevo
    resolves for its config, the first difference: ``label: path.option was A, now B``. A run's key is
    the hash of its config as written, not of the defaults, so that an upgrade keeps the store's keys
    (its unfinished runs resume); a changed default is reported here instead of reused silently."""
    from trevo.config import RunConfig
    from trevo.runlog import resolved_defaults

    out = []
    for run in runs:
        recorded = (run.versions or {}).get("defaults")
        if recorded is None:
            continue  # recorded before trevo stamped runs
        now = json.loads(json.dumps(resolved_defaults(RunConfig.from_dict(run.config))))
        if now == recorded:
            continue
        diff = _first_difference(recorded, now)
        out.append(f"{run.label}: {diff}")
    return out


def _first_difference(recorded: dict[str, Any], now: dict[str, Any]) -> str:
    for path, spec in now.items():
        before = recorded.get(path, {})
        if before.get("name") != spec["name"]:
            return f"{path} was {before.get('name')!r}, now {spec['name']!r}"
        for name, value in spec["options"].items():
            if before.get("options", {}).get(name, "(absent)") != value:
                return f"{path}.{name} was {before.get('options', {}).get(name, '(absent)')!r}, now {value!r}"
    return "an option that was removed"


BACKENDS = ("local", "ray")
RESULT_FIELDS = ("metric", "higher_is_better", "val", "test", "curves", "params", "flops_per_token", "tokens_per_s",
                 "peak_mem_mb", "state_bytes", "wall_s", "versions", "error")


def supersede(run_dir: Path) -> None:
    """Move a run directory aside (to ``<name>.superseded-N``, the first N free) so the run starts afresh
    and nothing of the old one is lost."""
    if not run_dir.exists():
        return
    n = 1
    while run_dir.with_name(f"{run_dir.name}.superseded-{n}").exists():
        n += 1
    run_dir.rename(run_dir.with_name(f"{run_dir.name}.superseded-{n}"))


def run_sweep(sweep: Sweep, out_dir: str | Path, *, workers: int = 1, log: Callable[[str], None] = print,
              backend: str = "local", address: str | None = None,
              redo: list[str] | None = None) -> tuple[Store, list[Run]]:
    """Run every unfinished run of ``sweep`` into ``out_dir``; returns the store and the chosen runs.
    ``backend``: ``local`` (``workers`` processes at once) or ``ray`` (a Ray task per run, on the cluster
    at ``address`` or a local one; ``workers`` then only sets each run's share of this machine's threads).
    ``redo``: variant labels whose finished runs are trained again (after a fix to their component); their
    old run directories are kept beside the new ones as ``<key>.superseded-N``."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SweepError(f"--workers = {workers!r}: expected an integer ≥ 1 (runs at once)")
    if backend not in BACKENDS:
        raise SweepError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "ray":
        from trevo.arena.ray_backend import require_ray

        require_ray()  # before anything is planned or written
    out = Path(out_dir)
    plan: list[PlannedRun] = plan_sweep(sweep)  # raises before anything runs
    unknown = sorted(set(redo or ()) - {p.label for p in plan})
    if unknown:
        raise SweepError(f"--redo {','.join(unknown)}: not a variant of sweep {sweep.name!r}; its variants: "
                         f"{', '.join(dict.fromkeys(p.label for p in plan))}")
    db = str(out / DB_NAME)
    store = Store(db)
    store.add_sweep(sweep.name, sweep.baseline, sweep.description, sweep.spec, [p.key for p in plan])
    for p in plan:
        store.add(Run(key=p.key, sweep=sweep.name, label=p.label, family=p.family, task=p.task, seed=p.seed,
                      lr=p.lr, status="pending", config=p.config.to_dict()))
    for p in plan:
        if p.label in (redo or ()) and store.get(p.key).status in ("done", "failed"):
            supersede(out / "runs" / p.key)
            store.update(p.key, status="pending", **{name: None for name in RESULT_FIELDS})
    todo = [p for p in plan if store.get(p.key).status != "done"]
    changed = changed_defaults([store.get(p.key) for p in plan if p not in todo])
    if changed:
        log(f"note: {len(changed)} finished run(s) were trained with other component defaults than this trevo's "
            f"(e.g. {changed[0]}); their results are kept, not redone. To redo them with this trevo: --redo LABEL,…")
    log(f"arena {sweep.name!r}: {len(plan)} runs, {len(plan) - len(todo)} already done, {len(todo)} to run "
        f"with {workers} worker(s); results in {db}")
    threads = threads_per_worker(workers)
    start = time.perf_counter()
    finished = 0

    def report(index: int, exitcode: int) -> None:
        nonlocal finished
        finished += 1
        p = todo[index]
        r = store.get(p.key)
        if r.status == "running" and exitcode != 0:  # the process died without recording anything
            store.update(p.key, status="failed", error=f"the run's process died (exit code {exitcode})")
            r = store.get(p.key)
        if r.status == "done":
            detail = f"{r.metric} {r.val[r.metric]:.4f}, {r.params:,} params, {r.wall_s:.0f} s"
        else:
            detail = (r.error or "claimed by another process").splitlines()[0]
        wd = f" wd={p.weight_decay:g}" if len(sweep.weight_decays) > 1 else ""
        log(f"[{finished}/{len(todo)}] {p.task} / {p.label} lr={p.lr:g}{wd} seed={p.seed}: {r.status} ({detail})")

    eval_test = len(sweep.lrs) <= 1 and len(sweep.weight_decays) <= 1  # else only the chosen runs are tested
    if backend == "ray":
        _run_on_ray(store, todo, out, threads, eval_test, address, report)
    else:
        run_in_processes([(execute_run, (db, p.key, str(out / "runs" / p.key), threads, eval_test)) for p in todo],
                         workers, report)
    chosen = [r for r in choose([store.get(p.key) for p in plan]) if r.test is None]
    if backend == "ray":
        from trevo.arena.ray_backend import run_on_ray

        jobs = [(r.key, (r.config, str(out / "runs" / r.key)), _on_gpu(r.config)) for r in chosen]
        for key, metrics, error in run_on_ray(metrics_on_test, jobs, threads, address):
            if error is None:
                store.update(key, test=metrics)
    else:
        run_in_processes([(evaluate_test, (db, r.key, str(out / "runs" / r.key), threads)) for r in chosen],
                         workers, lambda index, code: None)
    log(f"arena {sweep.name!r} finished in {time.perf_counter() - start:.0f} s")
    return store, choose([store.get(p.key) for p in plan])


def _on_gpu(config: dict[str, Any]) -> bool:
    return str(config.get("train", {}).get("device", "cpu")).startswith("cuda")


def _run_on_ray(store: Store, todo: list[PlannedRun], out: Path, threads: int, eval_test: bool, address: str | None,
                report: Callable[[int, int], None]) -> None:
    """The runs of ``todo`` as Ray tasks; this process (the driver) alone writes the store."""
    from trevo.arena.ray_backend import run_on_ray

    index = {p.key: i for i, p in enumerate(todo)}
    jobs = [(p.key, (p.config.to_dict(), str(out / "runs" / p.key), eval_test), _on_gpu(p.config.to_dict()))
            for p in todo if store.claim(p.key)]
    for key, fields, error in run_on_ray(run_fields, jobs, threads, address):
        store.update(key, **(fields if error is None else {"status": "failed", "error": error}))
        report(index[key], 0)
