"""Residual placements: every registered one passes the stack contract inside a hybrid (shapes,
gradients, causality, prefill + steps = forward, split state = one pass), and each has a test of its
defining property against a hand computation from the block's own modules."""

from __future__ import annotations

import math

import pytest
import torch

from trevo import testing
from trevo.components.residuals import deepnorm_constants, output_projection
from trevo.config import ModelConfig, RunConfig
from trevo.errors import IncompatibleError
from trevo.models.layers import profile_tokens
from trevo.registry import get, names


def _model(residual: str, **more) -> ModelConfig:
    """A 3-layer hybrid: GLA, softmax attention with RoPE, and Mamba without a channel mixer."""
    layers = [{"mixer": {"name": "gla", "chunk_size": 4}},
              {"mixer": {"name": "softmax_attention", "chunk_size": 4}, "position": "rope"},
              {"mixer": {"name": "mamba", "d_state": 4}, "channel": "none"}]
    if residual == "realformer":  # RealFormer's layers carry attention scores: attention only
        layers = [{"mixer": "softmax_attention", "position": "rope"}, {"mixer": "softmax_attention"},
                  {"mixer": "multi_query_attention", "position": "rope", "channel": "none"}]
    data = {"d_model": 16, "n_layers": 3, "layers": layers, "residual": residual, **more}
    return RunConfig.from_dict({"model": data}).model


@pytest.mark.parametrize("residual", names("residual"))
def test_every_residual_passes_the_stack_contract(residual):
    testing.check_stack(_model(residual))


@pytest.mark.parametrize("residual", names("residual"))
def test_every_residual_names_its_paper(residual):
    entry = get("residual", residual)
    assert entry.paper and entry.paper.title and entry.paper.year and (entry.factory.__doc__ or "").strip()


def _block_input(model, index: int) -> torch.Tensor:
    """The input of block ``index`` (captured by a hook) on random tokens."""
    seen = {}
    hook = model.blocks[index].register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    model(profile_tokens(testing.stack_info()))
    hook.remove()
    return seen["x"]


def _sublayers(block):
    f = [lambda h: block.mixer(h)]
    if block.channel is not None:
        f.append(lambda h: block.channel(h))
    return f


@pytest.mark.parametrize("residual", ["rezero", "skipinit"])
def test_rezero_and_skipinit_start_as_the_identity_exactly(residual):
    model = testing.build_stack(_model(residual))
    tokens = profile_tokens(testing.stack_info())
    x = model._embed(tokens)
    for block in model.blocks:
        y = block(x)
        assert torch.equal(y, x), f"{residual}: a block is not the identity at init"
    # and once α moves, the block is x + α·f(x) (ReZero: one α for both sublayers; SkipInit: one each)
    block = model.blocks[0]
    with torch.no_grad():
        block.residual.alpha.fill_(0.5) if residual == "rezero" else block.residual.alpha.copy_(
            torch.tensor([0.5, -0.25], dtype=torch.float64))
    alphas = [0.5, 0.5] if residual == "rezero" else [0.5, -0.25]
    h = x
    for a, f in zip(alphas, _sublayers(block), strict=True):
        h = h + a * f(h)
    torch.testing.assert_close(block(x), h, rtol=1e-12, atol=1e-12)


def test_deepnorm_constants_match_the_paper():
    # DeepNet Fig. 2b (decoder-only, as encoder-only): α = (2N)^(1/4), β = (8N)^(-1/4), by hand.
    table = {6: (1.86121, 0.379918), 12: (2.213364, 0.319472), 18: (2.44949, 0.288675)}
    for n, (alpha, beta) in table.items():
        a, b = deepnorm_constants(n)
        assert abs(a - alpha) < 1e-5 and abs(b - beta) < 1e-5, (n, a, b)
        model = testing.build_stack(_model("deepnorm", n_layers=n))
        assert {blk.residual.alpha for blk in model.blocks} == {a}


def _weights(residual: str, n_layers: int = 3) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in testing.build_stack(_model(residual, n_layers=n_layers)).state_dict().items()}


def test_deepnorm_is_post_norm_on_alpha_x_and_scales_the_init_by_beta():
    base, deep = _weights("prenorm"), _weights("deepnorm")
    _, beta = deepnorm_constants(3)
    # The channel mixer's weights, the value half of attention's kv projection, every out_proj: × β.
    for key in ("blocks.0.channel.gate_up.weight", "blocks.0.channel.down.weight", "blocks.0.mixer.v_proj.weight",
                "blocks.0.mixer.out_proj.weight", "blocks.1.mixer.out_proj.weight", "blocks.2.mixer.out_proj.weight"):
        torch.testing.assert_close(deep[key], beta * base[key], rtol=1e-6, atol=0, msg=key)  # scaled in float32
    kv, d = "blocks.1.mixer.kv_proj.weight", 16
    torch.testing.assert_close(deep[kv][d:], beta * base[kv][d:], rtol=1e-6, atol=0)
    torch.testing.assert_close(deep[kv][:d], base[kv][:d], rtol=0, atol=0)  # keys keep gain 1
    for key in ("blocks.0.mixer.q_proj.weight", "blocks.0.mixer.k_proj.weight", "blocks.1.mixer.q_proj.weight"):
        torch.testing.assert_close(deep[key], base[key], rtol=0, atol=0, msg=key)
    model = testing.build_stack(_model("deepnorm"))
    block, x = model.blocks[0], _block_input(model, 0)
    alpha, _ = deepnorm_constants(3)
    h = x
    for norm, f in zip(block.norms, _sublayers(block), strict=True):
        h = norm(alpha * h + f(h))
    torch.testing.assert_close(block(x), h, rtol=1e-12, atol=1e-12)
    assert isinstance(model.norm, torch.nn.Identity)  # post-norm blocks: no final norm


