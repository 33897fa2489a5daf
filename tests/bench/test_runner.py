"""The benchmark's child processes: a child that dies or hangs is recorded and its group stops."""

from __future__ import annotations

import os
import time

from trevo.bench.runner import heartbeat, run_points


def _child_measure(point):
    if point["group"] == "beating":  # a peer pair beats once per side before its row
        heartbeat()
        heartbeat()
    if point["group"] == "dying":
        os._exit(3)
    if point["length"] == 2:
        time.sleep(30)  # a first call that never ends (no heartbeat): the time cap ends it
    return {**point, "status": "ok", "pid": os.getpid()}


def test_a_child_that_dies_or_hangs_is_recorded_and_its_group_stops():
    points = [{"group": g, "length": t} for g in ("silent", "dying") for t in (1, 2, 3)] + [{"group": "beating",
                                                                                            "length": 1}]
    rows = run_points(_child_measure, points, group=lambda p: p["group"], isolate=True, hard_timeout_s=2.0,
                      warm_timeout_s=0.5)
    got = {(r["group"], r["length"]): r for r in rows}
    assert got[("silent", 1)]["status"] == "ok" and got[("silent", 1)]["pid"] != os.getpid()
    assert got[("silent", 2)]["status"] == "time_cap" and "ended" in got[("silent", 2)]["reason"]
    assert got[("dying", 1)]["status"] == "crashed" and "code 3" in got[("dying", 1)]["reason"]
    assert [got[(g, 3)]["status"] for g in ("silent", "dying")] == ["skipped"] * 2
    assert got[("silent", 3)]["reason"] == "time_cap at length 2"
    assert got[("beating", 1)]["status"] == "ok"  # its two heartbeats are not taken for its row
