"""Mixture of experts: the layer equals the per-token loop of its routing formula (top-1 Switch, top-2,
normalised gates), the load-balancing loss its formula on hand cases and reaches training, tokens are
routed independently, and bad options get clear errors."""

from __future__ import annotations

import pytest
import torch

from trevo.components.mixture_of_experts import load_balancing_loss
from trevo.errors import IncompatibleError
from trevo.registry import create
from trevo.train import auxiliary_loss


def _moe(**options):
    torch.manual_seed(0)
    return create("channel", "mixture_of_experts", d_model=8, n_experts=4, expand=2.0, **options).double()


@pytest.mark.parametrize("topk,normalize", [(1, False), (2, False), (2, True), (4, True)])
def test_equals_the_per_token_loop(topk, normalize):
    moe = _moe(topk=topk, normalize=normalize)
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    expected = torch.zeros_like(x)
    for b in range(2):
        for t in range(6):
            p = torch.softmax(moe.router.weight @ x[b, t], dim=0).detach()
            order = sorted(range(4), key=lambda e: -float(p[e]))[:topk]
            total = sum(float(p[e]) for e in order) if normalize else 1.0
            expected[b, t] = sum(p[e] / total * moe.experts[e](x[b, t]) for e in order)
    torch.testing.assert_close(moe(x), expected)
    if topk == 4 and normalize:  # every expert, gates summing to 1: the dense softmax mixture
        dense = sum(torch.softmax(moe.router(x), -1)[..., e, None] * moe.experts[e](x) for e in range(4))
        torch.testing.assert_close(moe(x), dense)


def test_tokens_are_routed_independently():
    moe = _moe(topk=2)
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    order = torch.randperm(9)
    torch.testing.assert_close(moe(x[:, order]), moe(x)[:, order])
    torch.testing.assert_close(moe(x[:, :4]), moe(x)[:, :4])


def test_load_balancing_loss_on_hand_cases():
    uniform = torch.full((8, 4), 0.25, dtype=torch.float64)
    spread = torch.arange(8)[:, None] % 4  # two tokens per expert
    assert float(load_balancing_loss(uniform, spread, 4)) == pytest.approx(1.0)
    collapsed = torch.zeros(8, 4, dtype=torch.float64)
    collapsed[:, 2] = 1.0
    assert float(load_balancing_loss(collapsed, torch.full((8, 1), 2), 4)) == pytest.approx(4.0)
    # f = (3/4, 1/4, 0, 0), P = (0.6, 0.4, 0, 0): N · Σ f·P with N = 4
    p = torch.tensor([[0.6, 0.4, 0.0, 0.0]] * 4, dtype=torch.float64)
    chosen = torch.tensor([[0], [0], [0], [1]])
    assert float(load_balancing_loss(p, chosen, 4)) == pytest.approx(4 * (0.75 * 0.6 + 0.25 * 0.4))


def test_the_balancing_loss_reaches_training_and_the_router():
    moe = _moe(topk=1, balance_weight=0.5)
    assert float(moe.auxiliary_loss()) == 0.0  # before any forward
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    moe(x)
    probabilities, chosen, _ = moe.route(x.reshape(-1, 8))
    expected = 0.5 * load_balancing_loss(probabilities, chosen, 4)
    model = torch.nn.Sequential(moe)  # training sums the terms of the model's components
    torch.testing.assert_close(auxiliary_loss(model), expected)
    auxiliary_loss(model).backward()
    assert moe.router.weight.grad.abs().sum() > 0
    moe.eval()
    moe.balance = None
    moe(x)
    assert moe.balance is None  # evaluation records no loss


def test_clear_errors():
    with pytest.raises(IncompatibleError, match="topk=5, n_experts=4"):
        _moe(topk=5)
    with pytest.raises(IncompatibleError, match="position-wise"):
        create("channel", "mixture_of_experts", d_model=8, expert="rwkv4_channel", expand=2.0)


@pytest.mark.parametrize("residual", ["depth_scaled", "deepnorm"])
@pytest.mark.parametrize("channel", [{"name": "mixture_of_experts", "topk": 2, "expand": 2.0},
                                     {"name": "product_key_memory", "n_keys": 8, "topk": 2}])
def test_sparse_channels_in_a_stack_with_rescaled_outputs(residual, channel):
    from trevo import testing
    from trevo.config import RunConfig

    model = RunConfig.from_dict({"model": {"d_model": 16, "n_layers": 2, "channel": channel, "residual": residual,
                                           "mixer": {"name": "softmax_attention"}, "position": "rope"}}).model
    testing.check_stack(model)
    if residual == "depth_scaled" and channel["name"] == "mixture_of_experts":  # every expert's output scaled
        stack = testing.build_stack(model)
        downs = stack.blocks[0].channel.output_projections()
        assert len(downs) == 4
        for down in downs:  # LeCun-normal std 1/√fan_in, times 1/√(2N) = 1/2 for N = 2 layers
            assert down.weight.std().item() == pytest.approx(0.5 * down.in_features ** -0.5, rel=0.2)
