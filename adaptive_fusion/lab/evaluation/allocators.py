"""The baseline layer allocators the learned ones (the layer controller, the DynMM gate) are
compared with, on the same frozen detector: full depth, ADMN's equal split, random slots and a
per-sample oracle. All share the learned allocators' call, `allocate(inputs, quality, live,
budget)`, with the budget in the cost units of a CostTable (the blocks only, as block_budget
gives it).

A live modality is one whose sensor delivers data; a dead one never gets a block. Allocators may
leave a live one out too (the oracle; the gate; a controller with may_skip_live): it then counts
0 blocks, as a dead one does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.lab.evaluation.metrics import (
    DISTANCE_THRESHOLDS,
    average_precision,
    match_frame,
)
from adaptive_fusion.lab.evaluation.runner import batch_of_one
from adaptive_fusion.model.allocation import Allocation, first_blocks
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import ModelInputs
from adaptive_fusion.policies.costs import CostTable
from adaptive_fusion.policies.selection import FILL_TOLERANCE, cost_matrix, select_slots


class Allocator(Protocol):
    name: str

    def allocate(self, inputs: ModelInputs, quality: Mapping[str, float], live: Sequence[str],
                 budget: float) -> Allocation:
        """Blocks per modality for one frame; `budget` in the cost table's unit."""


def fits(cost: float | np.ndarray, budget: float) -> bool | np.ndarray:
    """Within the budget up to the rounding tolerance select_slots uses."""
    return cost <= budget + FILL_TOLERANCE * max(1.0, abs(budget))


class _TableAllocator:
    def __init__(self, table: CostTable):
        self.table = table
        self.modalities = tuple(table.block)
        self.costs = cost_matrix(table, self.modalities)  # (modalities, layers)
        self.layers = self.costs.shape[1]
        # prefix[m, k]: cost of the first k blocks of modality m, k = 0..layers
        self.prefix = np.concatenate([np.zeros((len(self.modalities), 1)),
                                      np.cumsum(self.costs, axis=1)], axis=1)

    def _row(self, name: str) -> int:
        return self.modalities.index(name)


class FullDepth(_TableAllocator):
    """Every block of every live modality, whatever the budget: the reference."""

    name = "full"

    def allocate(self, inputs, quality, live, budget) -> Allocation:
        return {name: first_blocks(self.layers) for name in self.modalities if name in live}


class EqualSplit(_TableAllocator):
    """ADMN's naive allocation: the same number of blocks k (a prefix) for every modality of the
    model, the largest k whose cost over all modalities fits the budget (at least 1), whatever
    the quality. A dead modality's share is not handed to the others (as in
    policies/registry.py)."""

    name = "equal_split"

    def allocate(self, inputs, quality, live, budget) -> Allocation:
        share_cost = self.prefix.sum(axis=0)  # all modalities at k blocks, k = 0..layers
        share = max([k for k in range(1, self.layers + 1) if fits(share_cost[k], budget)],
                    default=1)
        return {name: first_blocks(share) for name in self.modalities if name in live}


class RandomSlots(_TableAllocator):
    """Block 0 of every live modality, then (modality, block) slots in a uniformly random order,
    each taken while it fits (select_slots on random value per cost). Seeded once: the sequence
    over frames repeats run to run."""

    name = "random"

    def __init__(self, table: CostTable, seed: int = 0):
        super().__init__(table)
        self.rng = np.random.default_rng(seed)

    def allocate(self, inputs, quality, live, budget) -> Allocation:
        # select_slots orders by score / cost: scaling a uniform draw by the cost makes that
        # ratio uniform, so cheap slots are not favoured.
        scores = self.rng.random(self.costs.shape) * self.costs
        return select_slots(scores, self.table, budget, live, self.modalities)


# ------------------------------------------------------------------------------------ oracle


