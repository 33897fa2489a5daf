"""Hybrid recipes (registry models built on model.layers): each names its source and what it
simplifies, expands to its layer pattern, and generates the same greedy bytes in parallel and
recurrent modes (every layer's state at once: KV caches beside RNN states)."""

from __future__ import annotations

import inspect

import pytest

from trevo import testing
from trevo.config import RunConfig
from trevo.errors import IncompatibleError
from trevo.generate import generate, state_bytes_at
from trevo.models.genome import Genome
from trevo.models.recipes import expand_recipe, recipe_names
from trevo.registry import get
from trevo.train import build

RECIPES = recipe_names()


def _cfg(arch: str, *more: str) -> RunConfig:
    return RunConfig().override(["model.d_model=32", "model.n_layers=8", "task.seq_len=32", f"model.arch={arch}",
                                 *more])


def _short_window(arch: str) -> list[str]:
    """``model.options.window=4`` for a recipe with local attention: shorter than the tests' prompts, so
    that the recurrent mode's window evicts keys (a window longer than the text would test no window)."""
    takes_window = "window" in inspect.signature(get("model", arch).factory.pattern).parameters
    return ["model.options.window=4"] if takes_window else []


def test_the_named_recipes_are_registered():
    named = {"jamba", "samba", "griffin", "hawk", "qwen3_next", "mad_striped", "kimi_linear", "minimax01"}
    assert named <= set(RECIPES)


@pytest.mark.parametrize("arch", RECIPES)
def test_each_recipe_names_its_source_and_what_it_simplifies(arch):
    entry = get("model", arch)
    assert entry.paper and entry.paper.arxiv and entry.family == "hybrid"
    assert "Simplified" in entry.factory.__doc__ or arch == "hawk"


@pytest.mark.parametrize("arch", RECIPES)
def test_greedy_generation_is_the_same_in_parallel_and_recurrent_modes(arch):
    _, model = build(_cfg(arch, *_short_window(arch)))
    parallel, _ = generate(model, b"def main():\n", 20, mode="parallel")
    recurrent, state = generate(model, b"def main():\n", 20, mode="recurrent")
    assert parallel == recurrent and len(parallel) == 20 and state > 0


@pytest.mark.parametrize("arch", RECIPES)
def test_every_recipe_passes_the_stack_contract(arch):
    # shapes, gradients, causality, prefill + steps = forward and split state = one pass, every layer's
    # state at once (KV caches beside RNN states), at the test width and a window shorter than the text
    testing.check_stack(_cfg(arch, f"model.d_model={testing.D}", *_short_window(arch)).model)


def test_a_recipe_expands_to_its_pattern_and_takes_its_options():
    cfg = expand_recipe(_cfg("griffin", "model.options.window=8").model)
    assert cfg.arch == "metaformer" and [la.mixer.name for la in cfg.layers] == ["rg_lru", "rg_lru",
                                                                                 "sliding_window_attention"]
    assert cfg.layers[2].mixer.options == {"window": 8} and cfg.layers[2].position.name == "rope"
    assert Genome.from_config(_cfg("jamba").model).line() == (
        "8×d32 [mamba,mamba,mamba,mamba,attn,mamba,mamba,mamba] swiglu rmsnorm pre")


def test_recipe_misuse_is_a_clear_error():
    with pytest.raises(IncompatibleError, match="recipe 'griffin' takes no option 'windw'.*window"):
        build(_cfg("griffin", "model.options.windw=8"))
    with pytest.raises(IncompatibleError, match="sets model.layers itself"):
        build(_cfg("jamba", "model.layers=[gla]"))


def test_a_hybrids_state_grows_only_in_its_attention_layers():
    _, jamba = build(_cfg("jamba"))
    _, hawk = build(_cfg("hawk"))
    assert state_bytes_at(hawk, 64) == state_bytes_at(hawk, 16)  # RNN states only: constant
    grown = state_bytes_at(jamba, 64) - state_bytes_at(jamba, 16)
    assert grown == 48 * 2 * 32 * 4  # one attention layer's keys and values, 48 more tokens, float32
