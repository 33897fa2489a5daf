"""ChunkFormer (Ju et al. 2021): attention inside chunks whose size grows from stage to stage."""

from __future__ import annotations

from trevo.components.mixers.local_attention import BlockLocalMixer
from trevo.errors import IncompatibleError
from trevo.registry import Paper, register


def stage_chunk_size(chunk_sizes: tuple[int, ...], layer_idx: int, n_layers: int) -> int:
    """The chunk size of layer ``layer_idx``: the layers are split into ``len(chunk_sizes)`` consecutive
    stages of (nearly) equal depth, stage s using ``chunk_sizes[s]``."""
    return chunk_sizes[min(len(chunk_sizes) - 1, layer_idx * len(chunk_sizes) // max(1, n_layers))]


CHUNKFORMER_PAPER = Paper("ChunkFormer: Learning Long Time Series with Multi-stage Chunked Transformer", "2112.15087",
                          2021)


@register("mixer", "chunkformer", paper=CHUNKFORMER_PAPER,
          category="MHA/SparseOrLowRank", family="chunkformer", causal=True, bidirectional=True, recurrent=True,
          time="O(T·c·d), c the layer's chunk size", memory="O(T·c); state < c keys",
          test_options={"chunk_sizes": (4, 8)})
class ChunkFormerAttention(BlockLocalMixer):
    """ChunkFormer's multi-stage chunked attention (Ju, Isac, Nie 2021): the sequence is split into
    disjoint chunks and attention is computed inside each chunk, the chunk size growing stage by stage
    (small chunks learn local patterns, large ones global), without changing the sequence length.
    The stack's layers are cut into ``len(chunk_sizes)`` consecutive stages; this layer (``layer_idx``
    of ``n_layers``) uses its stage's size. A chunk size of at least the length is full attention."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, chunk_sizes: tuple[int, ...] = (16, 64, 256),
                 layer_idx: int = 0, n_layers: int = 1) -> None:
        chunk_sizes = tuple(int(c) for c in chunk_sizes)
        if not chunk_sizes or min(chunk_sizes) < 1:
            raise IncompatibleError(f"chunkformer needs chunk_sizes of positive sizes, got {chunk_sizes}")
        self.chunk_sizes = chunk_sizes
        super().__init__(d_model, causal=causal, n_heads=n_heads,
                         block_size=stage_chunk_size(chunk_sizes, layer_idx, n_layers))