def frame_score(prediction: Boxes3D, truth: Boxes3D, classes: Sequence[str],
                thresholds: Sequence[float] = DISTANCE_THRESHOLDS) -> tuple[float, float]:
    """One frame's share in the dataset mAP, as (AP, false-positive mass): the frame's AP with
    the matching and thresholds of evaluation/metrics.py (averaged over its classes with ground
    truth and the thresholds; 1 when it has none: nothing to miss), and the summed score of its
    unmatched detections averaged over thresholds, which is what lowers the precision of every
    other frame's detections ranked below them. Compare lexicographically: AP, then less mass."""
    aps, false_mass = [], 0.0
    for c in range(len(classes)):
        p, g = prediction.select(prediction.labels == c), truth.select(truth.labels == c)
        for threshold in thresholds:
            hits = match_frame(p.centers, p.scores, g.centers, threshold)
            false_mass += float(p.scores[~hits].sum())
            if len(g):
                aps.append(average_precision(p.scores, hits, len(g)))
    return (float(np.mean(aps)) if aps else 1.0), false_mass / len(thresholds)


@dataclass
class StreamPrefixes:
    """Per modality, what every prefix of its blocks contributes, each block run once."""

    features: dict[str, torch.Tensor]  # live modality -> stem features (1, C, h, w)
    fused: dict[str, torch.Tensor]  # modality -> (1 + blocks, tokens, dim): its share of the
    # fusion projection for the absent token (index 0) and after blocks 0..k-1 (index k)


@torch.inference_mode()
def stream_prefixes(model: AdaptiveFusionDetector, inputs: ModelInputs,
                    live: Sequence[str]) -> StreamPrefixes:
    """Run each live stream once, keeping the normalised tokens after every block (what
    ModalityStream gives for that prefix), and project them with that modality's columns of the
    fusion layer: fuse(concat) is linear, so a combination's fused tokens are the bias plus one
    precomputed share per modality, and fusing costs nothing per combination."""
    config = model.config
    rasters = batch_of_one(inputs, model)
    weights = model.fuse.weight.split(config.dim, dim=1)
    features, fused = {}, {}
    for weight, (name, stream) in zip(weights, model.streams.items(), strict=True):
        tokens = [stream.absent.expand(1, config.tokens, config.dim)]
        if name in live:
            features[name], x = stream.stem(rasters[name])
            x = x + stream.embed
            for block in stream.blocks:
                x = block(x)
                tokens.append(stream.norm(x))
        fused[name] = F.linear(torch.cat(tokens), weight)
    return StreamPrefixes(features, fused)


@torch.inference_mode()
def prefix_outputs(model: AdaptiveFusionDetector, inputs: ModelInputs, counts: np.ndarray,
                   prefixes: StreamPrefixes | None = None) -> dict[str, torch.Tensor]:
    """Head maps for a batch of prefix allocations, counts (B, modalities) blocks per modality
    (0 = absent), from the streams' prefix outputs: only the fusion blocks and the head run per
    allocation, through the detector's own head_from_fused (tests hold it equal to a forward)."""
    batch = len(counts)
    rasters = batch_of_one(inputs, model)
    if prefixes is None:
        prefixes = stream_prefixes(model, inputs, list(rasters))
    x = model.fuse.bias
    features, present = [], {}
    for m, name in enumerate(model.streams):
        count = torch.as_tensor(counts[:, m], dtype=torch.long)
        if int(count.max()) >= len(prefixes.fused[name]):
            raise ValueError(f"{name} is given blocks but its stream was not run")
        x = x + prefixes.fused[name][count]
        on = (count > 0).view(-1, 1, 1, 1)
        if name in prefixes.features:
            features.append(prefixes.features[name] * on.to(prefixes.features[name].dtype))
            present[name] = count > 0
        else:
            features.append(None)
    expanded = {name: raster.expand(batch, *raster.shape[1:]) for name, raster in rasters.items()}
    return model.head_from_fused(x, features, expanded, present)


