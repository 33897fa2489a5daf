"""tabular: CSV reading (missing cells, label column, clear errors), standardisation on the training split
alone, splits, and that column embeddings tell a Perceiver which column a cell came from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import train_two_steps_of
from trevo.config import ComponentSpec, ModelConfig
from trevo.models import build_model
from trevo.registry import create
from trevo.tasks.corpus import DataError

CSV = "a,kind,b\n1,x,10\n2,y,\n3,x,30\n?,y,40\n5,x,50\n6,y,60\n7,x,70\n8,y,80\n9,x,90\n10,y,100\n"


def test_a_csv_file_becomes_standardised_cells_with_missing_flags(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    task = create("task", "tabular", path=str(path), label="kind")
    assert task.columns == ["a", "b"] and task.classes == ["x", "y"]
    assert task.info.seq_len == 2 and task.info.n_classes == 2 and task.info.input_features == 2
    rows = [r.split(",") for r in CSV.split("\n")[1:-1]]
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()
    rows = [rows[i] for i in order]
    train = rows[:7]  # 70 % of 10 rows
    for col, j in ((0, 0), (1, 2)):  # the hand formula: mean and population std over the training rows present
        seen = np.array([float(r[j]) for r in train if r[j] not in ("", "?")])
        mean, std = seen.mean(), seen.std()
        for i, r in enumerate(rows):
            value, missing = task.cells[i, col].tolist()
            if r[j] in ("", "?"):
                assert (value, missing) == (0.0, 1.0)
            else:
                assert missing == 0.0 and value == pytest.approx((float(r[j]) - mean) / std, abs=1e-6)
    assert task.labels.tolist() == [0 if r[1] == "x" else 1 for r in rows]
    assert [len(task._split(s)[1]) for s in ("train", "val", "test")] == [7, 1, 2]


def test_bad_tables_get_one_clear_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,red,0\n2,3,1\n")
    with pytest.raises(DataError, match=r"column 'b' holds 'red', not a number"):
        create("task", "tabular", path=str(path))
    with pytest.raises(DataError, match="label='kind' is not a column"):
        create("task", "tabular", path=str(path), label="kind")
    with pytest.raises(DataError, match="dataset must be one of"):
        create("task", "tabular", dataset="titanic")
    path.write_text("a,label\n1,0\n2,0\n")
    with pytest.raises(DataError, match="at least 2"):
        create("task", "tabular", path=str(path))


def test_bundled_tables_and_the_gradient_boosting_reference():
    task = create("task", "tabular", dataset="wine")
    assert task.cells.shape == (178, 13, 2) and task.info.n_classes == 3
    lo, hi = task.bounds["train"]
    train = task.cells[lo:hi, :, 0].double()  # standardised on the training rows: mean 0, std 1 there
    torch.testing.assert_close(train.mean(0), torch.zeros(13, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.std(0, unbiased=False), torch.ones(13, dtype=torch.float64), atol=1e-5, rtol=0)
    assert task.gradient_boosting_accuracy("val", max_iter=10) > 0.85  # wine is easy for boosted trees


def test_column_embeddings_identify_the_column_of_each_cell():
    task = create("task", "tabular", dataset="iris")
    x = task.train_batch(0, 4, 0)["input"].double()
    swapped = x[:, [1, 0, 2, 3]]

    def model(position):
        torch.manual_seed(0)
        cfg = ModelConfig(arch="perceiver", d_model=16, n_layers=1, position=ComponentSpec(position),
                          options={"n_latents": 4})
        return build_model(cfg, task.info).double().eval()

    with_columns, without = model("learned"), model("none")
    assert (with_columns(swapped) - with_columns(x)).abs().max() > 1e-6
    torch.testing.assert_close(without(swapped), without(x), rtol=0, atol=1e-12)  # a bag of cells otherwise


def test_trains_through_the_training_loop(tmp_path):
    result = train_two_steps_of(
        tmp_path / "run", "task.name=tabular", "task.dataset=iris",
        "model.arch=perceiver", "model.position.name=learned")
    assert result["metric"] in result["final"]
