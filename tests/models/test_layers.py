"""Per-layer specs (model.layers): cycled to the depth, unset fields inherited, every layer checked
against the registry's capabilities before anything is built or trained, with the reasons."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_cfg
from trevo.components.mixers.gla import GatedLinearAttention
from trevo.components.mixers.mamba import Mamba
from trevo.components.mixers.softmax_attention import SoftmaxAttention
from trevo.components.norms import LayerNorm
from trevo.components.residuals import PostNorm, PreNorm
from trevo.config import ConfigError, RunConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import model_family, model_options, model_problems, resolve_layers
from trevo.tasks.base import TaskInfo
from trevo.train import build, train

LM = TaskInfo(vocab_size=256, head="lm", seq_len=32, causal="required", layout=(32,))


def test_layers_repeat_cyclically_and_inherit_the_model_defaults():
    cfg = tiny_cfg("model.n_layers=5", "model.norm.name=layernorm",
                   "model.layers=[gla, {mixer: softmax_attention, position: rope, residual: postnorm}]")
    _, model = build(cfg)
    kinds = [type(b.mixer) for b in model.blocks]
    assert kinds == [GatedLinearAttention, SoftmaxAttention, GatedLinearAttention, SoftmaxAttention,
                     GatedLinearAttention]
    assert [type(b.residual) for b in model.blocks] == [PreNorm, PostNorm, PreNorm, PostNorm, PreNorm]
    assert all(isinstance(n, LayerNorm) for b in model.blocks for n in b.norms)  # the model's norm
    assert model.blocks[1].mixer.position is not None and model.blocks[0].mixer.n_heads == 4
    assert model(torch.zeros(2, 32, dtype=torch.long)).shape == (2, 32, 256)
    assert [la.position.name for la in resolve_layers(cfg.model)] == ["none", "rope", "none", "rope", "none"]


def test_a_layer_without_a_channel_mixer_is_its_token_mixer_alone():
    _, model = build(tiny_cfg("model.layers=[{mixer: mamba, channel: none}, softmax_attention]"))
    mamba, attention = model.blocks
    assert isinstance(mamba.mixer, Mamba) and mamba.channel is None and len(mamba.norms) == 1
    assert attention.channel is not None and len(attention.norms) == 2
    x = torch.randn(2, 32, 32)
    torch.testing.assert_close(mamba(x), x + mamba.mixer(mamba.norms[0](x)))


def test_a_model_level_relative_position_reaches_every_layer_that_does_not_set_its_own():
    cfg = tiny_cfg("model.position.name=rope", "model.layers=[softmax_attention, {mixer: gla, position: none}]")
    assert [la.position.name for la in resolve_layers(cfg.model)] == ["rope", "none"]
    with pytest.raises(IncompatibleError, match="mixer 'gla' accepts no relative position.*set the position per layer"):
        build(tiny_cfg("model.position.name=rope", "model.layers=[softmax_attention, gla]"))


@pytest.mark.parametrize("override,reason", [
    ("model.layers=[gla, {mixr: gla}]", "model.layers\\[1\\]: unknown field 'mixr'; a layer sets mixer, channel"),
    ("model.layers=[{name: gla}]", "for a mixer with options write \\{mixer: \\{name: gla"),
    ("model.layers=gla", "expected a list of layers"),
    ("model.block=postnorm", "model.block was replaced by model.residual .*write model.residual: postnorm"),
])
def test_a_bad_layers_entry_is_one_clear_config_error(override, reason):
    with pytest.raises(ConfigError, match=reason):
        tiny_cfg(override)


def test_invalid_hybrids_fail_before_training_with_every_reason(tmp_path):
    cfg = tiny_cfg("model.n_layers=3", "model.layers=[gla, fnet, {mixer: s2mlp, position: learned}, gla]")
    problems = model_problems(cfg.model, LM)
    assert any("4 entries but model.n_layers is 3" in p for p in problems)
    cfg = tiny_cfg("model.n_layers=3", "model.layers=[gla, fnet, {mixer: s2mlp, position: learned}]")
    problems = model_problems(cfg.model, LM)
    assert any(p.startswith("layer 1: mixer 'fnet' is bidirectional only") for p in problems), problems
    assert any(p.startswith("layer 2: mixer 's2mlp' needs a 2-D layout") for p in problems), problems
    assert any("layer 2: a layer's position acts inside its mixer, and 'learned' is absolute" in p for p in problems)
    with pytest.raises(IncompatibleError, match="(?s)cannot be built:.*fnet.*s2mlp"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run directory (checkpoint, config, result) was made


def test_unknown_names_in_layers_say_where_they_are():
    with pytest.raises(Exception, match=r"model.layers\[1\].mixer: unknown mixer 'glaa'. Did you mean 'gla'"):
        build(tiny_cfg("model.layers=[gla, glaa]"))


def test_causality_is_decided_by_every_layer():
    either = TaskInfo(vocab_size=16, head="classify", seq_len=16, n_classes=3, causal="either", layout=(16,))
    bidirectional = tiny_cfg("model.layers=[softmax_attention, fnet]").model
    causal = tiny_cfg("model.layers=[softmax_attention, gla]").model
    from trevo.models import build_model

    assert build_model(bidirectional, either).causal is False
    assert build_model(causal, either).causal is True


def test_the_family_of_a_stack():
    assert model_family(tiny_cfg("model.layers=[gla, softmax_attention]").model) == "hybrid"
    assert model_family(tiny_cfg("model.layers=[gla, gla]").model) == "gla"
    assert model_family(RunConfig().model) == "softmax_attention"


def test_the_perceiver_refuses_per_layer_specs():
    from tests.helpers import TWO_STEPS

    cfg = RunConfig().override([*TWO_STEPS, "model.arch=perceiver", "task.name=digits", "model.layers=[gla]"])
    with pytest.raises(IncompatibleError, match="model.layers .* builds hybrid metaformer stacks"):
        build(cfg)


def test_model_options_fill_the_defaults_and_refuse_an_unknown_one_by_name():
    assert model_options("m", {"a": 1, "b": 2}, {"b": 5}) == {"a": 1, "b": 5}
    with pytest.raises(IncompatibleError, match=r"model 'm' takes no option 'c'; its model.options are: a, b"):
        model_options("m", {"a": 1, "b": 2}, {"c": 0})
