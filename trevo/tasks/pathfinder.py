"""Pathfinder and Path-X as in the Long Range Arena (Tay et al. 2021), after Linsley et al. 2018
("Learning long-range spatial dependencies with horizontal gated recurrent units") and Kim et al. 2020.

Definition followed: an image holds dashed curved paths ("snakes") made of short straight dashes
(paddles) of ``paddle_length`` separated by gaps of ``paddle_margin``; each next dash turns by a
random angle (the curvature is set by ``continuity``). Two circle markers sit at the outer ends of the
target contour of ``contour_length`` dashes. Positive (label 1): the target is one path grown from a
seed in two opposite directions, so the markers are joined. Negative (label 0): two separate paths of
contour_length / 2 dashes each, grown away from two seeds ``seed_distance`` apart, one marker on
each. ``n_distractors`` distractor paths of ``distractor_length`` dashes are added. No path touches
another (new dashes that would come too close are redrawn at another angle, as in the generator's
paddle retrials), so connectivity is exactly the label. Labels are balanced in every batch. The image
is drawn at ``antialias_scale`` × resolution and averaged down; pixels are quantised to 256 levels,
and the sequence is the image in row-major order (layout (H, W)).

Published generator parameters (LRA's Pathfinder-32 and Path-X builders) are the presets for 32 and
128; other sizes scale the 32 preset. Deviations: the turning rule (uniform in ±(π/4)/continuity per
dash), the clearance between paths and the filled disc markers are this module's own rendering of the
snakes2 procedure, not a port of its code; contrast is one constant per preset.

LRA's protocol (the ``lra`` arena preset): Pathfinder-32 with a fixed set of 200,000 images split
160,000 / 20,000 / 20,000 (``train_size=160000, test_size=20000``). Where the defaults differ: fresh
images every step (``train_size=None``) and evaluation sets of batch_size × eval_batches images.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from trevo.registry import register
from trevo.tasks.base import Batch, TaskInfo
from trevo.tasks.listops import LRA
from trevo.tasks.synthetic import GeneratedTask, TaskParameterError, numpy_seed, require

PRESETS: dict[int, dict[str, float]] = {
    32: dict(paddle_length=2, paddle_margin=1, paddle_thickness=0.5, marker_radius=1.5, contour_length=14,
             continuity=1.0, distractor_length=4, n_distractors=5, seed_distance=7, antialias_scale=2,
             padding=1, contrast=2.0),
    128: dict(paddle_length=5, paddle_margin=2.5, paddle_thickness=1.5, marker_radius=3, contour_length=14,
              continuity=1.8, distractor_length=4, n_distractors=7, seed_distance=20, antialias_scale=2,
              padding=1, contrast=1.0),
}
MAX_IMAGE_TRIES = 200
PADDLE_RETRIES = 8


def preset(image_size: int) -> dict[str, float]:
    if image_size in PRESETS:
        return dict(PRESETS[image_size])
    scale = image_size / 32
    base = dict(PRESETS[32])
    for key in ("paddle_length", "paddle_margin", "paddle_thickness", "marker_radius", "seed_distance"):
        base[key] *= scale
    return base


class _Canvas:
    """Hi-res ink (float) and trace (bool: the solid support of every path, gaps included)."""

    def __init__(self, size: int, scale: int) -> None:
        self.n, self.s = size * scale, scale
        self.ink = np.zeros((self.n, self.n), np.float32)
        self.trace = np.zeros((self.n, self.n), bool)
        self.markers: list[tuple[int, int]] = []  # hi-res pixel of each marker's centre

    def disc_mask(self, a: np.ndarray, b: np.ndarray, radius: float) -> tuple[slice, slice, np.ndarray]:
        """Hi-res pixels within ``radius`` (hi-res px) of segment a-b (output coordinates)."""
        a, b = a * self.s, b * self.s
        lo = np.maximum(np.floor(np.minimum(a, b) - radius - 1), 0).astype(int)
        hi = np.minimum(np.ceil(np.maximum(a, b) + radius + 1), self.n).astype(int)
        ys = np.arange(lo[0], hi[0])[:, None] + 0.5
        xs = np.arange(lo[1], hi[1])[None, :] + 0.5
        d = b - a
        t = np.clip(((ys - a[0]) * d[0] + (xs - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0, 1)
        dist2 = (ys - a[0] - t * d[0]) ** 2 + (xs - a[1] - t * d[1]) ** 2
        return slice(lo[0], hi[0]), slice(lo[1], hi[1]), dist2 <= radius**2


@register("task", "pathfinder", paper=LRA, category="Benchmark", family="lra")
class Pathfinder(GeneratedTask):
    """Are the two markers joined by a dashed path? Binary classification of a pixel sequence
    (LRA Pathfinder; image_size=128 is Path-X)."""

    def __init__(self, image_size: int = 32, cache_dir: str | None = None,
                 train_size: int | None = None, test_size: int | None = None,
                 **overrides: float) -> None:
        require(image_size >= 16, f"pathfinder: image_size={image_size} is too small to draw a contour with "
                                  f"its markers and distractors; use 16 or more (LRA uses 32, Path-X 128)")
        p = preset(image_size)
        unknown = sorted(set(overrides) - set(p))
        require(not unknown, f"pathfinder: unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(p))}")
        p.update(overrides)
        for key in ("paddle_length", "paddle_thickness", "marker_radius", "continuity", "contrast"):
            require(p[key] > 0, f"pathfinder: {key} must be positive, got {p[key]}")
        require(p["contour_length"] >= 2 and int(p["contour_length"]) % 2 == 0,
                f"pathfinder: contour_length must be an even number >= 2, got {p['contour_length']}")
        require(int(p["antialias_scale"]) >= 1, "pathfinder: antialias_scale must be at least 1")
        half = p["contour_length"] / 2 * (p["paddle_length"] + p["paddle_margin"])
        require(half + p["seed_distance"] < image_size - 2 * p["padding"],
                f"pathfinder: an image of {image_size} px cannot hold a contour of {int(p['contour_length'])} "
                f"dashes of {p['paddle_length']}+{p['paddle_margin']} px; use a larger image_size or shorter dashes")
        self.image_size, self.p = image_size, p
        self.params = {"image_size": image_size, **p}
        self.fixed_sets("pathfinder", train_size, test_size, cache_dir)
        self.info = TaskInfo(vocab_size=256, head="classify", seq_len=image_size * image_size, n_classes=2,
                             causal="either", layout=(image_size, image_size), metric="accuracy",
                             higher_is_better=True)

    # -- drawing -------------------------------------------------------------------------------------
    def _grow(self, c: _Canvas, rng: np.random.Generator, occupied: np.ndarray, start: np.ndarray, angle: float,
              n: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Dashes of one path from ``start``; None if the first dash cannot be placed."""
        p, size = self.p, self.image_size
        step, max_turn = p["paddle_length"] + p["paddle_margin"], (math.pi / 4) / p["continuity"]
        trace_r = max(p["paddle_thickness"] * c.s / 2, 1.0)
        clear = trace_r + max(2.0, c.s)
        dashes, pos = [], start
        for k in range(n):
            for _ in range(PADDLE_RETRIES):
                theta = angle if k == 0 else angle + rng.uniform(-max_turn, max_turn)
                direction = np.array([math.sin(theta), math.cos(theta)])
                end = pos + step * direction
                if not (p["padding"] <= end.min() and end.max() <= size - p["padding"]):
                    continue
                ys, xs, m = c.disc_mask(pos, end, clear)
                if not (m & occupied[ys, xs]).any():
                    break
            else:
                return dashes if k else None
            dashes.append((pos, pos + p["paddle_length"] * direction))
            pos, angle = end, theta
        return dashes

    def _commit(self, c: _Canvas, occupied: np.ndarray, dashes: list, markers: list[np.ndarray]) -> None:
        p = self.p
        trace_r = max(p["paddle_thickness"] * c.s / 2, 1.0)
        ink_r = max(p["paddle_thickness"] * c.s / 2, 0.5)
        for i, (a, b) in enumerate(dashes):
            nxt = dashes[i + 1][0] if i + 1 < len(dashes) else b
            ys, xs, m = c.disc_mask(a, nxt, trace_r)
            c.trace[ys, xs] |= m
            occupied[ys, xs] |= m
            ys, xs, m = c.disc_mask(a, b, ink_r)
            c.ink[ys, xs] = np.maximum(c.ink[ys, xs], m)
        for centre in markers:
            c.markers.append((int(centre[0] * c.s), int(centre[1] * c.s)))
            ys, xs, m = c.disc_mask(centre, centre, p["marker_radius"] * c.s)
            c.trace[ys, xs] |= m
            occupied[ys, xs] |= m
            c.ink[ys, xs] = np.maximum(c.ink[ys, xs], m)

    def _marker_fits(self, c: _Canvas, occupied: np.ndarray, centre: np.ndarray) -> bool:
        ys, xs, m = c.disc_mask(centre, centre, self.p["marker_radius"] * c.s + max(2.0, c.s))
        return not (m & occupied[ys, xs]).any()

    def _try_draw(self, rng: np.random.Generator, label: int) -> _Canvas | None:
        p, size = self.p, self.image_size
        c = _Canvas(size, int(p["antialias_scale"]))
        occupied = np.zeros_like(c.trace)
        half = int(p["contour_length"]) // 2
        seed = rng.uniform(size * 0.25, size * 0.75, 2)
        angle = rng.uniform(0, 2 * math.pi)
        if label == 1:
            a = self._grow(c, rng, occupied, seed, angle, half)
            b = self._grow(c, rng, occupied, seed, angle + math.pi, half)
            if not a or not b or len(a) + len(b) < 2 * half:
                return None
            if not (self._marker_fits(c, occupied, a[-1][1]) and self._marker_fits(c, occupied, b[-1][1])):
                return None
            self._commit(c, occupied, a, [a[-1][1]])
            self._commit(c, occupied, b, [b[-1][1]])
        else:
            other = seed + p["seed_distance"] * np.array([math.sin(angle), math.cos(angle)])
            a = self._grow(c, rng, occupied, seed, angle + math.pi, half)
            if not a or len(a) < half or not self._marker_fits(c, occupied, a[-1][1]):
                return None
            self._commit(c, occupied, a, [a[-1][1]])
            b = self._grow(c, rng, occupied, other, angle, half)
            if not b or len(b) < half or not self._marker_fits(c, occupied, b[-1][1]):
                return None
            self._commit(c, occupied, b, [b[-1][1]])
        for _ in range(int(p["n_distractors"])):
            for _ in range(10):
                d = self._grow(c, rng, occupied, rng.uniform(p["padding"], size - p["padding"], 2),
                               rng.uniform(0, 2 * math.pi), int(p["distractor_length"]))
                if d:
                    self._commit(c, occupied, d, [])
                    break
        return c

    def draw(self, rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """One image (uint8 [H, W]), its hi-res trace (bool; the solid support of every path and
        marker, so the markers are joined in it exactly when ``label`` is 1) and the hi-res pixels of
        the two marker centres."""
        for _ in range(MAX_IMAGE_TRIES):
            c = self._try_draw(rng, label)
            if c is not None:
                s, n = c.s, self.image_size
                grey = c.ink.reshape(n, s, n, s).mean(axis=(1, 3)) * self.p["contrast"]
                return np.clip(np.round(grey * 255), 0, 255).astype(np.uint8), c.trace, c.markers
        raise TaskParameterError(f"pathfinder: could not draw a {self.image_size}x{self.image_size} image with "
                                 f"these parameters in {MAX_IMAGE_TRIES} tries; use a larger image_size, fewer "
                                 f"distractors or shorter contours")

    def make(self, gen: torch.Generator, n: int) -> Batch:
        labels = (torch.randperm(n, generator=gen) % 2).long()
        rng = np.random.default_rng(numpy_seed(gen))
        images = np.stack([self.draw(rng, int(y))[0] for y in labels])
        return {"input": torch.from_numpy(images.reshape(n, -1).astype(np.int64)), "target": labels}
