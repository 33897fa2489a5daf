"""The must-show table of issue 18: every listed name is registered, the trains and speed columns read a
fake arena store and bench directory (generation timings and other mixers ignored), state bytes are
the hand-counted sizes of the reference model's states, and a row without data says "not run"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trevo.arena.breadth import ISSUE_18, NOT_RUN, Item, main, rows
from trevo.arena.store import Run, Store
from trevo.config import RunConfig
from trevo.registry import get


def test_every_listed_component_is_registered():
    from trevo.presets import preset_names

    for item in ISSUE_18:
        for name in item.names:
            if item.kind == "preset":
                assert name in preset_names("trevo.arena")
            else:
                assert get(item.kind, name).name == name
    assert len({n for item in ISSUE_18 for n in item.names}) == sum(len(item.names) for item in ISSUE_18)


def _run(key, label, task, seed, val, test, layers=()):
    # As the arena stores it: the resolved config's to_dict(), a mixer without options as its bare name.
    config = RunConfig().replace({"model.mixer": {"name": layers[0] if layers else label},
                                  "model.layers": [{"mixer": {"name": m}} for m in layers],
                                  "train.seed": seed, "task.name": task}).to_dict()
    return Run(key=key, sweep="s", label=label, family="f", task=task, seed=seed, lr=0.003, status="done",
               config=config, metric="bpb", higher_is_better=False, val={"bpb": val},
               test=None if test is None else {"bpb": test})


@pytest.fixture
def sources(tmp_path):
    store = Store(tmp_path / "arena.sqlite")
    store.add(_run("a", "aft_full", "byte_lm", 0, 2.5, 2.4))
    store.add(_run("b", "aft_full", "byte_lm", 1, 2.7, 2.6))
    store.add(_run("c", "attn+skip", "byte_lm", 0, 3.0, None, layers=("softmax_attention", "skip_attention")))
    bench = tmp_path / "bench"
    bench.mkdir()
    timed = [{"mixer": "aft_full", "length": 1024, "status": "ok", "ms": 3.0, "ratio_to_softmax": 1.5},
             {"mixer": "aft_full", "length": 4096, "status": "ok", "ms": 40.0, "ratio_to_softmax": 2.0},
             {"mixer": "aft_full", "length": 512, "status": "ok", "ms": 1.0, "ratio_to_softmax": 1.0},
             {"mixer": "skip_attention", "length": 4096, "status": "time_cap", "reason": "past 60 s"}]
    (bench / "mixers-fwdbwd-cpu.json").write_text(json.dumps({"meta": {"mode": "fwdbwd"}, "rows": timed}))
    generate = [{"mixer": "aft_full", "length": 1024, "status": "ok", "ms": 99.0, "ratio_to_softmax": 9.0}]
    (bench / "mixers-generate-cpu.json").write_text(json.dumps({"meta": {"mode": "generate"}, "rows": generate}))
    return str(tmp_path / "arena.sqlite"), str(bench)


def test_each_hand_picked_defining_test_is_a_test_of_its_components_file_and_comes_first():
    from trevo.arena.breadth import DEFINING, defining_tests
    from trevo.registry import where_tested

    root = Path(__file__).resolve().parents[2]
    for name, test in DEFINING.items():
        path = where_tested(get("mixer", name))
        assert f"def {test}(" in (root / path).read_text(), (name, path, test)
        assert defining_tests("mixer", name, root).startswith(f"{path}::{test}"), name


def test_trains_and_speed_come_from_the_store_and_the_bench(sources):
    db, bench = sources
    items = [Item("RightProduct", "DAFT", ("aft_full", "aft_conv")), Item("Others", "skip", ("skip_attention",))]
    full, conv, skip = rows(db, [bench], state=False, items=items)
    assert full[:2] == ["DAFT", "aft_full"] and full[2].startswith("tests/mixers/test_aft.py::test_")
    assert full[3] == "byte_lm bpb 2.5000 (2 runs, test)"  # the mean of the two seeds' test metrics
    assert full[4] == "T=1024: 3.0 ms (1.50× softmax); T=4096: 40.0 ms (2.00× softmax)"
    assert skip[3] == "byte_lm bpb 3.0000 (1 runs, val, as attn+skip)"  # a hybrid without test metrics
    assert conv[3:] == [NOT_RUN, NOT_RUN, NOT_RUN] and skip[4] == "T=4096: time_cap (past 60 s)"
    # a second bench directory adds its mixers; where both timed one, the first directory's row is read
    more = Path(bench).parent / "more"
    more.mkdir()
    timed = [{"mixer": m, "length": 1024, "status": "ok", "ms": 7.0, "ratio_to_softmax": 0.5}
             for m in ("aft_conv", "aft_full")]
    (more / "mixers-fwdbwd-cpu.json").write_text(json.dumps({"meta": {"mode": "fwdbwd"}, "rows": timed}))
    full, conv, _ = rows(db, [bench, str(more)], state=False, items=items)
    assert conv[4] == "T=1024: 7.0 ms (0.50× softmax)" and full[4].startswith("T=1024: 3.0 ms")


def test_state_bytes_are_the_reference_models_states():
    items = [Item("RightProduct", "AFT-simple", ("aft_simple", "aft_full")),
             Item("Others", "skip", ("skip_attention",)), Item("FFT", "AFNO", ("afno",))]
    simple, full, skip, afno = (r[5] for r in rows(context=16, items=items))
    # 2 layers × AFT-simple's running (max, numerator, denominator), each [1, 64] float32.
    assert simple == f"{2 * 3 * 64 * 4:,}"
    # AFT-full keeps K and V [1, 16, 64] per layer.
    assert full == f"{2 * 2 * 16 * 64 * 4:,}"
    # The attention layer's K, V [1, 4 heads, 16, 16], then the skip layer's convolution history
    # [1, 5 − 1, 2·64], its running ECA sum [1, 64] and count (one float).
    assert skip == f"{2 * 4 * 16 * 16 * 4 + 4 * 128 * 4 + 64 * 4 + 4:,} (with the attention layer before it)"
    assert afno == "no generation (bidirectional only)"


def test_the_command_prints_every_row_and_refuses_a_missing_store(tmp_path, capsys):
    assert main(["--no-state"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + sum(len(item.names) for item in ISSUE_18)
    assert "| skip-attention | skip_attention | tests/mixers/test_skip_attention.py::test_" in "\n".join(out)
    assert main(["--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no results database" in capsys.readouterr().err
