"""The learned allocator: the controller's slot values for this frame, filled into the budget by
select_slots with a cost table (GFLOPs counted, or milliseconds measured on this machine).

    table = CostTable.load("runs/costs.json")     # or flop_cost_table(detector)
    allocator = LearnedAllocator("runs/controller/best", table)
    allocation = allocator.allocate(inputs, quality, live, block_budget(table, fraction=0.25))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..model.allocation import Allocation
from ..model.inputs import ModelInputs
from .checkpoint import load_controller
from .costs import CostTable
from .network import LayerController
from .selection import cost_matrix, select_slots

__all__ = ["LearnedAllocator", "load_controller"]


class LearnedAllocator:
    """allocate(inputs, quality, live, budget) with `budget` in the cost table's unit for the
    blocks (see costs.block_budget). The network sees the budget as a fraction of the table's
    block total, so one controller serves compute and latency budgets alike."""

    name = "controller"

    def __init__(self, checkpoint: str | Path | LayerController, table: CostTable):
        self.controller = (checkpoint if isinstance(checkpoint, LayerController)
                           else load_controller(checkpoint)[0]).eval()
        self.modalities = self.controller.modalities
        costs = cost_matrix(table, self.modalities)
        if costs.shape[1] != self.controller.layers:
            raise ValueError(f"the cost table has {costs.shape[1]} blocks per modality, the "
                             f"controller {self.controller.layers}")
        self.table = table
        self.block_total = table.block_total()

    @torch.inference_mode()
    def scores(self, inputs: ModelInputs, quality: Mapping[str, float], live: Sequence[str],
               budget: float) -> np.ndarray:
        """Slot values (modalities, layers) for this frame, positive (the scale is arbitrary:
        only their ratios to the costs matter)."""
        missing = [name for name in live if name not in inputs.rasters]
        if missing:
            raise ValueError(f"live modalities without a raster: {missing}")
        budget = float(budget)
        if not math.isfinite(budget) or budget < 0:
            raise ValueError(f"budget must be a finite non-negative cost, got {budget}")
        device = next(self.controller.parameters()).device
        rasters = {name: torch.from_numpy(r).unsqueeze(0).to(device)
                   for name, r in inputs.rasters.items() if name in self.modalities}
        live_flags = torch.tensor([[float(name in live) for name in self.modalities]])
        scores = torch.tensor([[float(quality.get(name, 0.0)) for name in self.modalities]])
        fraction = torch.tensor([budget / self.block_total if self.block_total > 0 else 1.0])
        log_values = self.controller(rasters, scores.to(device), live_flags.to(device),
                                     fraction.to(device))["slots"][0].double().cpu().numpy()
        return np.exp(log_values - log_values.max())

    def allocate(self, inputs: ModelInputs, quality: Mapping[str, float], live: Sequence[str],
                 budget: float) -> Allocation:
        values = self.scores(inputs, quality, live, budget)
        return select_slots(values, self.table, budget, live, self.modalities)
