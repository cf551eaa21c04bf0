"""Allocation policies: how many blocks each modality runs, given quality, liveness and a total.

Both policies here are hand-made rules, named for what they do, standing in until the learned
controller (issue 5) plugs in through the same `AllocationPolicy` signature. Counts become
prefixes of each modality's block stack (block 0 always runs for a live modality), the order
LayerDrop training makes meaningful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from adaptive_fusion.model.allocation import Allocation, first_blocks


class AllocationPolicy(Protocol):
    name: str

    def allocate(
        self, quality: Mapping[str, float], live: Sequence[str], total_blocks: int
    ) -> Allocation:
        """Blocks per live modality, at most `total_blocks` in all (at least one each)."""


class _PolicyBase:
    def __init__(self, modalities: Sequence[str], layers: int):
        self.modalities = tuple(modalities)
        self.layers = layers


class EqualSplitPolicy(_PolicyBase):
    """ADMN's "naive allocation": every modality of the model gets the same share of the total,
    whatever its quality. A dead modality's share is not handed to the others."""

    name = "equal_split"

    def allocate(
        self, quality: Mapping[str, float], live: Sequence[str], total_blocks: int
    ) -> Allocation:
        share = min(self.layers, max(1, total_blocks // len(self.modalities)))
        return {name: first_blocks(share) for name in self.modalities if name in live}


class QualityWeightedPolicy(_PolicyBase):
    """Layer 0 for every live modality, then the remaining blocks split in proportion to the
    squared quality scores (largest remainders), each modality capped at its stack depth and
    the excess passed on to the others. Squared, because a plain proportion leaves a sensor at
    a third of the quality of the others with nearly their share once counts are rounded; a
    modality of quality 0 keeps only layer 0."""

    name = "quality_weighted"

    def allocate(
        self, quality: Mapping[str, float], live: Sequence[str], total_blocks: int
    ) -> Allocation:
        names = [name for name in self.modalities if name in live]
        if not names:
            return {}
        counts = dict.fromkeys(names, 1)
        spare = min(total_blocks, self.layers * len(names)) - len(names)
        weights = {name: max(float(quality.get(name, 0.0)), 0.0) ** 2 for name in names}
        while spare > 0:
            open_names = [n for n in names if counts[n] < self.layers and weights[n] > 0]
            if not open_names:
                break
            given = _largest_remainder(
                np.array([weights[n] for n in open_names]),
                spare,
                np.array([self.layers - counts[n] for n in open_names]),
            )
            for name, extra in zip(open_names, given, strict=True):
                counts[name] += int(extra)
            spare -= int(given.sum())
            if given.sum() == 0:
                break
        return {name: first_blocks(count) for name, count in counts.items()}


def _largest_remainder(weights: np.ndarray, total: int, caps: np.ndarray) -> np.ndarray:
    """Integer shares of `total` proportional to `weights`, none above its cap (Hamilton's
    method: floors first, then the largest fractional parts get one more)."""
    exact = weights / weights.sum() * total
    shares = np.minimum(np.floor(exact).astype(int), caps)
    left = total - int(shares.sum())
    for index in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if left <= 0:
            break
        if shares[index] < caps[index]:
            shares[index] += 1
            left -= 1
    return shares


POLICIES = {policy.name: policy for policy in (QualityWeightedPolicy, EqualSplitPolicy)}


def make_policy(name: str, modalities: Sequence[str], layers: int) -> AllocationPolicy:
    if name not in POLICIES:
        raise ValueError(f"unknown allocation policy {name!r}; known: {', '.join(POLICIES)}")
    return POLICIES[name](modalities, layers)
