"""Running benchmark points so that one bad point never stops the benchmark.

A point is a plain dict (what to measure); a measure function turns it into a row (the point plus
what was measured, with a ``status``). Points are grouped (one group per mixer or per form) and run
shortest first. With ``isolate=True`` each group runs in its own spawned child process, so that
peak memory is the child's alone and a point that is killed by the operating system (out of memory)
or runs past the hard time limit is recorded as such: the child is ended and the rest of its group,
being longer, is skipped with the reason. Statuses: ``ok``, ``time_cap`` (one call ran longer than
the time cap: its time is kept, or the child is ended when the call is still running well past the
cap, see ``heartbeat``), ``oom``, ``error``, ``timeout``, ``crashed`` and
``skipped``.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import torch

from trevo.bench.measure import is_out_of_memory

Row = dict[str, Any]
Measure = Callable[[Row], Row]

# A point that ended with one of these makes the longer points of its group pointless.
STOPS_GROUP = ("time_cap", "oom", "timeout", "crashed")


def failure_row(point: Row, exc: BaseException) -> Row:
    status = "oom" if is_out_of_memory(exc) else "error"
    return {**point, "status": status, "reason": f"{type(exc).__name__}: {exc}"[:400]}


def measure_safely(measure: Measure, point: Row) -> Row:
    try:
        return measure(point)
    except Exception as exc:  # a failing point is a result, not the end of the benchmark
        return failure_row(point, exc)


_CONN = None  # in a child: the pipe to the parent


def heartbeat() -> None:
    """Called by a measure function once its first (warm-up) call is done: from then on the parent
    waits up to the hard limit instead of the time cap."""
    if _CONN is not None:
        _CONN.send(("beat", None))


def _serve(measure: Measure, threads: int | None, conn) -> None:
    global _CONN
    _CONN = conn
    if threads:
        torch.set_num_threads(threads)
    while True:
        point = conn.recv()
        if point is None:
            return
        conn.send(("row", measure_safely(measure, point)))


class _Child:
    def __init__(self, measure: Measure, threads: int | None) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(measure, threads, child_conn), daemon=True)
        self.proc.start()
        child_conn.close()

    def ask(self, point: Row, warm_timeout_s: float, timeout_s: float, start_timeout_s: float) -> Row:
        try:
            self.conn.send(point)
            # The first point of a child also pays for importing torch and trevo.
            if not self.conn.poll(warm_timeout_s + start_timeout_s):
                self.close(kill=True)
                return {**point, "status": "time_cap",
                        "reason": f"the first call ran past {warm_timeout_s:.0f} s; ended"}
            kind, row = self.conn.recv()
            while kind == "beat":  # a measure may beat more than once (once per side of a peer pair)
                if not self.conn.poll(timeout_s):
                    self.close(kill=True)
                    return {**point, "status": "timeout", "reason": f"no result within {timeout_s:.0f} s; ended"}
                kind, row = self.conn.recv()
            return row
        except (EOFError, OSError):  # the child is gone (a reset pipe is an OSError too)
            self.proc.join(5)
            code = self.proc.exitcode
            self.close(kill=True)
            hint = " (killed: likely out of memory)" if code is not None and code < 0 else ""
            return {**point, "status": "crashed", "reason": f"child process exited with code {code}{hint}"}

    def close(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def run_points(measure: Measure, points: list[Row], *, group: Callable[[Row], str], length_key: str = "length",
               isolate: bool = True, hard_timeout_s: float = 600.0, warm_timeout_s: float | None = None,
               threads: int | None = None, on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Measure every point; rows come back in the order of ``points``. In a child, a point gets
    ``warm_timeout_s`` (default: the hard limit) until its ``heartbeat`` and ``hard_timeout_s`` after."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault(group(p), []).append(i)
    rows: list[Row | None] = [None] * len(points)
    for members in groups.values():
        members.sort(key=lambda i: points[i][length_key])
        child = None
        stopped: Row | None = None
        for i in members:
            p = points[i]
            if stopped is not None:
                row = {**p, "status": "skipped",
                       "reason": f"{stopped['status']} at {length_key} {stopped[length_key]}"}
            elif isolate:
                fresh = child is None
                child = child or _Child(measure, threads)
                row = child.ask(p, warm_timeout_s or hard_timeout_s, hard_timeout_s, 120.0 if fresh else 0.0)
                if row["status"] in ("time_cap", "timeout", "crashed") and not child.proc.is_alive():
                    child = None
            else:
                row = measure_safely(measure, p)
            if stopped is None and row["status"] in STOPS_GROUP:
                stopped = row
            rows[i] = row
            if on_row:
                on_row(row)
        if child is not None:
            child.close()
    return [r for r in rows if r is not None]
