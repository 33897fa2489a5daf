"""Dense optical flow on procedurally generated frame pairs, in the spirit of AutoFlow (Sun et al.,
"AutoFlow: Learning a Better Training Set for Optical Flow", arXiv:2104.14544), the synthetic set
Perceiver IO's flow model was trained on (Jaegle et al., arXiv:2107.14795, §4.2).

A scene is layers painted back to front: a background covering the frame, then ``1 … max_shapes``
shapes (ellipses or rectangles). Each layer carries a procedural texture, a smooth function of its own
coordinates (a base grey plus four random sinusoids, clipped to [0, 1]), so it can be read anywhere,
and a motion between the frames: the similarity map A(p) = c + s·R(θ)·(p − c) + t about the layer's
centre c (θ ∈ ±``max_rotation`` degrees, s ∈ 1 ± ``max_scale``, t ∈ ±``max_shift`` pixels; the
background moves at a third of that). Frame 1 shows each layer where it is; frame 2 shows layer l's
content at A_l(p). Hence, exactly:

- flow(p) = A_l(p) − p, with l the top layer at pixel p in frame 1 (u along columns, v along rows);
- p is **occluded** when A_l(p) leaves the frame or a layer above l covers A_l(p) in frame 2.

The model's input at each pixel is the 3 × 3 patch around it in both frames (18 grey values, edges
replicated); Fourier features of the pixel's grid position come from the model's position component
(``model.position=fourier``), and one query per pixel decodes its (u, v) (Perceiver IO's recipe).
Metric: average end-point error ‖predicted − true flow‖ over all pixels (``epe``) and over the
non-occluded ones (``epe_noc``); ``zero_flow_epe`` is the error of predicting no motion.
Training pairs come from (seed, step); val and test from two fixed seeds (``eval_size`` pairs each).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, Task, step_generator
from trevo.tasks.perceiver_tasks import StructuredTaskInfo
from trevo.tasks.synthetic import require

EVAL_SEEDS = {"val": 20_001, "test": 20_002}
AUTOFLOW = Paper("AutoFlow: Learning a Better Training Set for Optical Flow", "2104.14544", 2021)


@dataclass
class Layer:
    """One layer: its shape (``kind`` "full", "ellipse" or "rect", centre, half-axes, orientation), its
    texture (base grey, sinusoid amplitudes, frequency vectors in cycles/pixel, phases) and its motion."""

    kind: str
    centre: tuple[float, float]  # (x, y) in pixels
    axes: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    base: float = 0.5
    amps: tuple[float, ...] = ()
    freqs: tuple[tuple[float, float], ...] = ()
    phases: tuple[float, ...] = ()
    rotation: float = 0.0  # radians
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)

    def forward_map(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A(p): where the layer's point at frame-1 position p is in frame 2."""
        cx, cy = self.centre
        c, s = math.cos(self.rotation) * self.scale, math.sin(self.rotation) * self.scale
        dx, dy = x - cx, y - cy
        return cx + c * dx - s * dy + self.shift[0], cy + s * dx + c * dy + self.shift[1]

    def inverse_map(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A⁻¹(q): the layer's frame-1 position shown at frame-2 position q."""
        cx, cy = self.centre
        c, s = math.cos(self.rotation) / self.scale, math.sin(self.rotation) / self.scale
        dx, dy = x - cx - self.shift[0], y - cy - self.shift[1]
        return cx + c * dx + s * dy, cy - s * dx + c * dy

    def covers(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Whether frame-1 position (x, y) lies inside the layer's shape."""
        if self.kind == "full":
            return torch.ones_like(x, dtype=torch.bool)
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.centre[0], y - self.centre[1]
        u, v = (c * dx + s * dy) / self.axes[0], (-s * dx + c * dy) / self.axes[1]
        return u * u + v * v <= 1 if self.kind == "ellipse" else (u.abs() <= 1) & (v.abs() <= 1)

    def texture(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        grey = torch.full_like(x, self.base)
        for a, (fx, fy), phase in zip(self.amps, self.freqs, self.phases, strict=True):
            grey = grey + a * torch.sin(2 * math.pi * (fx * x + fy * y) + phase)
        return grey.clamp(0.0, 1.0)


def render(layers: list[Layer], height: int, width: int) -> dict[str, torch.Tensor]:
    """Both frames ``[H, W]``, the flow ``[H, W, 2]`` and the occlusion mask ``[H, W]`` of a scene
    (layers back to front), all exact for the continuous scene, in float64."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    frame1, frame2 = torch.zeros_like(x), torch.zeros_like(x)
    top1 = torch.zeros_like(x, dtype=torch.long)
    top2 = torch.zeros_like(x, dtype=torch.long)
    for i, layer in enumerate(layers):
        inside = layer.covers(x, y)
        frame1 = torch.where(inside, layer.texture(x, y), frame1)
        top1 = torch.where(inside, i, top1)
        bx, by = layer.inverse_map(x, y)
        shown = layer.covers(bx, by)
        frame2 = torch.where(shown, layer.texture(bx, by), frame2)
        top2 = torch.where(shown, i, top2)
    flow = torch.zeros(height, width, 2, dtype=torch.float64)
    occluded = torch.zeros_like(x, dtype=torch.bool)
    for i, layer in enumerate(layers):
        mine = top1 == i
        fx, fy = layer.forward_map(x, y)
        flow[..., 0] = torch.where(mine, fx - x, flow[..., 0])
        flow[..., 1] = torch.where(mine, fy - y, flow[..., 1])
        outside = (fx < -0.5) | (fx >= width - 0.5) | (fy < -0.5) | (fy >= height - 0.5)
        above = torch.zeros_like(occluded)  # a higher layer covers A_i(p) in frame 2
        for upper in layers[i + 1:]:
            ux, uy = upper.inverse_map(fx, fy)
            above |= upper.covers(ux, uy)
        occluded = torch.where(mine, outside | above, occluded)
    return {"frame1": frame1, "frame2": frame2, "flow": flow, "occluded": occluded}


def patches(frames: torch.Tensor) -> torch.Tensor:
    """``[B, 2, H, W]`` frames → ``[B, H·W, 18]``: each pixel's 3 × 3 neighbourhood in both frames
    (frame 1's nine values, then frame 2's, row-major; edges replicated), centred at 0."""
    b, _, h, w = frames.shape
    padded = F.pad(frames, (1, 1, 1, 1), mode="replicate")
    cols = F.unfold(padded, kernel_size=3)  # [B, 2·9, H·W]
    return (cols.transpose(1, 2) - 0.5).contiguous()


def flow_colours(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """``[H, W, 2]`` flow → ``[H, W, 3]`` uint8 in the standard flow colour wheel (Baker et al., "A Database
    and Evaluation Methodology for Optical Flow", IJCV 2011: hue is the direction, saturation the speed
    over ``max_flow``, default the largest speed; zero flow is white, rightward red, leftward cyan)."""
    segments = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
    wheel = []
    for name, n in segments:
        ramp = np.floor(255 * np.arange(n) / n)
        up, down, full, none = ramp, 255 - ramp, np.full(n, 255.0), np.zeros(n)
        wheel.append({"RY": (full, up, none), "YG": (down, full, none), "GC": (none, full, up),
                      "CB": (none, down, full), "BM": (up, none, full), "MR": (full, none, down)}[name])
    wheel = np.concatenate([np.stack(w, axis=1) for w in wheel]) / 255  # [55, 3]
    u, v = flow[..., 0], flow[..., 1]
    rad = np.sqrt(u * u + v * v)
    scale = max_flow if max_flow else max(float(rad.max()), 1e-9)
    u, v, rad = u / scale, v / scale, rad / scale
    fk = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(wheel) - 1)
    k0 = np.floor(fk).astype(int)
    k1, f = (k0 + 1) % len(wheel), (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] + f * wheel[k1]
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    return np.floor(255 * col).astype(np.uint8)


@register("task", "optical_flow", paper=AUTOFLOW, category="Arch", family="perceiver_tasks")
class OpticalFlow(Task):
    """Dense optical flow between two procedural frames, with exact flow and occlusions; metric EPE.

    Textured layers move by random similarities; per-pixel 3 × 3 patches of both frames in, (u, v) out."""

    def __init__(self, size: int = 16, max_shapes: int = 2, max_shift: float = 3.0, max_rotation: float = 10.0,
                 max_scale: float = 0.08, eval_size: int = 128) -> None:
        require(isinstance(size, int) and 4 <= size <= 256, f"optical_flow: size must be an integer in [4, 256], "
                f"got {size}")
        require(isinstance(max_shapes, int) and max_shapes >= 0, f"optical_flow: max_shapes must be >= 0, "
                f"got {max_shapes}")
        require(0 <= max_shift <= size / 2, f"optical_flow: max_shift must lie in [0, size/2], got {max_shift}")
        require(0 <= max_rotation <= 90, f"optical_flow: max_rotation is in degrees, [0, 90], got {max_rotation}")
        require(0 <= max_scale < 0.5, f"optical_flow: max_scale must lie in [0, 0.5), got {max_scale}")
        require(isinstance(eval_size, int) and eval_size >= 1, f"optical_flow: eval_size must be >= 1, "
                f"got {eval_size}")
        self.size, self.max_shapes, self.eval_size = size, max_shapes, eval_size
        self.max_shift, self.max_rotation, self.max_scale = max_shift, math.radians(max_rotation), max_scale
        self.info = StructuredTaskInfo(vocab_size=0, head="regress", seq_len=size * size, layout=(size, size),
                                       causal="forbidden", metric="epe", higher_is_better=False,
                                       models=("perceiver_io", "flow_cnn"), input_features=18, output_dims=2)

    def scene(self, gen: torch.Generator) -> list[Layer]:
        def u(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))

        def layer(kind: str, centre: tuple[float, float], axes: tuple[float, float], damp: float) -> Layer:
            freqs = tuple((u(-0.2, 0.2), u(-0.2, 0.2)) for _ in range(4))
            return Layer(kind, centre, axes, u(0, math.pi), base=u(0.2, 0.8),
                         amps=tuple(u(0.05, 0.2) for _ in range(4)), freqs=freqs,
                         phases=tuple(u(0, 2 * math.pi) for _ in range(4)),
                         rotation=damp * u(-self.max_rotation, self.max_rotation),
                         scale=1 + damp * u(-self.max_scale, self.max_scale),
                         shift=(damp * u(-self.max_shift, self.max_shift), damp * u(-self.max_shift, self.max_shift)))

        n = self.size
        layers = [layer("full", ((n - 1) / 2, (n - 1) / 2), (0.0, 0.0), 1 / 3)]
        for _ in range(int(torch.randint(1, self.max_shapes + 1, (), generator=gen)) if self.max_shapes else 0):
            kind = "ellipse" if u(0, 1) < 0.5 else "rect"
            layers.append(layer(kind, (u(0.2, 0.8) * n, u(0.2, 0.8) * n), (u(0.12, 0.3) * n, u(0.12, 0.3) * n), 1.0))
        return layers

    def pairs(self, batch_size: int, gen: torch.Generator) -> Batch:
        scenes = [render(self.scene(gen), self.size, self.size) for _ in range(batch_size)]
        frames = torch.stack([torch.stack([s["frame1"], s["frame2"]]) for s in scenes]).float()
        flow = torch.stack([s["flow"] for s in scenes]).float()
        occluded = torch.stack([s["occluded"] for s in scenes])
        return {"input": patches(frames), "target": flow.reshape(batch_size, -1, 2),
                "valid": ~occluded.reshape(batch_size, -1), "frames": frames}

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self.pairs(batch_size, step_generator(seed, step))

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        require(split in EVAL_SEEDS, f"unknown split {split!r}; splits are {', '.join(EVAL_SEEDS)}")
        gen = torch.Generator().manual_seed(EVAL_SEEDS[split])
        left = min(self.eval_size, batch_size * n_batches)
        while left > 0:
            yield self.pairs(min(batch_size, left), gen)
            left -= batch_size

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean end-point error over all pixels (the square root smoothed at 0 so its gradient exists)."""
        return ((logits.float() - batch["target"]).pow(2).sum(-1) + 1e-6).sqrt().mean()

    def score(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        epe = (logits.float() - batch["target"]).norm(dim=-1)
        valid = batch["valid"]
        return {"epe_sum": float(epe.sum()), "epe_noc_sum": float(epe[valid].sum()), "count": float(epe.numel()),
                "noc_count": float(valid.sum()), "zero_sum": float(batch["target"].norm(dim=-1).sum())}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        n = max(totals["count"], 1)
        epe = totals["epe_sum"] / n
        return {"loss": epe, "epe": epe, "epe_noc": totals["epe_noc_sum"] / max(totals["noc_count"], 1),
                "zero_flow_epe": totals["zero_sum"] / n, "occluded_fraction": 1 - totals["noc_count"] / n}

    def references(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for batch in self.eval_batches("val", 32, 1 + self.eval_size // 32):
            for key, value in self.score(torch.zeros_like(batch["target"]), batch).items():
                totals[key] = totals.get(key, 0.0) + value
        return {"zero_flow": self.finalize(totals)["epe"]}

    def render(self, batch: Batch, i: int) -> str:
        flow, valid = batch["target"][i], batch["valid"][i]
        speed = flow.norm(dim=-1)
        return (f"{self.size}×{self.size} pair: mean speed {float(speed.mean()):.2f} px, largest "
                f"{float(speed.max()):.2f} px, {100 * (1 - float(valid.float().mean())):.1f}% occluded")

    def draw_examples(self, batch: Batch, path: Path, predicted: torch.Tensor | None = None) -> None:
        """A PNG, one row per pair: frame 1, frame 2, true flow (colour wheel), occlusions [, predicted flow]."""
        from trevo.plotting import pyplot

        plt = pyplot("flow pictures")
        n, s = batch["frames"].shape[0], self.size
        cols = 4 + (predicted is not None)
        fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols, 2.1 * n), squeeze=False)
        for i in range(n):
            flow = batch["target"][i].reshape(s, s, 2).numpy()
            scale = max(float(np.sqrt((flow ** 2).sum(-1)).max()), 1e-9)  # one scale per row: comparable colours
            pictures = [(batch["frames"][i, 0].numpy(), "frame 1", "gray"), (batch["frames"][i, 1].numpy(), "frame 2",
                        "gray"), (flow_colours(flow, scale), f"flow (max {scale:.1f} px)", None),
                        ((~batch["valid"][i]).reshape(s, s).numpy(), "occluded", "gray")]
            if predicted is not None:
                pictures.append((flow_colours(predicted[i].reshape(s, s, 2).detach().float().numpy(), scale),
                                 "predicted", None))
            for ax, (img, title, cmap) in zip(axes[i], pictures, strict=True):
                ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(title, fontsize=8)
                ax.axis("off")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