def test_depth_scaled_init_scales_every_output_projection_by_one_over_root_2n():
    base, scaled = _weights("prenorm", 4), _weights("depth_scaled", 4)
    c = 1 / math.sqrt(2 * 4)
    for key in base:
        projection = key.endswith(("mixer.out_proj.weight", "channel.down.weight"))
        torch.testing.assert_close(scaled[key], c * base[key] if projection else base[key], rtol=1e-6, atol=0,
                                   msg=key)


def test_depth_scaled_refuses_a_mixer_without_an_output_projection():
    cfg = RunConfig.from_dict({"model": {"d_model": 16, "n_layers": 1, "mixer": "lru", "residual": "depth_scaled"}})
    with pytest.raises(IncompatibleError, match="mixer 'lru' has none"):
        testing.build_stack(cfg.model)


@pytest.mark.parametrize("residual", ["prenorm", "postnorm", "sandwich", "parallel"])
def test_placements_equal_their_formulas(residual):
    model = testing.build_stack(_model(residual))
    block, x = model.blocks[0], _block_input(model, 0)
    (mix, chan), norms = _sublayers(block), block.norms
    expected = {
        "prenorm": lambda: (lambda h: h + chan(norms[1](h)))(x + mix(norms[0](x))),
        "postnorm": lambda: (lambda h: norms[1](h + chan(h)))(norms[0](x + mix(x))),
        "sandwich": lambda: (lambda h: h + norms[3](chan(norms[2](h))))(x + norms[1](mix(norms[0](x)))),
        "parallel": lambda: x + mix(norms[0](x)) + chan(norms[0](x)),
    }[residual]()
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)
    assert len(norms) == {"prenorm": 2, "postnorm": 2, "sandwich": 4, "parallel": 1}[residual]


def test_admin_omega_follows_the_profiled_variances():
    model = testing.build_stack(_model("admin"))
    records = []
    hooks = [b.register_forward_pre_hook(lambda m, args: records.append(("in", args[0]))) for b in model.blocks]
    for b in model.blocks:
        for sub in b.sublayers:
            hooks.append(sub.register_forward_hook(lambda m, args, out: records.append(("f", out))))
    with torch.no_grad():
        model(profile_tokens(testing.stack_info()))  # the profiling pass's batch, with the profiled ω
    for h in hooks:
        h.remove()
    # Replay: ω_1 = 1; ω_{i+1} = √(Var[h·ω_i] + Var[f_i(h)]), h the sublayer's input, in layer order.
    omegas = [w for b in model.blocks for w in b.residual.omega]
    norms = [n for b in model.blocks for n in b.norms]
    running, i, h = 1.0, 0, None
    with torch.no_grad():
        for kind, value in records:
            if kind == "in":
                h = value
                continue
            torch.testing.assert_close(omegas[i], torch.full_like(omegas[i], running), rtol=1e-5, atol=0)
            running = math.sqrt(float((h * omegas[i]).var(unbiased=False) + value.var(unbiased=False)))
            h = norms[i](h * omegas[i] + value)
            i += 1
    first, last = float(omegas[1][0].detach()), float(omegas[-1][0].detach())
    assert i == len(omegas) == 5 and last > first > 1  # ω grows with depth


def test_realformer_adds_the_previous_layers_scores():
    model = testing.build_stack(_model("realformer"))
    captured = []
    hooks = [b.mixer.register_forward_pre_hook(lambda m, args: captured.append((m, args[0]))) for b in model.blocks]
    model(profile_tokens(testing.stack_info()))
    for h in hooks:
        h.remove()
    total = None
    for mixer, x in captured:  # the raw scores q kᵀ/√d of each layer, from its own projections
        q, k, _ = mixer._project(x, 0)
        k = k.repeat_interleave(mixer.n_heads // mixer.n_kv_heads, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(mixer.head_dim)
        total = scores if total is None else total + scores
    torch.testing.assert_close(model.score_carry.scores, total, rtol=1e-10, atol=1e-10)
    # and the first layer's attention equals softmax(scores) v without a carry
    plain = testing.build_stack(_model("postnorm", layers=[{"mixer": "softmax_attention", "position": "rope"}],
                                       n_layers=1))
    assert plain.score_carry is None


def test_realformer_on_a_mixer_without_scores_is_refused_with_the_reason():
    cfg = RunConfig.from_dict({"model": {"d_model": 16, "n_layers": 2, "layers": ["gla", "softmax_attention"],
                                         "residual": "realformer"}})
    with pytest.raises(IncompatibleError, match="mixer 'gla' exposes none"):
        testing.build_stack(cfg.model)


def test_output_projection_is_found_by_name():
    mixer = get("mixer", "gla").factory(16, causal=True)
    assert output_projection(mixer, channel=False) is mixer.out_proj
    channel = get("channel", "rwkv4_channel").factory(16)
    assert output_projection(channel, channel=True) is channel.value
