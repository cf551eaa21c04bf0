"""Allocation policies: which blocks each modality runs, given the frame, quality, liveness and
the total number of blocks the budget allows.

`controller` is the learned layer controller (adaptive_fusion.lab.controller): it sees the frame's
inputs, the quality and the budget, and picks any blocks; one trained with may_skip_live may
also switch a live but harmful sensor off (left out of the allocation: 0 blocks, its raster not
run, the budget spent on the others). `dynmm` is DynMM's learned gate (adaptive_fusion.lab.gate):
it picks one of a menu of paths (which modalities run, and how many blocks each) among those
that fit the budget. The two others are hand-made rules, named for what they do, that look at
quality only; their counts become prefixes of each modality's block stack (block 0 always runs
for a live modality).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from adaptive_fusion.model.allocation import Allocation, first_blocks
from adaptive_fusion.model.checkpoint import CheckpointError
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import ModelInputs
from adaptive_fusion.policies.checkpoint import DEFAULT_CONTROLLER, DEFAULT_GATE
from adaptive_fusion.policies.costs import flop_cost_table
from adaptive_fusion.policies.learned import GateAllocator, LearnedAllocator
from adaptive_fusion.policies.selection import cost_matrix, subnet_slots


class AllocationPolicy(Protocol):
    name: str

    def allocate(
        self, quality: Mapping[str, float], live: Sequence[str], total_blocks: int,
        inputs: ModelInputs | None = None,
    ) -> Allocation:
        """Blocks per live modality, at most `total_blocks` in all (at least one for each
        modality that runs; a live one may be left out)."""


class _PolicyBase:
    def __init__(self, modalities: Sequence[str], layers: int | Mapping[str, int]):
        """layers: the blocks each modality has, one count for all or a count per modality
        (the depths of the subnet a model runs, model/architecture.py)."""
        self.modalities = tuple(modalities)
        self.depths = (dict.fromkeys(self.modalities, layers) if isinstance(layers, int)
                       else {name: layers[name] for name in self.modalities})


class EqualSplitPolicy(_PolicyBase):
    """ADMN's "naive allocation": every modality of the model gets the same share of the total,
    whatever its quality: the same fraction of its own stack (of a subnet's depths, which may
    differ). A dead modality's share is not handed to the others."""

    name = "equal_split"

    def allocate(
        self, quality: Mapping[str, float], live: Sequence[str], total_blocks: int,
        inputs: ModelInputs | None = None,
    ) -> Allocation:
        full = sum(self.depths.values())
        return {name: first_blocks(min(depth, max(1, total_blocks * depth // full)))
                for name, depth in self.depths.items() if name in live}


class QualityWeightedPolicy(_PolicyBase):
    """Layer 0 for every live modality, then the remaining blocks split in proportion to the
    squared quality scores (largest remainders), each modality capped at its stack depth and
    the excess passed on to the others. Squared, because a plain proportion leaves a sensor at
    a third of the quality of the others with nearly their share once counts are rounded; a
    modality of quality 0 keeps only layer 0."""

    name = "quality_weighted"

    def allocate(
        self, quality: Mapping[str, float], live: Sequence[str], total_blocks: int,
        inputs: ModelInputs | None = None,
    ) -> Allocation:
        names = [name for name in self.modalities if name in live]
        if not names:
            return {}
        counts = dict.fromkeys(names, 1)
        spare = min(total_blocks, sum(self.depths[n] for n in names)) - len(names)
        weights = {name: max(float(quality.get(name, 0.0)), 0.0) ** 2 for name in names}
        while spare > 0:
            open_names = [n for n in names if counts[n] < self.depths[n] and weights[n] > 0]
            if not open_names:
                break
            given = _largest_remainder(
                np.array([weights[n] for n in open_names]),
                spare,
                np.array([self.depths[n] - counts[n] for n in open_names]),
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


class LearnedPolicy:
    """A learned allocator (the layer controller, or the DynMM gate) behind the runtime's block
    budget, within the subnet that runs (`depths`, blocks per modality): `total_blocks` of the
    subnet's becomes the same fraction of its blocks' cost in the allocator's table (the budget
    input), and the allocator chooses among the subnet's blocks only.

    A subnet's blocks may be narrower than the full model's the allocator was trained on; it
    prices them at full width, so it sees a budget no larger than the subnet's share of the
    full model, the range it was trained over."""

    def __init__(self, allocator: LearnedAllocator | GateAllocator, depths: Mapping[str, int]):
        self.allocator = allocator
        self.name = allocator.name
        self.depths = dict(depths)
        self.full_blocks = sum(self.depths.values())
        costs = cost_matrix(allocator.table, allocator.modalities)
        self.subnet_cost = float(costs[subnet_slots(self.depths, allocator.modalities,
                                                    costs.shape[1])].sum())

    def allocate(
        self, quality: Mapping[str, float], live: Sequence[str], total_blocks: int,
        inputs: ModelInputs | None = None,
    ) -> Allocation:
        if inputs is None:
            raise ValueError(f"the {self.name} policy needs the frame's model inputs")
        budget = total_blocks / self.full_blocks * self.subnet_cost
        return self.allocator.allocate(inputs, quality, live, budget, self.depths)


LEARNED = {LearnedAllocator.name: (LearnedAllocator, DEFAULT_CONTROLLER),
           GateAllocator.name: (GateAllocator, DEFAULT_GATE)}
POLICIES = (*LEARNED, QualityWeightedPolicy.name, EqualSplitPolicy.name)


def make_policy(
    name: str, model: AdaptiveFusionDetector, checkpoint: str | None = None
) -> AllocationPolicy:
    """The named policy for `model`, within the subnet it runs (model.use_architecture); a
    learned one ("controller", "dynmm") loads `checkpoint` (default: the packaged one) and
    raises CheckpointError when it is missing or does not fit the model."""
    config = model.config
    if name in LEARNED:
        allocator_class, default = LEARNED[name]
        allocator = allocator_class(checkpoint or default, flop_cost_table(model))
        if allocator.model_config != config:
            raise CheckpointError(f"the {name} was trained for another detector "
                                  f"({allocator.model_config} vs {config})")
        return LearnedPolicy(allocator, model.depths)
    rules = {policy.name: policy for policy in (QualityWeightedPolicy, EqualSplitPolicy)}
    if name not in rules:
        raise ValueError(f"unknown allocation policy {name!r}; known: {', '.join(POLICIES)}")
    return rules[name](config.modalities, model.depths)
