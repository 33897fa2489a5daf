"""Activation functions, by name (used by the channel mixers' ``activation=`` option)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.registry import Paper, register


def _activation(name: str, fn, paper: Paper):
    @register("activation", name, category="Act", family="activation", paper=paper,
              summary=f"{name}: elementwise activation")
    class Activation(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fn(x)

    Activation.__name__ = Activation.__qualname__ = f"Activation_{name}"
    return Activation


_activation("relu", F.relu, Paper("Rectified Linear Units Improve Restricted Boltzmann Machines", "", 2010))
_activation("gelu", F.gelu, Paper("Gaussian Error Linear Units (GELUs)", "1606.08415", 2016))
_activation("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
            Paper("Gaussian Error Linear Units (GELUs), the tanh approximation (GPT-2's gelu_new)", "1606.08415", 2016))
_activation("silu", F.silu, Paper("Sigmoid-Weighted Linear Units for Neural Network Function "
                                  "Approximation in Reinforcement Learning", "1702.03118", 2017))
_activation("sigmoid", torch.sigmoid, Paper("Language Modeling with Gated Convolutional Networks",
                                            "1612.08083", 2016))
_activation("identity", lambda x: x, Paper("GLU Variants Improve Transformer (bilinear)", "2002.05202", 2020))
_activation("relu2", lambda x: F.relu(x).square(),
            Paper("Primer: Searching for Efficient Transformers for Language Modeling", "2109.08668", 2021))
_activation("mish", F.mish, Paper("Mish: A Self Regularized Non-Monotonic Activation Function",
                                  "1908.08681", 2019))


def _paper(title: str, arxiv: str, year: int) -> Paper:
    return Paper(title, arxiv, year)


# The survey's set (Dubey et al., "Activation Functions in Deep Learning: A Comprehensive Survey and
# Benchmark", arXiv:2109.14545) beyond the above: fixed ones by formula, learned ones as modules below.
_activation("elu", F.elu, _paper("Fast and Accurate Deep Network Learning by Exponential Linear Units (ELUs)",
                                 "1511.07289", 2015))
_activation("selu", F.selu, _paper("Self-Normalizing Neural Networks", "1706.02515", 2017))
_activation("celu", F.celu, _paper("Continuously Differentiable Exponential Linear Units", "1704.07483", 2017))
_activation("hard_sigmoid", F.hardsigmoid, _paper("Searching for MobileNetV3", "1905.02244", 2019))
_activation("hard_swish", F.hardswish, _paper("Searching for MobileNetV3", "1905.02244", 2019))
_activation("softplus", F.softplus, _paper("Incorporating Second-Order Functional Knowledge for Better Option "
                                           "Pricing (softplus)", "", 2001))
_activation("leaky_relu", F.leaky_relu, _paper("Rectifier Nonlinearities Improve Neural Network Acoustic Models",
                                               "", 2013))
_activation("tanh", torch.tanh, _paper("Efficient BackProp (tanh)", "", 1998))
_activation("softsign", F.softsign, _paper("Quadratic Features and Deep Architectures for Chunking (softsign)",
                                           "", 2009))
_activation("squareplus", lambda x: 0.5 * (x + torch.sqrt(x * x + 4.0)),
            _paper("Squareplus: A Softplus-Like Algebraic Rectifier", "2112.11687", 2021))


@register("activation", "swish", category="Act", family="activation",
          paper=Paper("Searching for Activation Functions", "1710.05941", 2017))
class Swish(nn.Module):
    """Swish-β: x·σ(βx), β learned (initialised at ``beta``; β = 1 is SiLU) (Ramachandran et al. 2017)."""

    def __init__(self, beta: float = 1.0, learned: bool = True) -> None:
        super().__init__()
        beta_tensor = torch.tensor(float(beta))
        self.beta = nn.Parameter(beta_tensor) if learned else beta_tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)


@register("activation", "prelu", category="Act", family="activation",
          paper=Paper("Delving Deep into Rectifiers: Surpassing Human-Level Performance on ImageNet Classification",
                      "1502.01852", 2015))
class PReLU(nn.Module):
    """PReLU: max(0, x) + a·min(0, x), one learned slope a (initialised at 0.25, He et al. 2015)."""

    def __init__(self, init: float = 0.25) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) - self.a * F.relu(-x)


@register("activation", "snake", category="Act", family="activation",
          paper=Paper("Neural Networks Fail to Learn Periodic Functions and How to Fix It", "2006.08195", 2020))
class Snake(nn.Module):
    """Snake: x + sin²(αx)/α, one learned frequency α (initialised at ``alpha``) (Ziyin et al. 2020)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.sin(self.alpha * x).square() / self.alpha


@register("activation", "srelu", category="Act", family="activation",
          paper=Paper("Deep Learning with S-shaped Rectified Linear Activation Units", "1512.07030", 2015))
class SReLU(nn.Module):
    """S-shaped ReLU: t_r + a_r(x − t_r) for x ≥ t_r, x between the thresholds, t_l + a_l(x − t_l) for
    x ≤ t_l, the four learned (Jin et al. 2015; initialised at t_l = 0, a_l = 0.2, t_r = 1, a_r = 1:
    a leaky ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.t_left, self.a_left = nn.Parameter(torch.tensor(0.0)), nn.Parameter(torch.tensor(0.2))
        self.t_right, self.a_right = nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = self.t_right + self.a_right * (x - self.t_right)
        left = self.t_left + self.a_left * (x - self.t_left)
        return torch.where(x >= self.t_right, right, torch.where(x <= self.t_left, left, x))
