"""``trevo bench`` as a user runs it: the files it writes, and a clear error without a verb."""

from __future__ import annotations

from trevo.cli import main


def test_the_cli_writes_its_files_and_refuses_a_missing_verb(tmp_path, capsys):
    assert main(["bench", "mixers", "--mixers", "softmax_attention", "--lengths", "8", "--d-model", "16",
                 "--repeats", "1", "--in-process", "--no-plots", "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("mixers-fwdbwd-cpu-float32-torch*.csv"))) == 1
    assert "| softmax_attention | 8 | ok |" in capsys.readouterr().out
    assert main(["bench"]) == 2
    assert "trevo bench mixers" in capsys.readouterr().err
