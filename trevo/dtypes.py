"""The floating-point types a run or a benchmark may be asked for, by the names configs use."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Training in float16 needs loss scaling, which the training loop does not do (its gradients
# underflow); bfloat16 has float32's range and trains without it.
TRAINING_DTYPES = ("float32", "float64", "bfloat16")
# Mixed precision (train.precision): the compute type under torch.autocast; None is plain float32.
PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
