"""Generation takes any bytes and refuses what it cannot write as bytes; SIGTERM stops a run even
inside a long operation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import TINY, sets
from trevo.cli import main

ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture(scope="module")
def byte_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--quiet", "--out", str(out), *sets(*TINY)]) == 0
    return out


def test_generation_takes_any_bytes(byte_run, tmp_path, capsysbinary):
    prompt = bytes([0xFF, 0xFE, 0x00, 0x80]) + "é".encode()
    (tmp_path / "prompt.bin").write_bytes(prompt)
    assert main(["generate", "--run", str(byte_run), "--prompt-file", str(tmp_path / "prompt.bin"),
                 "--tokens", "5"]) == 0
    out = capsysbinary.readouterr().out
    assert out.startswith(prompt) and len(out) == len(prompt) + 5 + 1
    # An argument that is not UTF-8 reaches the model as the bytes the shell passed.
    assert main(["generate", "--run", str(byte_run), "--prompt", os.fsdecode(b"\xff\xfe"), "--tokens", "2"]) == 0
    assert capsysbinary.readouterr().out.startswith(b"\xff\xfe")
    assert main(["generate", "--run", str(byte_run), "--prompt-file", str(tmp_path / "none"), "--tokens", "2"]) == 2
    assert b"cannot read --prompt-file" in capsysbinary.readouterr().err


def test_generation_refuses_a_model_that_does_not_predict_bytes(tmp_path, capsys):
    out = tmp_path / "mqar"
    assert main(["train", "--quiet", "--out", str(out), *sets(*TINY, "task.name=mqar", "task.n_pairs=2")]) == 0
    capsys.readouterr()
    assert main(["generate", "--run", str(out), "--prompt", "!!", "--tokens", "4"]) == 2
    assert "needs a causal language model" in capsys.readouterr().err


STUCK = textwrap.dedent("""
    import signal, sys, time
    import trevo.cli as cli
    cli.TERM_GRACE_S = {grace}
    cli._handle_sigterm()
    print("ready", flush=True)
    if {stuck}:
        # The main thread stops seeing signals, as inside one long torch op: only the watcher can act.
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM}})
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        print("stopped politely", flush=True)
        sys.exit(130)
""")


@pytest.mark.parametrize("stuck", [False, True])
def test_sigterm_stops_even_inside_a_long_operation(stuck):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", STUCK.format(grace=1.0, stuck=stuck)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.2)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - start
    if stuck:
        assert proc.returncode == 128 + signal.SIGTERM and "still running 1 s after SIGTERM" in err
        assert 0.9 < took < 10
    else:
        assert proc.returncode == 130 and "stopped politely" in out and "still running" not in err
