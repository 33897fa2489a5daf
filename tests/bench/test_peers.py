"""``trevo bench peers``: every pair agrees with its peer's reference implementation (fla's naive
references, Hugging Face's torch paths) on the same inputs, outputs and input gradients; a missing
peer library is a skipped row naming the install command, never an error."""

from __future__ import annotations

import pytest

from trevo.bench import peers


@pytest.mark.parametrize("pair", list(peers.PAIRS))
def test_trevo_agrees_with_every_peer_forward_and_backward(pair):
    names = peers.peer_names(pair)
    if not names:
        pytest.skip(peers.INSTALL)
    for peer in names:
        for mode in ("fwd", "fwdbwd"):
            row = peers.measure_point({"pair": pair, "peer": peer, "mode": mode, "length": 64, "repeats": 1,
                                       "time_cap_s": 60.0})
            if row["status"] == "skipped":  # a forward-only reference
                assert mode == "fwdbwd" and "no_grad" in row["reason"]
                continue
            assert row["status"] == "ok", row
            assert row["max_rel_error"] <= peers.TOLERANCE and row["trevo_ms"] > 0 and row["peer_ms"] > 0


def test_a_missing_peer_library_is_a_skip_with_the_install_command(monkeypatch):
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(peers.MissingPeer, match="pip install"):
        peers.fla_function("ops/gla/naive.py", "naive_recurrent_gla")
    assert peers.peer_names("vector_decay") == []
    result = peers.run(["vector_decay"], [64], isolate=False)
    assert [r["status"] for r in result["rows"]] == ["skipped"] and "pip install" in result["rows"][0]["reason"]
