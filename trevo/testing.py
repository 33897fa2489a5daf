"""The contract suite every registered token mixer passes, importable by the authors of plug-ins.

trevo's own suite runs these checks on every registered mixer (``tests/mixers/test_contract.py``).
A component of your own gets the same suite with one class in a pytest file::

    from trevo.testing import MixerContract

    class TestMyMixer(MixerContract):
        mixer = "my_mixer"          # its registered name

or, outside pytest, ``check_mixer("my_mixer")``, which runs every check and raises ``AssertionError``
naming the first that fails; ``check_stack(model_config)`` runs the same contract on a whole model (a
residual placement of your own, a hybrid stack). Each check builds a small instance (``d_model`` 16, the entry's
``test_options``) and compares against an independent computation of the same mixer: its other
exact forms in float64, the same inputs with the future changed, one pass against a split one.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from trevo.components.base import TokenMixer
from trevo.errors import TrevoError
from trevo.registry import SYNONYMS, build, get

if TYPE_CHECKING:
    from trevo.config import ModelConfig
    from trevo.tasks.base import TaskInfo

D = 16  # the test width
T = 19  # the test length: not a multiple of any test chunk size


def seq_len(name: str) -> int:
    """The test length of ``name``: 16 (a 4 × 4 grid) for 2-D mixers, else T."""
    return 16 if get("mixer", name).needs_2d else T


def layout_for(name: str, seq: int) -> tuple[int, ...]:
    if get("mixer", name).needs_2d:
        side = int(seq ** 0.5)
        assert side * side == seq, "2-D mixers are tested on square lengths"
        return (side, side)
    return (seq,)


def build_mixer(name: str, causal: bool, dtype: torch.dtype = torch.float64, **options) -> TokenMixer:
    """A small seeded instance of ``name`` (``test_options`` plus ``options``), built as a model builds it."""
    entry = get("mixer", name)
    torch.manual_seed(0)
    n = seq_len(name)
    mixer = build("mixer", name, {**entry.test_options, **options}, d_model=D, causal=causal, max_len=n,
                  layout=layout_for(name, n))
    return mixer.to(dtype)


def directions(name: str) -> list[bool]:
    """The causal settings ``name`` supports: [True], [False] or [True, False]."""
    entry = get("mixer", name)
    return [c for c in (True, False) if (entry.causal if c else entry.bidirectional)]


def form_pairs(name: str) -> list[tuple[str, str]]:
    return list(itertools.combinations(get("mixer", name).forms, 2))


def _input(name: str, dtype: torch.dtype = torch.float64, requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(2, seq_len(name), D, dtype=dtype, requires_grad=requires_grad)


def check_shape_dtype_and_finite(name: str, causal: bool, dtype: torch.dtype) -> None:
    mixer = build_mixer(name, causal, dtype)
    x = _input(name, dtype)
    y = mixer(x, layout=layout_for(name, x.shape[1]))
    assert y.shape == x.shape and y.dtype == dtype, f"{name}: output {tuple(y.shape)} {y.dtype} for input {x.dtype}"
    assert torch.isfinite(y).all(), f"{name}: non-finite output"


def check_every_parameter_gets_a_gradient(name: str, causal: bool) -> None:
    mixer = build_mixer(name, causal)
    x = _input(name, requires_grad=True)
    mixer(x, layout=layout_for(name, x.shape[1])).square().sum().backward()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None, f"{name}: {pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    assert torch.isfinite(x.grad).all(), f"{name}: non-finite input gradient"


def check_never_sees_the_future(name: str) -> None:
    mixer = build_mixer(name, True)
    x = _input(name)
    n = x.shape[1]
    y = mixer(x, layout=layout_for(name, n))
    for t in (0, n // 2, n - 2):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 3
        y2 = mixer(x2, layout=layout_for(name, n))
        assert torch.equal(y[:, :t + 1], y2[:, :t + 1]), f"{name}: output at <= {t} changed with inputs after {t}"


def check_forms_agree(name: str, causal: bool, form_a: str, form_b: str) -> None:
    """Two exact forms give the same outputs and gradients (input and every parameter) in float64."""
    results = []
    for form in (form_a, form_b):
        mixer = build_mixer(name, causal, form=form)
        torch.manual_seed(1)
        x = _input(name, requires_grad=True)
        y = mixer(x, layout=layout_for(name, x.shape[1]))
        y.backward(torch.randn(y.shape, dtype=y.dtype))  # not randn_like: it follows a strided layout
        results.append((y.detach(), x.grad, {k: p.grad for k, p in mixer.named_parameters()}))
    (ya, gxa, gpa), (yb, gxb, gpb) = results
    where = f"{name} {form_a} vs {form_b}"
    torch.testing.assert_close(ya, yb, rtol=1e-9, atol=1e-10, msg=lambda m: f"{where}, outputs: {m}")
    torch.testing.assert_close(gxa, gxb, rtol=1e-8, atol=1e-10, msg=lambda m: f"{where}, input gradient: {m}")
    for k in gpa:
        torch.testing.assert_close(gpa[k], gpb[k], rtol=1e-8, atol=1e-10, msg=lambda m, k=k: f"{where}, {k}: {m}")


def check_prefill_then_step_equals_forward(name: str) -> None:
    mixer = build_mixer(name, True)
    x = _input(name)
    full = mixer(x)
    t = x.shape[1] // 3
    y0, state = mixer.prefill(x[:, :t])
    ys = [y0]
    for i in range(t, x.shape[1]):
        y, state = mixer.step(x[:, i], state)
        assert y.shape == (2, D), f"{name}: step returned {tuple(y.shape)}"
        ys.append(y[:, None])
    torch.testing.assert_close(torch.cat(ys, dim=1), full, rtol=1e-9, atol=1e-10,
                               msg=lambda m: f"{name}, prefill + steps vs forward: {m}")


def check_split_state_equals_one_pass(name: str) -> None:
    mixer = build_mixer(name, True)
    x = _input(name)
    n = x.shape[1]
    full, _ = mixer.prefill(x)
    for t in (1, n // 2, n - 1):
        y1, state = mixer.prefill(x[:, :t])
        y2, _ = mixer.prefill(x[:, t:], state)
        torch.testing.assert_close(torch.cat([y1, y2], dim=1), full, rtol=1e-9, atol=1e-10,
                                   msg=lambda m, t=t: f"{name}, split at {t}: {m}")


def check_bidirectional_padding_is_ignored(name: str) -> None:
    mixer = build_mixer(name, False)
    x = _input(name)
    n = x.shape[1]
    mask = torch.ones(2, n, dtype=torch.bool)
    real = n - 5
    mask[1, real:] = False
    y = mixer(x, padding_mask=mask, layout=layout_for(name, n))
    x2 = x.clone()
    x2[1, real:] = torch.randn_like(x2[1, real:]) * 5
    y2 = mixer(x2, padding_mask=mask, layout=layout_for(name, n))
    torch.testing.assert_close(y[1, :real], y2[1, :real], rtol=1e-9, atol=1e-10,
                               msg=lambda m: f"{name}: padded positions reached real ones: {m}")
    torch.testing.assert_close(y[0], y2[0], rtol=0, atol=0)


def check_wrong_input_is_a_clear_error(name: str, causal: bool) -> None:
    mixer = build_mixer(name, causal, torch.float32)
    for bad, words in ((torch.randn(2, 8, D + 1), "expects input of shape"),
                       (torch.zeros(2, 8, D, dtype=torch.long), "floating-point")):
        try:
            mixer(bad)
        except TrevoError as e:
            assert words in str(e), f"{name}: unclear error for a bad input: {e}"
        else:
            raise AssertionError(f"{name} accepted an input it cannot take ({tuple(bad.shape)} {bad.dtype})")


def check_metadata_and_vocabulary(name: str) -> None:
    """The registry entry names its paper and complexity; the constructor speaks the vocabulary of
    docs/components.md (no synonym of a vocabulary word) and takes ``form`` when it has several forms."""
    entry = get("mixer", name)
    assert entry.paper is not None and entry.paper.title and entry.paper.year, f"{name}: no paper"
    assert entry.category and entry.family and entry.time, f"{name}: category, family and time are required"
    assert entry.causal or entry.bidirectional, f"{name}: neither causal nor bidirectional"
    assert (entry.factory.__doc__ or "").strip(), f"{name}: a component needs a docstring naming its paper and equation"
    params = inspect.signature(entry.factory).parameters
    synonyms = sorted(set(params) & set(SYNONYMS))
    assert not synonyms, f"{name}: options {synonyms} are spelled {[SYNONYMS[s] for s in synonyms]} in trevo"
    assert len(entry.forms) < 2 or "form" in params, f"{name} has the forms {entry.forms} but takes no `form`"


def check_trains_inside_the_backbone(name: str) -> None:
    """Two AdamW steps on one batch inside a 1-layer model: finite losses, the second lower."""
    from trevo.config import RunConfig
    from trevo.models.layers import reuses_attention
    from trevo.train import build as build_run
    from trevo.train import make_optimizer

    entry = get("mixer", name)
    task = "byte_lm" if entry.causal and not entry.needs_2d else "digits"
    cfg = RunConfig().replace({"model.mixer": {"name": name, **entry.test_options}, "model.d_model": D,
                               "model.n_layers": 1, "task.name": task, "train.batch_size": 2})
    if reuses_attention(name):  # Skip-Attention maps the layer before's attention
        cfg = cfg.replace({"model.n_layers": 2, "model.layers": [{"mixer": "softmax_attention"}, {}]})
    if task == "byte_lm":
        cfg = cfg.replace({"task.seq_len": 16})
    task_obj, model = build_run(cfg)
    optimizer = make_optimizer(model, cfg.train)
    batch = task_obj.train_batch(0, 2, 0)
    losses = []
    for _ in range(2):
        loss = task_obj.loss(model(batch["input"], batch.get("padding_mask")), batch)
        assert torch.isfinite(loss), f"{name}: non-finite loss in the backbone"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0], f"{name}: one AdamW step on the same batch did not lower its loss {losses}"


def checks(name: str) -> list[tuple[str, Callable[[], None]]]:
    """Every contract check that applies to ``name``, as (label, thunk)."""
    out: list[tuple[str, Callable[[], None]]] = [("metadata", lambda: check_metadata_and_vocabulary(name))]
    for causal in directions(name):
        tag = "causal" if causal else "bidirectional"
        for dtype in (torch.float32, torch.float64):
            out.append((f"shape {tag} {dtype}", lambda c=causal, d=dtype: check_shape_dtype_and_finite(name, c, d)))
        out.append((f"gradients {tag}", lambda c=causal: check_every_parameter_gets_a_gradient(name, c)))
        out.append((f"bad input {tag}", lambda c=causal: check_wrong_input_is_a_clear_error(name, c)))
        for a, b in form_pairs(name):
            out.append((f"forms {a}={b} {tag}", lambda c=causal, a=a, b=b: check_forms_agree(name, c, a, b)))
        if causal:
            out += [("causality", lambda: check_never_sees_the_future(name)),
                    ("prefill+step", lambda: check_prefill_then_step_equals_forward(name)),
                    ("split state", lambda: check_split_state_equals_one_pass(name))]
        else:
            out.append(("padding", lambda: check_bidirectional_padding_is_ignored(name)))
    out.append(("trains", lambda: check_trains_inside_the_backbone(name)))
    return out


def check_mixer(name: str) -> list[str]:
    """Run every contract check on ``name``; returns the labels of the checks that passed."""
    passed = []
    for label, check in checks(name):
        try:
            check()
        except AssertionError as e:
            raise AssertionError(f"{name}: contract check {label!r} failed: {e}") from e
        passed.append(label)
    return passed


class MixerContract:
    """Subclass with ``mixer = "<registered name>"`` in a pytest file to run the contract on it."""

    mixer: str = ""

    def test_metadata_and_vocabulary(self) -> None:
        check_metadata_and_vocabulary(self.mixer)

    def test_shapes_gradients_and_errors(self) -> None:
        for causal in directions(self.mixer):
            for dtype in (torch.float32, torch.float64):
                check_shape_dtype_and_finite(self.mixer, causal, dtype)
            check_every_parameter_gets_a_gradient(self.mixer, causal)
            check_wrong_input_is_a_clear_error(self.mixer, causal)

    def test_exact_forms_agree(self) -> None:
        for causal in directions(self.mixer):
            for a, b in form_pairs(self.mixer):
                check_forms_agree(self.mixer, causal, a, b)

    def test_causal_contract(self) -> None:
        if True in directions(self.mixer):
            check_never_sees_the_future(self.mixer)
            check_prefill_then_step_equals_forward(self.mixer)
            check_split_state_equals_one_pass(self.mixer)

    def test_bidirectional_padding(self) -> None:
        if False in directions(self.mixer):
            check_bidirectional_padding_is_ignored(self.mixer)

    def test_trains_inside_the_backbone(self) -> None:
        check_trains_inside_the_backbone(self.mixer)


# ---------------------------------------------------------------------------------------------- stacks
# The same contract for a whole model: a residual placement, or a hybrid stack of mixers (a genome).

VOCAB = 32  # the test vocabulary of a stack


def stack_info(seq: int = T) -> TaskInfo:
    """A causal-LM task description for the stack checks (``seq`` tokens of a 32-symbol vocabulary)."""
    from trevo.tasks.base import TaskInfo

    return TaskInfo(vocab_size=VOCAB, head="lm", seq_len=seq, causal="required", layout=(seq,))


def build_stack(model: ModelConfig, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """A seeded causal LM of ``model`` (a ModelConfig) for ``stack_info()``, in ``dtype``."""
    from trevo.models import build_model

    torch.manual_seed(0)
    return build_model(model, stack_info()).to(dtype)


def _tokens(seed: int = 0) -> torch.Tensor:
    """Two rows of T distinct tokens: no two keys of the first layer tie exactly (a top-k selection between
    equal scores may keep either, differently in two exact forms)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(VOCAB, generator=generator)[:T] for _ in range(2)])


