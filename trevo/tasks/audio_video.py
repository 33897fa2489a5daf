"""Audio + video + label multimodal auto-encoding at small scale: Perceiver IO's Kinetics experiment
(Jaegle et al., arXiv:2107.14795, §4.3) on procedural clips.

A clip is ``frames`` frames of ``size × size`` pixels: a bright 3 × 3 square on a dim noisy background,
moving one pixel per frame in one of four directions (the class: right, left, down, up; wrapping
around the edges). Its audio track is ``samples`` samples per frame of a tone that follows the motion:
pitch rises with the square's height in the frame and loudness with its distance from the left edge,
a(t) = (0.4 + 0.6·x/size)·sin(2π·f(y)·t), f from 2 to 8 cycles per frame. Pixels and audio samples are
quantised to ``LEVELS`` levels (tokens); the label is one more token. The three modalities are one input
array (each with its own embedding and positions, padded to a common width with a learned modality
embedding: ``info.modalities``), and Perceiver IO decodes one query per output element of each.

The label input is replaced by a "missing" token for half the training clips and for every evaluation
clip, so its reconstruction is classification through the auto-encoder. ``audio="hidden"`` replaces
every audio input by a missing token too (train and evaluation): the label then comes from the video
alone (the ablation). Metrics: label accuracy (primary), per-modality token accuracy and the mean
squared error of the reconstructed values (pixels and samples in [0, 1] and [−1, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from trevo.registry import register
from trevo.tasks.base import Batch, Task, step_generator
from trevo.tasks.perceiver_tasks import PERCEIVER_IO, Modality, StructuredTaskInfo
from trevo.tasks.synthetic import require

LEVELS = 16
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # (dx, dy): right, left, down, up
CLASS_NAMES = ("right", "left", "down", "up")
EVAL_SEEDS = {"val": 30_001, "test": 30_002}


def clip(direction: int, frames: int, size: int, samples: int, gen: torch.Generator
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Video ``[frames, size, size]`` in [0, 1] and audio ``[frames · samples]`` in [−1, 1] of one clip."""
    x0, y0 = (int(v) for v in torch.randint(0, size, (2,), generator=gen))
    dx, dy = DIRECTIONS[direction]
    video = 0.15 * torch.rand(frames, size, size, generator=gen, dtype=torch.float64)
    audio = []
    t = torch.arange(samples, dtype=torch.float64) / samples
    for f in range(frames):
        x, y = (x0 + dx * f) % size, (y0 + dy * f) % size
        for oy in (-1, 0, 1):
            for ox in (-1, 0, 1):
                video[f, (y + oy) % size, (x + ox) % size] = 0.9
        pitch = 2 + 6 * (size - 1 - y) / max(size - 1, 1)  # higher in the frame: higher pitch
        audio.append((0.4 + 0.6 * x / max(size - 1, 1)) * torch.sin(2 * math.pi * pitch * t))
    return video, torch.cat(audio)


