"""The `trevo tasks` verb lists the tasks and shows examples (PNG for images, text for sequences)."""

from __future__ import annotations

from trevo.cli import main


def test_tasks_cli(tmp_path, capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("mqar", "selective_copy", "induction", "listops", "pathfinder", "digits", "mlm",
                                        "byte_lm", "image_file"))
    assert main(["tasks", "show", "pathfinder", "--out", str(tmp_path), "-n", "4"]) == 0
    assert (tmp_path / "pathfinder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["tasks", "show", "listops", "--out", str(tmp_path), "-n", "2"]) == 0
    assert "[M" in capsys.readouterr().out and (tmp_path / "listops.txt").is_file()
    assert main(["tasks", "show", "mqar", "--out", str(tmp_path), "--set", "n_pairs=40"]) == 2
    assert "do not fit" in capsys.readouterr().err


def test_tasks_show_draws_optical_flow_pairs(tmp_path, capsys):
    assert main(["tasks", "show", "optical_flow", "--out", str(tmp_path), "-n", "2", "--set", "size=8"]) == 0
    assert (tmp_path / "optical_flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "[1] 8×8 pair: mean speed" in out and "% occluded" in out
