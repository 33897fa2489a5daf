"""Point-cloud classification of procedurally sampled 3-D shapes, in the spirit of the Perceiver's
ModelNet40 experiment (Jaegle et al., arXiv:2103.03206, §4.3): the input is the raw (x, y, z) of each
point, a set in no particular order; the model adds Fourier features of the coordinates themselves.

Shapes (surfaces, centred at the origin, size s ~ U[0.55, 0.9]): sphere (radius s), cube (half-side
0.6 s), torus (tube radius 0.3 s around a circle of radius 0.65 s, in the xy plane), cylinder
(radius 0.55 s, half-height 0.7 s, with caps), cone (base radius 0.6 s at z = −0.7 s, apex at
z = +0.7 s, with its base). Points are spread uniformly by area (the torus's tube angle too, by
rejection on its area element), then moved by Gaussian noise of standard deviation ``noise``, then
rotated by a uniformly random rotation (QR of a Gaussian matrix, Mezzadri 2007); every point stays
in the unit ball up to the noise. Training batches are drawn from (seed, step); val and test from two
fixed seeds (``eval_size`` clouds each). Metric: accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, Task, step_generator
from trevo.tasks.perceiver_tasks import StructuredTaskInfo
from trevo.tasks.synthetic import require

SHAPES = ("sphere", "cube", "torus", "cylinder", "cone")
EVAL_SEEDS = {"val": 10_001, "test": 10_002}
PERCEIVER = Paper("Perceiver: General Perception with Iterative Attention", "2103.03206", 2021)


def _uniform(n: int, gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def _pick_parts(n: int, areas: list[float], gen: torch.Generator) -> torch.Tensor:
    """Which part (face, side, cap) each of n points lies on, in proportion to the parts' areas."""
    return torch.multinomial(torch.tensor(areas, dtype=torch.float64), n, replacement=True, generator=gen)


def sample_shape(name: str, n: int, size: float, gen: torch.Generator) -> torch.Tensor:
    """``[n, 3]`` float64 points on the surface of shape ``name`` of size ``size`` (see the module doc),
    axis-aligned and noise-free."""
    if name == "sphere":
        p = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        return size * p / p.norm(dim=1, keepdim=True)
    if name == "cube":
        a = 0.6 * size
        face = _pick_parts(n, [1.0] * 6, gen)
        p = a * (2 * torch.rand(n, 3, generator=gen, dtype=torch.float64) - 1)
        axis, sign = face % 3, (face // 3) * 2 - 1
        p[torch.arange(n), axis] = a * sign.double()
        return p
    if name == "torus":
        big, small = 0.65 * size, 0.3 * size
        # the area element is (R + r cos v) du dv: keep tube angles v with probability ∝ it
        v = torch.empty(0, dtype=torch.float64)
        while len(v) < n:
            cand = _uniform(2 * n, gen, 0, 2 * math.pi)
            keep = _uniform(2 * n, gen) * (big + small) < big + small * torch.cos(cand)
            v = torch.cat([v, cand[keep]])
        v, u = v[:n], _uniform(n, gen, 0, 2 * math.pi)
        ring = big + small * torch.cos(v)
        return torch.stack([ring * torch.cos(u), ring * torch.sin(u), small * torch.sin(v)], dim=1)
    if name == "cylinder":
        r, h = 0.55 * size, 0.7 * size
        part = _pick_parts(n, [2 * math.pi * r * 2 * h, math.pi * r * r, math.pi * r * r], gen)
        u = _uniform(n, gen, 0, 2 * math.pi)
        rho = torch.where(part == 0, torch.full((n,), r, dtype=torch.float64), r * torch.sqrt(_uniform(n, gen)))
        cap_z = torch.where(part == 1, torch.tensor(-h, dtype=torch.float64), torch.tensor(h, dtype=torch.float64))
        z = torch.where(part == 0, _uniform(n, gen, -h, h), cap_z)
        return torch.stack([rho * torch.cos(u), rho * torch.sin(u), z], dim=1)
    if name == "cone":
        r, h = 0.6 * size, 0.7 * size
        part = _pick_parts(n, [math.pi * r * math.hypot(r, 2 * h), math.pi * r * r], gen)
        t = torch.sqrt(_uniform(n, gen))  # distance from the apex along the side (area ∝ t), or radius on the base
        u = _uniform(n, gen, 0, 2 * math.pi)
        rho = r * t
        z = torch.where(part == 0, h - 2 * h * t, torch.full((n,), -h, dtype=torch.float64))
        return torch.stack([rho * torch.cos(u), rho * torch.sin(u), z], dim=1)
    raise ValueError(f"unknown shape {name!r}; shapes are {', '.join(SHAPES)}")


def random_rotation(gen: torch.Generator) -> torch.Tensor:
    """A ``[3, 3]`` rotation drawn uniformly (Haar) from SO(3): QR of a Gaussian matrix with the signs of
    R's diagonal folded into Q (Mezzadri 2007), then a reflection undone."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@register("task", "point_clouds", paper=PERCEIVER, category="Arch", family="perceiver_tasks")
class PointClouds(Task):
    """Classify a procedurally sampled 3-D shape (5 classes) from its raw (x, y, z) points, a set."""

    def __init__(self, n_points: int = 128, noise: float = 0.02, eval_size: int = 256) -> None:
        require(isinstance(n_points, int) and n_points >= 4, f"point_clouds: n_points must be an integer >= 4, "
                f"got {n_points}")
        require(0 <= noise <= 0.5, f"point_clouds: noise is a standard deviation in [0, 0.5], got {noise}")
        require(isinstance(eval_size, int) and eval_size >= 1, f"point_clouds: eval_size must be >= 1, "
                f"got {eval_size}")
        self.n_points, self.noise, self.eval_size = n_points, noise, eval_size
        self.info = StructuredTaskInfo(vocab_size=0, head="classify", seq_len=n_points, n_classes=len(SHAPES),
                                       metric="accuracy", higher_is_better=True, models=("perceiver", "perceiver_io"),
                                       input_features=3, coordinate_dims=3, unordered=True)

    def clouds(self, batch_size: int, gen: torch.Generator) -> Batch:
        labels = torch.randint(0, len(SHAPES), (batch_size,), generator=gen)
        points = []
        for label in labels.tolist():
            p = sample_shape(SHAPES[label], self.n_points, float(_uniform(1, gen, 0.55, 0.9)), gen)
            p = p + self.noise * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            points.append(p @ random_rotation(gen).T)
        return {"input": torch.stack(points).float(), "target": labels}

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self.clouds(batch_size, step_generator(seed, step))

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        require(split in EVAL_SEEDS, f"unknown split {split!r}; splits are {', '.join(EVAL_SEEDS)}")
        gen = torch.Generator().manual_seed(EVAL_SEEDS[split])
        left = min(self.eval_size, batch_size * n_batches)
        while left > 0:
            yield self.clouds(min(batch_size, left), gen)
            left -= batch_size

    def render(self, batch: Batch, i: int) -> str:
        pts = batch["input"][i]
        return (f"{SHAPES[int(batch['target'][i])]}: {len(pts)} points, first "
                + " ".join(f"({x:+.2f},{y:+.2f},{z:+.2f})" for x, y, z in pts[:3].tolist()))
