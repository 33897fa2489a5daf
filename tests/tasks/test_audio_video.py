"""audio_video: the square moves one pixel per frame in the labelled direction, the tone's pitch follows its
height and its loudness its column, tokens fall in their modality's ids, the label (and, in the ablation, the
audio) is hidden where it must be, and the metrics follow their formulas."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import train_two_steps_of
from trevo.registry import create
from trevo.tasks.audio_video import DIRECTIONS, LEVELS, clip, dequantise, quantise


def _centre(frame: torch.Tensor) -> tuple[int, int]:
    """(x, y) of the 3 × 3 block of largest sum (wrapping), i.e. the square's centre."""
    box = sum(torch.roll(frame, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    y, x = divmod(int(box.argmax()), frame.shape[1])
    return x, y


@pytest.mark.parametrize("direction", range(4))
def test_the_square_moves_and_the_tone_follows_it(direction):
    frames, size, samples = 5, 9, 64
    video, audio = clip(direction, frames, size, samples, torch.Generator().manual_seed(direction))
    dx, dy = DIRECTIONS[direction]
    centres = [_centre(video[f]) for f in range(frames)]
    for f in range(1, frames):
        assert centres[f] == ((centres[f - 1][0] + dx) % size, (centres[f - 1][1] + dy) % size)
    for f, (x, y) in enumerate(centres):
        a = audio[f * samples:(f + 1) * samples]
        spectrum = torch.fft.rfft(a).abs()
        pitch = 2 + 6 * (size - 1 - y) / (size - 1)  # cycles per frame: an integer when y is 0, 2, 4, 6 or 8
        if pitch == int(pitch):
            assert int(spectrum.argmax()) == int(pitch)
            assert float(a.abs().max()) == pytest.approx(0.4 + 0.6 * x / (size - 1), rel=0.05)


def test_quantisation_round_trips_within_half_a_bin():
    v = torch.linspace(-1, 1, 101, dtype=torch.float64)
    q = quantise(v, -1.0, 1.0)
    assert int(q.min()) == 0 and int(q.max()) == LEVELS - 1
    assert float((dequantise(q, -1.0, 1.0) - v).abs().max()) <= 1 / LEVELS + 1e-12


def test_modalities_hidden_label_and_the_audio_ablation():
    task = create("task", "audio_video", frames=2, size=4, samples=8, eval_size=6)
    video, sound, label = task.info.modalities
    batch = task.train_batch(0, 32, 0)
    x, t = batch["input"], batch["target"]
    assert x.shape == t.shape == (32, 32 + 16 + 1)
    for m, start in ((video, 0), (sound, 32), (label, 48)):
        ids = x[:, start:start + m.length]
        assert int(ids.min()) >= m.offset and int(ids.max()) < m.offset + m.vocab
    hidden = x[:, -1] == task.label_missing
    assert 0 < int(hidden.sum()) < 32 and torch.equal(x[~hidden, -1], t[~hidden, -1])
    assert all(bool((b["input"][:, -1] == task.label_missing).all()) for b in task.eval_batches("val", 4, 2))
    ablated = create("task", "audio_video", frames=2, size=4, samples=8, audio="hidden").train_batch(0, 32, 0)
    assert bool((ablated["input"][:, 32:48] == task.audio_missing).all())
    assert torch.equal(ablated["target"], t) and torch.equal(ablated["input"][:, :32], x[:, :32])


def test_metrics_of_a_perfect_and_a_shifted_reconstruction():
    task = create("task", "audio_video", frames=2, size=4, samples=8)
    batch = task.train_batch(0, 3, 0)
    perfect = torch.nn.functional.one_hot(batch["target"], task.info.vocab_size).double() * 10
    m = task.finalize(task.score(perfect, batch))
    assert m["label_accuracy"] == m["video_accuracy"] == m["audio_accuracy"] == 1.0
    assert m["video_mse"] == m["audio_mse"] == 0.0
    shifted = batch["target"].clone()
    shifted[:, :32] = (shifted[:, :32] + 1).clamp(max=LEVELS - 1)  # one level up: an error of one bin (1/16)
    m = task.finalize(task.score(torch.nn.functional.one_hot(shifted, task.info.vocab_size).double(), batch))
    moved = (shifted[:, :32] != batch["target"][:, :32]).double().mean()
    assert m["video_mse"] == pytest.approx(float(moved) / LEVELS ** 2)


def test_trains_through_the_training_loop(tmp_path):
    result = train_two_steps_of(
        tmp_path / "run", "task.name=audio_video", "task.frames=2", "task.size=4", "task.samples=8",
        "task.eval_size=2", "model.arch=perceiver_io", "model.position.name=fourier", "model.position.n_bands=2")
    assert result["metric"] == "label_accuracy"
