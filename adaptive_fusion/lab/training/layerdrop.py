"""Which blocks and modalities a training batch runs: ADMN's LayerDrop with a ramped rate and
whole-modality dropout, plus explicit low-budget batches (better than ADMN: the sub-networks a
budget controller picks at a quarter of the layers are otherwise almost never trained, since
LayerDrop at rate 0.2 keeps ~80% of the blocks)."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class DropSchedule:
    max_rate: float = 0.2
    ramp_start_epoch: float = 1.0  # LayerDrop rate 0 before this (fractional) epoch
    ramp_epochs: float = 2.0  # then rises linearly to max_rate over this many epochs
    modality_dropout: float = 0.1  # per-sample probability that one random modality is absent
    budget_probability: float = 0.3  # at full ramp, share of batches with a random block count

    def ramp(self, epoch: float) -> float:
        """0 before the ramp, 1 after it."""
        if self.ramp_epochs <= 0:
            return float(epoch >= self.ramp_start_epoch)
        return float(np.clip((epoch - self.ramp_start_epoch) / self.ramp_epochs, 0.0, 1.0))

    def rate(self, epoch: float) -> float:
        return self.max_rate * self.ramp(epoch)

    def allocation(
        self, epoch: float, modalities: Sequence[str], layers: int, rng: np.random.Generator
    ) -> dict[str, tuple[int, ...]]:
        """Blocks to run for one batch (the same on every data-parallel rank: seed rng by step).
        Block 0 always runs."""
        ramp = self.ramp(epoch)
        result = {}
        budget_batch = rng.random() < self.budget_probability * ramp
        for name in modalities:
            if budget_batch:
                extra = rng.choice(np.arange(1, layers), size=rng.integers(layers), replace=False)
                keep = np.zeros(layers, dtype=bool)
                keep[extra] = True
            else:
                keep = rng.random(layers) >= self.rate(epoch)
            keep[0] = True
            result[name] = tuple(int(i) for i in np.flatnonzero(keep))
        return result

    def present(
        self, batch: int, modalities: Sequence[str], rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """Per sample, with probability modality_dropout, one random modality is marked absent."""
        dropped = rng.random(batch) < self.modality_dropout
        which = rng.integers(len(modalities), size=batch)
        return {
            name: torch.from_numpy(~(dropped & (which == m))) for m, name in enumerate(modalities)
        }
