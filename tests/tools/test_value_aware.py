"""Value-aware approximate attention: the exhaustive value-aware optimum is the brute-force one (every
support, numpy least squares), the oblivious one is the brute-force nearest r-sparse row, a hand-checked
row where the two differ by far, the rows read from a model are the ones its attention uses, and
`trevo inspect value-aware` reports both errors for a trained run."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from trevo.cli import main
from trevo.config import RunConfig
from trevo.errors import IncompatibleError
from trevo.tools.value_aware import analyse, attention_rows, output_errors, value_aware, value_oblivious
from trevo.train import build


def _row(t: int = 7, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, generator=g, dtype=torch.float64).softmax(0), torch.randn(t, d, generator=g,
                                                                                   dtype=torch.float64)


def _brute_force_aware(a: np.ndarray, v: np.ndarray, r: int) -> float:
    o = a @ v
    best = np.inf
    for support in itertools.combinations(range(len(a)), r):
        w, *_ = np.linalg.lstsq(v[list(support)].T, o, rcond=None)
        best = min(best, float(np.linalg.norm(o - w @ v[list(support)])))
    return best


@pytest.mark.parametrize(("seed", "r"), [(0, 1), (1, 2), (2, 2), (3, 3)])
def test_the_exhaustive_value_aware_optimum_is_the_brute_force_one(seed, r):
    a, v = _row(seed=seed)
    aware, exact = value_aware(a, v, r)
    assert exact and int((aware != 0).sum()) <= r
    err = float(((a - aware) @ v).norm())
    assert err == pytest.approx(_brute_force_aware(a.numpy(), v.numpy(), r), abs=1e-10)
    greedy, exact = value_aware(a, v, r, exact_limit=0)  # matching pursuit: never below the optimum
    assert not exact and float(((a - greedy) @ v).norm()) >= err - 1e-10
    errors = output_errors(a, v, r, exact_limit=0)  # and never above the oblivious support refitted
    assert errors["aware"] <= errors["oblivious"] + 1e-12


def test_the_oblivious_row_is_the_nearest_r_sparse_row():
    a, _ = _row(t=6)
    best = min((np.linalg.norm(np.where(np.isin(np.arange(6), s), a.numpy(), 0) - a.numpy()), s)
               for s in itertools.combinations(range(6), 2))
    kept = torch.nonzero(value_oblivious(a, 2)).flatten().tolist()
    assert kept == list(best[1])


def test_a_hand_checked_row_where_the_values_decide():
    # a = (0.4, 0.35, 0.25); v1 = −v2 cancel, so aV = (0.05, 0.25). Keeping the largest weight gives
    # (0.4, 0): error √(0.35² + 0.25²); the value-aware single key is v3 with weight 0.25: error 0.05.
    a = torch.tensor([0.4, 0.35, 0.25], dtype=torch.float64)
    v = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    errors = output_errors(a, v, 1)
    scale = float(np.hypot(0.05, 0.25))
    assert errors["oblivious"] == pytest.approx(np.hypot(0.35, 0.25) / scale)
    assert errors["aware"] == pytest.approx(0.05 / scale)


def _lm(*extra: str):
    cfg = RunConfig().override(["model.d_model=16", "model.n_layers=2", "task.seq_len=12",
                                "model.mixer.name=softmax_attention", *extra])
    torch.manual_seed(0)
    return build(cfg)[1].double().eval()


@pytest.mark.parametrize("position", ["sinusoidal", "alibi"])
def test_the_rows_read_are_the_ones_the_attention_uses(position):
    from trevo.components.multihead import merge_heads

    model = _lm(f"model.position.name={position}")
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(2))
    outputs = []
    hook = model.blocks[1].mixer.register_forward_hook(lambda _m, _a, out: outputs.append(out))
    weights, values = attention_rows(model, tokens, 1)
    hook.remove()
    torch.testing.assert_close(model.blocks[1].mixer.out_proj(merge_heads(weights @ values)), outputs[0])
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights[..., 0])) and weights[..., 0, 1:].eq(0).all()


def test_refuses_a_layer_without_softmax_attention():
    model = _lm("model.mixer.name=linear_attention")
    with pytest.raises(IncompatibleError, match="value-aware analysis reads softmax attention"):
        attention_rows(model, torch.zeros(1, 4, dtype=torch.long), 0)


def test_the_cli_reports_both_errors_for_a_trained_run(tmp_path, capsys):
    from tests.helpers import TWO_STEPS

    out = tmp_path / "run"
    args = [f"--set={s}" for s in [*TWO_STEPS, "task.seq_len=16", "model.mixer.name=softmax_attention"]]
    assert main(["train", *args, "--quiet", "--out", str(out)]) in (0, None)
    capsys.readouterr()
    main(["inspect", "value-aware", str(out), "--rank", "2", "--rows", "12", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rows"] == 12 and 0 <= result["aware"] <= result["oblivious"] + 1e-12
    direct = analyse(build(RunConfig.load(out / "config.yaml"))[1], torch.zeros(1, 4, dtype=torch.long), rank=4)
    assert direct["aware"] == 0 and direct["oblivious"] == 0  # r ≥ every row's keys: both exact
