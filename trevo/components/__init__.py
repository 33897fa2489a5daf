"""Components: token mixers, channel mixers, norms, positions, activations."""

from trevo.components import activations, channels, mixers, norms, positions  # noqa: F401