@dataclass
class PrefixSearch:
    """Every prefix allocation of one frame with its block cost and frame_score."""

    modalities: tuple[str, ...]
    counts: np.ndarray  # (C, modalities) blocks per modality
    cost: np.ndarray  # (C,)
    ap: np.ndarray  # (C,)
    false_mass: np.ndarray  # (C,)

    def best_index(self, budget: float) -> int:
        """Best score among the allocations that fit (the cheapest ones when none does)."""
        allowed = fits(self.cost, budget)
        if not allowed.any():
            allowed = self.cost == self.cost.min()
        candidates = np.flatnonzero(allowed)
        # lexsort: last key first; AP descending, then false mass, then cost ascending
        order = np.lexsort((self.cost[candidates], self.false_mass[candidates],
                            -self.ap[candidates]))
        return int(candidates[order[0]])

    def allocation(self, index: int) -> Allocation:
        return {name: first_blocks(int(k))
                for name, k in zip(self.modalities, self.counts[index], strict=True) if k > 0}


class PrefixOracle(_TableAllocator):
    """Upper bound: per frame, the allocation scoring best against that frame's ground truth
    (frame_score) among all per-modality prefixes that fit the budget. A live modality may run
    0..layers blocks (at least one modality runs), a dead one none: 0 is allowed so that the
    search covers every baseline's choices (the gate switches modalities off) and the
    oracle bounds them all. Random subsets that are not prefixes lie outside it.

    Every stream runs once per prefix length; each of the (layers + 1)^live combinations then
    costs only the head, decode and scoring (fusion is linear, see stream_prefixes). The search
    of a frame is kept, so asking again for another budget of the same frame (the same inputs
    and ground truth objects) is free."""

    name = "oracle"
    needs_ground_truth = True  # the sweep passes allocate(..., ground_truth=the frame's boxes)

    def __init__(self, model: AdaptiveFusionDetector, table: CostTable, chunk: int = 64):
        super().__init__(table)
        if self.modalities != tuple(model.config.modalities):
            raise ValueError(f"cost table modalities {self.modalities} differ from the model's "
                             f"{model.config.modalities}")
        self.model = model
        self.chunk = chunk
        self._last: tuple | None = None

    def allocate(self, inputs, quality, live, budget, *, ground_truth: Boxes3D) -> Allocation:
        search = self.search(inputs, live, ground_truth)
        return search.allocation(search.best_index(budget))

    def search(self, inputs: ModelInputs, live: Sequence[str], ground_truth: Boxes3D,
               ) -> PrefixSearch:
        live = tuple(name for name in self.modalities if name in live)
        last = self._last
        if last is not None and last[0] is inputs and last[1] is ground_truth and last[2] == live:
            return last[3]
        search = self._search(inputs, live, ground_truth)
        self._last = (inputs, ground_truth, live, search)  # held, so `is` cannot see a reused id
        return search

    def _search(self, inputs, live, ground_truth) -> PrefixSearch:
        ranges = [range(self.layers + 1) if name in live else range(1) for name in self.modalities]
        counts = np.array([c for c in product(*ranges) if any(c) or not live], dtype=np.int64)
        cost = self.prefix[np.arange(len(self.modalities)), counts].sum(axis=1)
        prefixes = stream_prefixes(self.model, inputs, live)
        config = self.model.config
        scores = []
        for start in range(0, len(counts), self.chunk):
            outputs = prefix_outputs(self.model, inputs, counts[start : start + self.chunk],
                                     prefixes)
            for index in range(len(outputs["heatmap"])):
                boxes = decode(outputs, inputs.K, inputs.T_cam_lidar, config, index=index)
                scores.append(frame_score(boxes, ground_truth, config.classes))
        ap, false_mass = (np.array(column) for column in zip(*scores, strict=True))
        return PrefixSearch(self.modalities, counts, cost, ap, false_mass)


BASELINES = {cls.name: cls for cls in (FullDepth, EqualSplit, RandomSlots)}
METHODS = (*BASELINES, PrefixOracle.name, "controller", "dynmm")