def check_stack(model_cfg: ModelConfig) -> None:
    """Shapes, gradients to every parameter (those of the residual placements non-zero once its
    zero-initialised gates are moved off 0), causality, prefill then steps equal to forward, and a
    state carried across a split equal to one pass — for the whole model, every layer's state at once."""
    model = build_stack(model_cfg)
    tokens = _tokens()
    logits = model(tokens)
    assert logits.shape == (2, T, VOCAB) and torch.isfinite(logits).all(), f"logits {tuple(logits.shape)}"

    with torch.no_grad():  # ReZero's α = 0 would stop every gradient to the sublayers
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    logits = model(tokens)
    logits.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: no or a non-finite gradient"
        if ".residual." in name or re.search(r"\.norm\d+\.", name):
            assert p.grad.abs().sum() > 0, f"{name}: a zero gradient"
    model.eval()  # training-time randomness (randomized positions, dropout) off: the checks below compare passes
    with torch.no_grad():
        logits = model(tokens)

    for t in (0, T // 2, T - 2):
        changed = tokens.clone()
        changed[:, t + 1:] = _tokens(1)[:, t + 1:]
        torch.testing.assert_close(model(changed)[:, :t + 1].detach(), logits[:, :t + 1], rtol=0, atol=1e-12,
                                   msg=lambda m, t=t: f"the logits at <= {t} changed with later tokens: {m}")

    with torch.no_grad():
        t = T // 3
        first, state = model.prefill(tokens[:, :t])
        steps = [first]
        for i in range(t, T):
            out, state = model.step(tokens[:, i], state)
            steps.append(out[:, None])
        torch.testing.assert_close(torch.cat(steps, dim=1)[:, :T], logits, rtol=1e-9, atol=1e-9,
                                   msg=lambda m: f"prefill + steps vs forward: {m}")
        for t in (1, T // 2):
            a, state = model.prefill(tokens[:, :t])
            b, _ = model.prefill(tokens[:, t:], state)
            torch.testing.assert_close(torch.cat([a, b], dim=1), logits, rtol=1e-9, atol=1e-9,
                                       msg=lambda m, t=t: f"split at {t} vs one pass: {m}")
