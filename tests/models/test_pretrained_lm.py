"""pretrained_lm: each option computes what its docstring says, against a by-hand forward."""

from __future__ import annotations

import pytest
import torch

from trevo.config import RunConfig
from trevo.errors import IncompatibleError
from trevo.models import build_model
from trevo.tasks.base import TaskInfo

INFO = TaskInfo(vocab_size=50, head="lm", seq_len=16, causal="required", layout=(16,))


def model(**fields):
    cfg = RunConfig().replace({"model.arch": "pretrained_lm", "model.d_model": 16, "model.n_layers": 2,
                               "model.mixer": {"name": "softmax_attention", "n_heads": 2}, **fields}).model
    torch.manual_seed(0)
    return build_model(cfg, INFO).double().eval()


def by_hand(m, tokens, scale=1.0):
    x = m.embed.weight[tokens] * scale
    if m.embed_norm is not None:
        x = m.embed_norm(x)
    for b in m.blocks:
        x = x + b.mixer(b.norm1(x))
        if hasattr(b, "norm2"):
            x = x + b.channel(b.norm2(x))
    return m.head(m.norm(x))


def test_unscaled_embedding_and_embed_norm():
    tokens = torch.randint(0, 50, (2, 9))
    plain = model(**{"model.options": {"embed_norm": {"name": "layernorm", "eps": 1e-5}}})
    assert torch.allclose(plain(tokens), by_hand(plain, tokens), atol=1e-12)
    scaled = model(**{"model.options": {"embed_scale": True}})
    assert torch.allclose(scaled(tokens), by_hand(scaled, tokens, 16 ** 0.5), atol=1e-12)


def test_mixer_only_blocks_and_their_generation():
    m = model(**{"model.mixer": {"name": "mamba", "d_state": 4}, "model.options": {"mixer_only": True}})
    assert not any("channel" in n or "norm2" in n for n, _ in m.named_parameters())
    tokens = torch.randint(0, 50, (2, 9))
    assert torch.allclose(m(tokens), by_hand(m, tokens), atol=1e-12)
    logits, state = m.prefill(tokens[:, :5])
    steps = [logits]
    for t in range(5, 9):
        step, state = m.step(tokens[:, t], state)
        steps.append(step[:, None])
    assert torch.allclose(torch.cat(steps, 1), m(tokens), atol=1e-10)


def test_rwkv_rescaling_scales_the_norm_eps():
    m = model(**{"model.n_layers": 5, "model.norm": {"name": "layernorm", "eps": 1e-5},
                 "model.options": {"rwkv_rescale_every": 2, "final_norm": {"name": "layernorm", "eps": 1e-3}}})
    assert [b.norm1.eps for b in m.blocks] == pytest.approx([1e-5, 1e-5, 4e-5, 4e-5, 16e-5])
    assert m.norm.eps == pytest.approx(1e-3 * 16)


def test_unknown_options_are_named():
    with pytest.raises(IncompatibleError, match="takes no option 'embed_scaling'"):
        model(**{"model.options": {"embed_scaling": True}})
