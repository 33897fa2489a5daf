from __future__ import annotations

import pytest


def tiny_spec(**changes) -> dict:
    """A search that trains in seconds per run: one short byte-LM task, two genomes a generation."""
    spec = {
        "name": "t", "seed": 0, "param_budget": 12000,
        "base": {"model": {"position": "none"},
                 "train": {"batch_size": 4, "lr": 3.0e-3, "warmup_steps": 1, "eval_every": 4, "eval_batches": 1,
                           "checkpoint_every": 2}},
        "space": {"mixers": ["softmax_attention", "gla"], "channels": ["swiglu", "none"], "positions": ["rope"],
                  "depth": [1, 2], "period": [1, 2], "d_model": 16},
        "search": {"population": 2, "generations": 2},
        "objectives": ["quality", "state_bytes"], "context": 32,
        "baseline": "2×d16 [attn+rope] swiglu rmsnorm pre",
        "stages": {"cheap": {"tasks": [{"label": "lm", "set": {"task.name": "byte_lm", "task.seq_len": 16}}],
                             "steps": 4, "seeds": [0]}},
    }
    spec.update(changes)
    return spec


@pytest.fixture
def spec_data():
    return tiny_spec
