"""Fault injection for the kill -9 suite, loaded by every Python process the suite starts (this
folder is put on PYTHONPATH, and Python imports ``sitecustomize`` at start-up), including the
arena's spawned workers.

``TREVO_FAULT`` (JSON) names a function to wrap, ``"module:attribute"``, and the call at which to
kill: calls are counted across all processes through a counter file (so "the 7th training forward
of the sweep" means the same point in every run), and at call ``at`` the ``victim`` (this process,
or its parent: the sweep process when the call is in a worker) gets SIGKILL, ``before`` or
``after`` the call runs. ``truncate`` cuts the file the call wrote (its second argument, e.g.
``save_file``'s temporary path) to that fraction first: a save killed mid-write. ``at`` = 0 only
counts, which measures how many calls an uninterrupted run makes.
"""

import json
import os

_spec = os.environ.get("TREVO_FAULT")
if _spec:
    import fcntl
    import functools
    import importlib
    import signal

    fault = json.loads(_spec)
    module_name, attribute = fault["target"].split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, attribute)

    def _count() -> int:
        # The new count replaces the file atomically: a process killed mid-count (a worker taken down
        # with its killed parent) leaves the previous count, never an empty file.
        counter = fault["counter"]
        with open(counter + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(counter) as f:
                    n = int(f.read()) + 1
            except FileNotFoundError:
                n = 1
            with open(counter + ".tmp", "w") as f:
                f.write(str(n))
            os.replace(counter + ".tmp", counter)
            return n

    def _kill(args: tuple) -> None:
        if fault.get("truncate") is not None:
            path = str(args[1])
            os.truncate(path, int(os.path.getsize(path) * fault["truncate"]))
        os.kill(os.getppid() if fault["victim"] == "parent" else os.getpid(), signal.SIGKILL)

    @functools.wraps(real)
    def wrapped(*args, **kwargs):
        hit = _count() == fault["at"]
        if hit and fault["when"] == "before":
            _kill(args)
        out = real(*args, **kwargs)
        if hit and fault["when"] == "after":
            _kill(args)
        return out

    setattr(module, attribute, wrapped)
