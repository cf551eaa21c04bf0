"""Layer allocations: which transformer blocks of each modality run for one forward pass.

An allocation maps modality -> sorted tuple of block indices. Block 0 is always part of a live
modality's allocation; a modality absent from the mapping (or mapped to an empty tuple) is treated
as missing and contributes only the learned "absent" token.
"""

from collections.abc import Mapping, Sequence

Allocation = dict[str, tuple[int, ...]]


class AllocationError(ValueError):
    """An allocation names an unknown modality or a block index out of range."""


def full_allocation(modalities: Sequence[str], layers: int) -> Allocation:
    return {name: tuple(range(layers)) for name in modalities}


def first_blocks(count: int) -> tuple[int, ...]:
    """The first `count` blocks: the natural prefix used when only a number is given."""
    return tuple(range(count))


def normalise_allocation(
    allocation: Mapping[str, int | Sequence[int]], modalities: Sequence[str],
    layers: int | Mapping[str, int],
) -> Allocation:
    """Validate and canonicalise: counts become prefixes, block 0 is added to live modalities.
    layers: the blocks each modality has, one count for all or a count per modality (a
    subnet's depths)."""
    result: Allocation = {}
    for name, blocks in allocation.items():
        if name not in modalities:
            raise AllocationError(f"unknown modality {name!r}; expected one of {list(modalities)}")
        depth = layers if isinstance(layers, int) else layers[name]
        indices = first_blocks(blocks) if isinstance(blocks, int) else tuple(blocks)
        if any(not 0 <= i < depth for i in indices):
            raise AllocationError(f"{name}: block indices {indices} outside 0..{depth - 1}")
        if indices:
            result[name] = tuple(sorted(set(indices) | {0}))
    return result


def parse_allocation(text: str, modalities: Sequence[str],
                     layers: int | Mapping[str, int]) -> Allocation:
    """Parse 'camera=2,depth=4,lidar=6' (counts; 0 = modality off) or a fraction like '0.25'.

    layers: the blocks each modality has, as in normalise_allocation. A fraction gives every
    modality round(fraction * its blocks) blocks, at least one.
    """
    text = text.strip()
    if "=" not in text:
        try:
            fraction = float(text)
        except ValueError as error:
            raise AllocationError(f"cannot parse allocation {text!r}") from error
        if not 0.0 < fraction <= 1.0:
            raise AllocationError(f"allocation fraction {fraction} outside (0, 1]")
        depths = dict.fromkeys(modalities, layers) if isinstance(layers, int) else layers
        return {name: first_blocks(max(1, round(fraction * depths[name])))
                for name in modalities}
    counts: dict[str, int] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            counts[name.strip()] = int(value)
        except ValueError as error:
            raise AllocationError(f"cannot parse block count in {part!r}") from error
    return normalise_allocation(counts, modalities, layers)


def blocks_run(allocation: Mapping[str, Sequence[int]]) -> int:
    return sum(len(blocks) for blocks in allocation.values())
