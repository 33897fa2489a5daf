"""The floating-point types a run or a benchmark may be asked for, by the names configs use."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Training in float16 needs loss scaling, which the training loop does not do (its gradients
# underflow); bfloat16 has float32's range and trains without it.
TRAINING_DTYPES = ("float32", "float64", "bfloat16")
