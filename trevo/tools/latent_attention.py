"""Where the Perceiver's latents look: the cross-attention weights of the encoder (Jaegle et al.,
arXiv:2103.03206, Fig. 7 draws them for images; Perceiver IO, arXiv:2107.14795, discusses latents of
the byte-level language model that are local, periodic or attend to punctuation and capitals).

``attention_maps(model, inputs)`` returns the model's outputs **recomputed from** the weights it
returns (softmax(QKᵀ/√d) of each cross-attend, then weights @ V through the rest of the model), so a
test can check that they equal the ordinary forward pass: the maps are the weights the model uses.
``describe`` summarises each latent (entropy, mean position and spread, which characters it favours);
``html_bytes`` and ``draw_images`` draw them (HTML-escaped text with per-byte shading; heat maps).
"""

from __future__ import annotations

import html
from pathlib import Path

import torch

from trevo.errors import IncompatibleError

BYTE_VOCABS = (256, 257)  # byte LMs; 256 is the masked LM's mask token


def attention_maps(model: torch.nn.Module, inputs: torch.Tensor, padding_mask: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The outputs of ``model`` on ``inputs`` computed from explicit attention weights, and the weights
    ``[B, H, N, M]`` of each encoder cross-attend (latents × inputs)."""
    from trevo.models.perceiver import Perceiver, PerceiverIO
    from trevo.models.perceiver_mlm import PerceiverMLM

    if isinstance(model, (Perceiver, PerceiverIO)):
        model.encoder.check_inputs(inputs, model.info.vocab_size)
        latents, weights = model.encoder.forward_with_weights(inputs, padding_mask)
        if isinstance(model, Perceiver):
            return model.head(model.norm(latents.mean(dim=1))), weights
        queries = model.output_queries(inputs.shape[0], None, inputs.shape[1], inputs.device)
        return model.decode(latents, queries), weights
    if isinstance(model, PerceiverMLM):
        return model.forward_with_weights(inputs, padding_mask)
    raise IncompatibleError(f"latent attention maps need a Perceiver (perceiver, perceiver_io, perceiver_mlm); "
                            f"this run's model is {type(model).__name__}, which has no latent array")


def describe(weights: torch.Tensor, tokens: torch.Tensor | None = None,
             coordinates: torch.Tensor | None = None) -> list[dict[str, float]]:
    """Per latent, from the weights ``[N, M]`` of one example (heads averaged): the entropy of its weights in
    bits (log2 M: uniform), the weighted mean position and spread (standard deviation, in elements), and for
    byte inputs the enrichment of its weight on whitespace, punctuation, capitals and digits (weight on the
    class over the class's share of the bytes: 1 = indifferent). For elements that are points (``coordinates
    [M, c]``, a set whose order means nothing) the weighted centre ``point`` and spread ``radius`` in space
    replace the position's."""
    if coordinates is not None:
        rows = []
        for w in weights:
            centre = (w[:, None] * coordinates).sum(0)
            radius = (w * ((coordinates - centre) ** 2).sum(-1)).sum().sqrt()
            rows.append({"entropy_bits": float(-(w * torch.log2(w.clamp_min(1e-30))).sum()),
                         "point": [round(float(c), 4) for c in centre], "radius": float(radius)})
        return rows
    m = weights.shape[-1]
    pos = torch.arange(m, dtype=weights.dtype)
    classes = {}
    if tokens is not None:
        chars = [chr(int(t)) if int(t) < 256 else "" for t in tokens]
        classes = {"space": [c.isspace() for c in chars], "punct": [c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
                                                                   for c in chars],
                   "capital": [c.isupper() for c in chars], "digit": [c.isdigit() for c in chars]}
    rows = []
    for w in weights:
        row = {"entropy_bits": float(-(w * torch.log2(w.clamp_min(1e-30))).sum()),
               "mean_pos": float((w * pos).sum())}
        row["spread"] = float(((w * (pos - row["mean_pos"]) ** 2).sum()).sqrt())
        for name, members in classes.items():
            share = sum(members) / m
            on = float(w[torch.tensor(members)].sum()) if any(members) else 0.0
            row[f"{name}_enrichment"] = on / share if share else None  # the example has none of them
        rows.append(row)
    return rows


def enrichments(stats: dict[str, float | None]) -> str:
    """``space×0.2  punct×5.1 …`` (``–`` where the example has no byte of the class)."""
    return "  ".join(f"{k.split('_')[0]}×{'–' if v is None else f'{v:.1f}'}" for k, v in stats.items()
                     if k.endswith("enrichment"))


def _byte_text(t: int) -> str:
    if t == 256:
        return "▮"  # the masked LM's mask token
    c = chr(t)
    return c if c.isprintable() or c == " " else "·"


def html_bytes(tokens: torch.Tensor, weights: torch.Tensor, latents: list[int], stats: list[dict[str, float]]) -> str:
    """An HTML page: the example's bytes once per chosen latent, each byte shaded by the latent's weight
    on it (darkest: the latent's largest weight). Every byte is HTML-escaped."""
    rows = []
    for n in latents:
        w = weights[n]
        top = float(w.max()) or 1.0
        cells = "".join(f'<span style="background:rgba(220,40,40,{float(x) / top:.3f})" title="{float(x):.4f}">'
                        f"{html.escape(_byte_text(int(t)))}</span>" for t, x in zip(tokens, w, strict=True))
        s = stats[n]
        label = (f"latent {n}: entropy {s['entropy_bits']:.2f} bits, centre {s['mean_pos']:.0f}, spread "
                 f"{s['spread']:.0f}; weight over share: {enrichments(s)}")
        rows.append(f"<h3>{html.escape(label)}</h3>\n<pre>{cells}</pre>")
    return ("<!doctype html><meta charset='utf-8'><title>latent attention</title>"
            "<style>pre{white-space:pre-wrap;font-size:13px}h3{font:13px sans-serif}</style>\n"
            + "\n".join(rows) + "\n")


def draw_images(weights: torch.Tensor, layout: tuple[int, int], latents: list[int], path: Path,
                images: torch.Tensor | None = None) -> None:
    """A PNG of heat maps: one row per example (``weights [B, N, M]``), the input image first when given,
    then each chosen latent's weights over the (H, W) grid."""
    from trevo.plotting import pyplot

    plt = pyplot("attention maps")
    h, w = layout
    b = weights.shape[0]
    cols = len(latents) + (images is not None)
    fig, axes = plt.subplots(b, cols, figsize=(1.6 * cols, 1.7 * b), squeeze=False)
    for i in range(b):
        panels = ([(images[i].reshape(h, w).float().numpy(), "input", "gray")] if images is not None else [])
        panels += [(weights[i, n].reshape(h, w).numpy(), f"latent {n}", "magma") for n in latents]
        for ax, (img, title, cmap) in zip(axes[i], panels, strict=True):
            ax.imshow(img, cmap=cmap, interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
