"""Skip-Attention: in a model, a skipping layer's mixer output is Φ of the layer before's mixer output
(its own input unused, no QKᵀ of its own), Φ written out as float64 loops; generation through the carry
equals the forward pass; a stack that starts with a skipping layer is refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import prefill_then_step
from trevo.components.mixers.softmax_attention import SoftmaxAttention
from trevo.config import RunConfig
from trevo.errors import IncompatibleError
from trevo.registry import build
from trevo.train import build as build_run


def _model(task: str, layers: list[str], **extra):
    cfg = RunConfig().replace({"model.d_model": 8, "model.n_layers": len(layers), "task.name": task,
                               "model.layers": [{"mixer": {"name": m, "expand": 2, "conv_size": 3}
                                                 if m == "skip_attention" else {"name": m}} for m in layers],
                               **extra})
    torch.manual_seed(0)
    task_obj, model = build_run(cfg)
    return task_obj, model.double().eval()


def phi_reference(mixer, z: torch.Tensor, causal: bool, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Φ(z) for one example ``z`` ``[T, d]`` by loops over positions, taps and channels."""
    w1, b1, w2, b2 = mixer.fc1.weight, mixer.fc1.bias, mixer.fc2.weight, mixer.fc2.bias
    cw, cb, eca = mixer.conv.weight, mixer.conv.bias, mixer.eca.reshape(-1)
    t_len, k = z.shape[0], mixer.conv_size
    h = F.gelu(z @ w1.T + b1)
    conv = torch.zeros_like(h)
    for t in range(t_len):  # every channel at once: a depthwise kernel acts on each channel alone
        total = cb.clone()
        if grid is not None:
            rows, cols = grid
            r0, c0 = divmod(t, cols)
            for i in range(k):
                for j in range(k):
                    r, q = r0 + i - k // 2, c0 + j - k // 2
                    if 0 <= r < rows and 0 <= q < cols:
                        total = total + cw[:, 0, i, j] * h[r * cols + q]
        else:
            for j in range(k):
                s = t - (k - 1) + j if causal else t + j - k // 2
                if 0 <= s < t_len:
                    total = total + cw[:, 0, j] * h[s]
        conv[t] = total
    y = F.gelu(conv) @ w2.T + b2
    out = torch.zeros_like(y)
    d = y.shape[1]
    for t in range(t_len):
        mean = y[: t + 1].mean(0) if causal else y.mean(0)
        for c in range(d):
            score = sum(eca[j] * mean[c - 1 + j] for j in range(3) if 0 <= c - 1 + j < d)
            out[t, c] = y[t, c] * torch.sigmoid(score)
    return out


def _record(model):
    """Each block's mixer input and output on the next forward pass."""
    seen = []
    hooks = [b.mixer.register_forward_hook(lambda m, args, out: seen.append((args[0], out))) for b in model.blocks]
    return seen, hooks


@pytest.mark.parametrize("task", ["byte_lm", "digits"])
def test_a_skipping_layer_equals_phi_of_the_attention_output_before_it(task, monkeypatch):
    task_obj, model = _model(task, ["softmax_attention", "skip_attention", "skip_attention"],
                             **({"task.seq_len": 12} if task == "byte_lm" else {}))
    attends = []
    real_attend = SoftmaxAttention._attend
    monkeypatch.setattr(SoftmaxAttention, "_attend",
                        lambda self, *a, **k: attends.append(1) or real_attend(self, *a, **k))
    seen, hooks = _record(model)
    batch = task_obj.train_batch(0, 2, 0)
    model(batch["input"])
    for h in hooks:
        h.remove()
    assert len(attends) == 1, "only the attention layer computes QKᵀ"
    grid = None if model.causal else tuple(task_obj.info.layout)
    for layer in (1, 2):
        mixer = model.blocks[layer].mixer
        source = seen[layer - 1][1]
        assert not torch.allclose(seen[layer][0], source)  # its own input is something else
        assert mixer.image == (task == "digits")  # the paper's 2-D depthwise convolution on an image grid
        torch.testing.assert_close(seen[layer][1][1], phi_reference(mixer, source[1], model.causal, grid))
    assert {n.split(".")[0] for n, _ in model.blocks[1].mixer.named_parameters()} == {"fc1", "fc2", "conv", "eca"}


def test_generation_through_the_carry_equals_the_forward_pass():
    _, model = _model("byte_lm", ["softmax_attention", "skip_attention", "skip_attention", "softmax_attention"],
                      **{"task.seq_len": 12})
    tokens = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(prefill_then_step(model, tokens, 5), model(tokens))


def test_a_stack_that_starts_by_skipping_is_refused():
    with pytest.raises(IncompatibleError, match="layer 0: mixer 'skip_attention' reuses the attention output"):
        _model("byte_lm", ["skip_attention", "softmax_attention"])
    with pytest.raises(IncompatibleError, match="hourglass repeats one mixer"):
        build_run(RunConfig().replace({"model.arch": "hourglass", "model.mixer": "skip_attention",
                                       "task.name": "byte_lm", "model.d_model": 8}))


def test_an_even_centred_kernel_is_refused():
    with pytest.raises(IncompatibleError, match="odd conv_size"):
        build("mixer", "skip_attention", {"conv_size": 4}, d_model=8, causal=False)