def quantise(values: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Values in [lo, hi] → level ids 0 … LEVELS − 1 (uniform bins)."""
    return ((values - lo) / (hi - lo) * LEVELS).floor().clamp(0, LEVELS - 1).long()


def dequantise(levels: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The centre of each level's bin."""
    return lo + (levels.double() + 0.5) * (hi - lo) / LEVELS


@register("task", "audio_video", paper=PERCEIVER_IO, category="Arch", family="perceiver_tasks")
class AudioVideoAutoencode(Task):
    """Auto-encode the video, audio and label of a procedural clip through one latent array.

    The label is hidden for half the training clips and all evaluation ones (``audio="hidden"``: the audio
    too, an ablation). Metric: label accuracy with the label hidden; also per-modality accuracy and MSE."""

    def __init__(self, frames: int = 4, size: int = 8, samples: int = 32, audio: str = "given",
                 hide_label: float = 0.5, eval_size: int = 256) -> None:
        require(isinstance(frames, int) and 2 <= frames <= 64, f"audio_video: frames must be in [2, 64], got {frames}")
        require(isinstance(size, int) and 4 <= size <= 64, f"audio_video: size must be in [4, 64], got {size}")
        require(isinstance(samples, int) and 4 <= samples <= 1024, f"audio_video: samples must be in [4, 1024], "
                f"got {samples}")
        require(audio in ("given", "hidden"), f"audio_video: audio must be 'given' or 'hidden', got {audio!r}")
        require(0 <= hide_label <= 1, f"audio_video: hide_label is a probability in [0, 1], got {hide_label}")
        require(isinstance(eval_size, int) and eval_size >= 1, f"audio_video: eval_size must be >= 1, got {eval_size}")
        self.frames, self.size, self.samples, self.eval_size = frames, size, samples, eval_size
        self.hide_audio, self.hide_label = audio == "hidden", hide_label
        self.n_video, self.n_audio = frames * size * size, frames * samples
        # ids: video levels, then audio levels and audio's "missing", then the classes and the label's "missing"
        video = Modality("video", self.n_video, 0, LEVELS, (frames, size, size))
        sound = Modality("audio", self.n_audio, LEVELS, LEVELS + 1, (self.n_audio,))
        label = Modality("label", 1, 2 * LEVELS + 1, len(DIRECTIONS) + 1, (1,))
        self.audio_missing, self.label_offset = 2 * LEVELS, 2 * LEVELS + 1
        self.label_missing = self.label_offset + len(DIRECTIONS)
        self.info = StructuredTaskInfo(vocab_size=self.label_missing + 1, head="mlm",
                                       seq_len=self.n_video + self.n_audio + 1, causal="forbidden",
                                       metric="label_accuracy", higher_is_better=True,
                                       models=("perceiver_io",), modalities=(video, sound, label))

    def clips(self, batch_size: int, gen: torch.Generator, train: bool) -> Batch:
        labels = torch.randint(0, len(DIRECTIONS), (batch_size,), generator=gen)
        made = [clip(int(c), self.frames, self.size, self.samples, gen) for c in labels]
        video = quantise(torch.stack([v.reshape(-1) for v, _ in made]), 0.0, 1.0)
        audio = quantise(torch.stack([a for _, a in made]), -1.0, 1.0) + LEVELS
        target = torch.cat([video, audio, labels[:, None] + self.label_offset], dim=1)
        hide = torch.rand(batch_size, generator=gen) < self.hide_label
        if not train:
            hide = torch.ones_like(hide)
        label_in = torch.where(hide, self.label_missing, labels + self.label_offset)
        audio_in = torch.full_like(audio, self.audio_missing) if self.hide_audio else audio
        return {"input": torch.cat([video, audio_in, label_in[:, None]], dim=1), "target": target}

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self.clips(batch_size, step_generator(seed, step), True)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        require(split in EVAL_SEEDS, f"unknown split {split!r}; splits are {', '.join(EVAL_SEEDS)}")
        gen = torch.Generator().manual_seed(EVAL_SEEDS[split])
        left = min(self.eval_size, batch_size * n_batches)
        while left > 0:
            yield self.clips(min(batch_size, left), gen, False)
            left -= batch_size

    def score(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        totals = super().score(logits, batch)
        v, a = self.n_video, self.n_video + self.n_audio
        pred, target = logits.argmax(-1), batch["target"]
        correct = pred == target
        video_err = dequantise(pred[:, :v].clamp(0, LEVELS - 1), 0, 1) - dequantise(target[:, :v], 0, 1)
        audio_err = (dequantise((pred[:, v:a] - LEVELS).clamp(0, LEVELS - 1), -1, 1)
                     - dequantise(target[:, v:a] - LEVELS, -1, 1))
        return {**totals, "clips": float(len(target)), "video_correct": float(correct[:, :v].sum()),
                "audio_correct": float(correct[:, v:a].sum()), "label_correct": float(correct[:, a].sum()),
                "video_sq": float((video_err ** 2).sum()), "audio_sq": float((audio_err ** 2).sum())}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        n = max(totals["clips"], 1)
        return {**metrics, "label_accuracy": totals["label_correct"] / n,
                "video_accuracy": totals["video_correct"] / (n * self.n_video),
                "audio_accuracy": totals["audio_correct"] / (n * self.n_audio),
                "video_mse": totals["video_sq"] / (n * self.n_video),
                "audio_mse": totals["audio_sq"] / (n * self.n_audio)}

    def render(self, batch: Batch, i: int) -> str:
        label = int(batch["target"][i, -1]) - self.label_offset
        given = int(batch["input"][i, -1]) != self.label_missing
        return (f"{self.frames} frames of {self.size}×{self.size}, {self.n_audio} audio samples, moving "
                f"{CLASS_NAMES[label]}; label input {'given' if given else 'hidden'}, audio input "
                f"{'hidden' if self.hide_audio else 'given'}")
