"""Budgets in compute and in milliseconds, and the block costs measured while running.

A compute budget is a fraction of the full model's blocks. A latency budget becomes blocks with
the cost model below: an exponentially weighted mean of the measured time of one block and of
everything else in a frame (quality, rasters, tokenizers, fusion, head, decode). Both are
updated from every frame, so when another process takes a core the costs rise and the same
deadline buys fewer blocks. Frame times scatter (other processes, caches), so the deadline
keeps a margin of DEVIATION_MARGIN times the mean deviation between predicted and measured frame
times (the estimator TCP uses for its retransmission timer), aiming at the tail, not the mean.
The stricter of the two budgets wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from adaptive_fusion.core.errors import check_fraction

EWMA_WEIGHT = 0.2  # weight of the newest measurement: ~5 frames to follow a load change
DEVIATION_MARGIN = 2.0  # mean absolute deviation ~0.8 sigma: 2x it is about the 95th percentile


@dataclass
class BlockCosts:
    """EWMA of the seconds one block takes, of the per-frame time outside the blocks, and of
    how far a frame's time strays from what those two predict."""

    block_s: float | None = None
    overhead_s: float | None = None
    deviation_s: float | None = None
    weight: float = EWMA_WEIGHT

    def update(self, block_time_s: float, blocks: int, frame_time_s: float) -> None:
        if self.block_s is not None and self.overhead_s is not None:
            predicted = self.overhead_s + blocks * self.block_s
            self.deviation_s = _ewma(self.deviation_s, abs(frame_time_s - predicted), self.weight)
        if blocks > 0:
            self.block_s = _ewma(self.block_s, block_time_s / blocks, self.weight)
        self.overhead_s = _ewma(self.overhead_s, max(frame_time_s - block_time_s, 0.0), self.weight)

    def blocks_within(self, latency_s: float) -> int | None:
        """Blocks that fit in `latency_s` after the overhead and the margin; None before any
        measurement."""
        if self.block_s is None or self.overhead_s is None:
            return None
        margin = DEVIATION_MARGIN * (self.deviation_s or 0.0)
        return max(0, math.floor((latency_s - self.overhead_s - margin) / self.block_s))


def _ewma(previous: float | None, value: float, weight: float) -> float:
    return value if previous is None else (1 - weight) * previous + weight * value


@dataclass
class BudgetDecision:
    """The blocks granted this frame and which budget set them."""

    total_blocks: int
    fraction_blocks: int
    latency_blocks: int | None
    binding: str  # "compute", "latency" or "floor" (layer 0 of each live modality)


def resolve_budget(
    fraction: float,
    latency_ms: float,
    costs: BlockCosts,
    full_blocks: int,
    live_count: int,
) -> BudgetDecision:
    """Blocks allowed this frame: the compute fraction of the full model and, when latency_ms >
    0, what the measured costs fit in the deadline; the smaller wins, never below one block
    per live modality (layer 0 always runs)."""
    fraction_blocks = math.floor(check_fraction(fraction) * full_blocks + 1e-9)
    latency_blocks = costs.blocks_within(latency_ms / 1000.0) if latency_ms > 0 else None
    total, binding = fraction_blocks, "compute"
    if latency_blocks is not None and latency_blocks < total:
        total, binding = latency_blocks, "latency"
    if total < live_count:
        total, binding = live_count, "floor"
    return BudgetDecision(total, fraction_blocks, latency_blocks, binding)
