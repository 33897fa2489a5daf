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
