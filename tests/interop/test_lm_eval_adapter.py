"""lm-evaluation-harness evaluates a trevo run through the adapter, with a local task YAML and data
file (no hub); the scores it reports are checked against the model's own log-probabilities."""

from __future__ import annotations

import json
import math

import pytest
import torch

import trevo

lm_eval = pytest.importorskip("lm_eval", reason="needs the optional extra: pip install 'trevo[eval]'")

TASK = """task: trevo_local_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_eval")
    cfg = trevo.api.run_config({"model": {"d_model": 32, "n_layers": 1}, "task": {"name": "byte_lm", "seq_len": 32},
                                "train": {"steps": 2, "batch_size": 2, "eval_batches": 1, "warmup_steps": 1}})
    trevo.train(cfg, root / "run")
    return root / "run"


def test_loglikelihood_is_the_models_log_probability(run):
    from trevo.interop.lm_eval_adapter import TrevoLM

    lm = TrevoLM(run)
    request = type("Request", (), {"args": ("def f", "(x)")})()
    (score, greedy), = lm.loglikelihood([request])
    ids = list(b"def f(x)")
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([ids[:-1]]))[0], -1)
    expected = sum(float(logp[i - 1, ids[i]]) for i in range(5, 8))  # the three bytes of "(x)"
    assert score == pytest.approx(expected, abs=1e-5)
    assert isinstance(greedy, bool)
    (rolling,) = lm.loglikelihood_rolling([type("Request", (), {"args": ("def f(x)",)})()])
    assert rolling == pytest.approx(sum(float(logp[i - 1, ids[i]]) for i in range(1, 8)), abs=1e-5)
    (text,) = lm.generate_until([type("Request", (), {"args": ("def ", {"until": ["\n"], "max_gen_toks": 5})})()])
    assert len(text.encode()) <= 5 * 4 and "\n" not in text


def test_simple_evaluate_with_a_local_task(run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lm_eval.tasks import TaskManager

    from trevo.interop.lm_eval_adapter import TrevoLM

    docs = [{"question": "x = ", "choices": ["1", "zz"], "answer": 0}, {"question": "def", "choices": [" f", "!"],
                                                                      "answer": 0}]
    data = tmp_path / "choice.jsonl"
    data.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "choice.yaml").write_text(TASK.format(data=data))
    lm = TrevoLM(run)
    results = lm_eval.simple_evaluate(model=lm, tasks=["trevo_local_choice"],
                                      task_manager=TaskManager(include_path=str(tmp_path / "tasks")))
    acc = results["results"]["trevo_local_choice"]["acc,none"]
    # the reference: pick the choice of higher log-likelihood after " " + question, as lm-eval does
    expected = []
    for d in docs:
        scores = [lm.loglikelihood([type("R", (), {"args": (d["question"], " " + c)})()])[0][0] for c in d["choices"]]
        expected.append(float(max(range(len(scores)), key=scores.__getitem__) == d["answer"]))
    assert acc == pytest.approx(sum(expected) / len(expected))
    assert math.isfinite(acc)
