"""Shapes of the application-area workloads (``recsys``, ``diffusion``) and their exact parameter
counts.

Torch-free, like ``catalog.py``, which lists these sizes: validation, ``bench list`` and
``--dry-run`` read them without importing torch. The models are built in ``recsys.py`` and
``diffusion.py``; a test checks every count here against the built model.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class RecsysSize:
    """Shape of the DLRM-style recommender: embedding tables, dense MLPs, bag size."""

    num_tables: int
    """Sparse features, one ``nn.EmbeddingBag`` table each."""
    rows: int
    """Rows per table (the item vocabulary of each sparse feature)."""
    dim: int
    """Embedding dimension; the bottom MLP ends in it, as the dot interaction needs."""
    hotness: int
    """Item ids per bag (multi-hot): each sample looks up this many rows per table."""
    bottom: tuple[int, ...]
    """Hidden widths of the bottom MLP on the dense features (then ``dim``)."""
    top: tuple[int, ...]
    """Hidden widths of the top MLP on the interactions (then one logit)."""


@dataclass(frozen=True)
class UNetSize:
    """Shape of the diffusion UNet: base channels, per-level multipliers, blocks per level."""

    channels: int
    """Channels of the first level; every level's channels are a multiple of 8 (GroupNorm)."""
    mults: tuple[int, ...]
    """Channel multiplier per resolution level (32, 16, 8, 4 pixels): its length is the depth."""
    blocks: int
    """Residual blocks per level on the way down and on the way up."""


# Criteo-like layout (13 dense features, up to 26 sparse ones; DLRM, Naumov et al. 2019): `tiny`
# and `small` run in seconds on a CPU; `base` (43M parameters, 166 MB of tables in fp32) and
# `large` (1.7B, 6.7 GB) are memory-bound work for a GPU. Parameters are nearly all embeddings.
RECSYS_DENSE = 13
RECSYS_SIZES: dict[str, RecsysSize] = {
    "tiny": RecsysSize(num_tables=4, rows=1_000, dim=8, hotness=4, bottom=(32,), top=(32,)),
    "small": RecsysSize(8, 20_000, 16, hotness=4, bottom=(64,), top=(64, 32)),
    "base": RecsysSize(26, 50_000, 32, hotness=8, bottom=(256, 64), top=(256, 128)),
    "large": RecsysSize(26, 1_000_000, 64, hotness=8, bottom=(512, 256), top=(1024, 512, 256)),
}

# A DDPM UNet in the layout of Ho et al. 2020 (residual blocks with GroupNorm and a time
# embedding, skip connections across each level), scaled in channels and depth.
UNET_SIDE = 32  # the 28x28 digits padded by 2 pixels on each side: three halvings stay exact
UNET_GROUPS = 8  # GroupNorm groups; channel counts are multiples of it
UNET_SIZES: dict[str, UNetSize] = {
    "tiny": UNetSize(channels=8, mults=(1, 2), blocks=1),
    "small": UNetSize(channels=32, mults=(1, 2), blocks=1),
    "base": UNetSize(channels=64, mults=(1, 2, 2), blocks=2),
    "large": UNetSize(channels=128, mults=(1, 2, 2, 2), blocks=2),
}


def linear_stack_params(widths: tuple[int, ...]) -> int:
    """Linear layers with biases through ``widths``."""
    return sum(w_in * w_out + w_out for w_in, w_out in zip(widths, widths[1:]))


def recsys_interactions(shape: RecsysSize) -> int:
    """Width of the top MLP's input: the bottom MLP's output (``dim``) and the dot products of
    every pair of the ``num_tables + 1`` feature vectors (DLRM's interaction, no self-pairs)."""
    features = shape.num_tables + 1
    return shape.dim + features * (features - 1) // 2


def recsys_params(shape: RecsysSize) -> int:
    """Embedding tables, the bottom MLP and the top MLP of ``recsys.py``'s DLRM."""
    tables = shape.num_tables * shape.rows * shape.dim  # EmbeddingBag has no bias
    bottom = linear_stack_params((RECSYS_DENSE, *shape.bottom, shape.dim))
    top = linear_stack_params((recsys_interactions(shape), *shape.top, 1))
    return tables + bottom + top


def unet_params(shape: UNetSize) -> int:
    """Walks the UNet of ``diffusion.py`` level by level (a test checks it against torch)."""
    c = shape.channels
    temb = 4 * c  # time embedding width, as in Ho et al.'s UNet

    def conv(c_in: int, c_out: int, k: int = 3) -> int:
        return k * k * c_in * c_out + c_out

    def res(c_in: int, c_out: int) -> int:
        # GroupNorm, conv, time projection, GroupNorm, conv, and a 1x1 conv on the skip when the
        # channels change.
        skip = conv(c_in, c_out, 1) if c_in != c_out else 0
        norms = 2 * c_in + 2 * c_out
        return norms + conv(c_in, c_out) + temb * c_out + c_out + conv(c_out, c_out) + skip

    total = c * temb + temb + temb * temb + temb  # sinusoid (c) -> 4c -> 4c
    total += conv(1, c)  # image in
    widths = [c * m for m in shape.mults]
    ch = c
    for level, width in enumerate(widths):  # down: blocks, then halve the resolution
        for _ in range(shape.blocks):
            total += res(ch, width)
            ch = width
        if level < len(widths) - 1:
            total += conv(ch, ch)  # stride-2 conv
    total += 2 * res(ch, ch)  # middle
    for level in reversed(range(len(widths))):  # up: join the skip, blocks, then double
        width = widths[level]
        total += res(ch + width, width)
        for _ in range(shape.blocks - 1):
            total += res(width, width)
        ch = width
        if level > 0:
            total += conv(ch, ch)  # nearest upsampling, then a conv
    return total + 2 * c + conv(c, 1)  # GroupNorm, SiLU, conv to the noise
