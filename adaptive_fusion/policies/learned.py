"""The learned allocators, each pricing its choices with a cost table (GFLOPs counted, or
milliseconds measured on this machine):

- LearnedAllocator (ADMN): the layer controller's slot values for this frame, filled into the
  budget by select_slots, for the live modalities it decides to run (all of them unless its
  config has may_skip_live);
- GateAllocator (DynMM): the gate's choice among the modality paths that fit the budget.

    table = CostTable.load("runs/costs.json")     # or flop_cost_table(detector)
    allocator = LearnedAllocator("runs/controller/best", table)  # or GateAllocator(gate, table)
    allocation = allocator.allocate(inputs, quality, live, block_budget(table, fraction=0.25))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from adaptive_fusion.model.allocation import Allocation, first_blocks
from adaptive_fusion.model.inputs import ModelInputs
from adaptive_fusion.policies.checkpoint import load_controller, load_gate
from adaptive_fusion.policies.costs import CostTable
from adaptive_fusion.policies.gate import ModalityGate, feasible_paths, path_costs
from adaptive_fusion.policies.network import LayerController
from adaptive_fusion.policies.selection import cost_matrix, modalities_to_run, select_slots

__all__ = ["GateAllocator", "LearnedAllocator", "load_controller", "load_gate"]


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
        self.model_config = self.controller.model_config  # the detector it was trained for

    @torch.inference_mode()
    def decide(self, inputs: ModelInputs, quality: Mapping[str, float], live: Sequence[str],
               budget: float) -> tuple[np.ndarray, tuple[str, ...]]:
        """One pass of the network: slot values (modalities, layers), positive (the scale is
        arbitrary: only their ratios to the costs matter), and the modalities to run (every
        live one unless the controller may switch a live one off, see modalities_to_run)."""
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
        outputs = self.controller(rasters, scores.to(device), live_flags.to(device),
                                  fraction.to(device))
        log_values = outputs["slots"][0].double().cpu().numpy()
        use = outputs["use"][0].double().cpu().numpy() if "use" in outputs else None
        return (np.exp(log_values - log_values.max()),
                modalities_to_run(use, live, self.modalities))

    def scores(self, inputs: ModelInputs, quality: Mapping[str, float], live: Sequence[str],
               budget: float) -> np.ndarray:
        return self.decide(inputs, quality, live, budget)[0]

    def allocate(self, inputs: ModelInputs, quality: Mapping[str, float], live: Sequence[str],
                 budget: float, depths: Mapping[str, int] | None = None) -> Allocation:
        """Blocks per modality that runs, among the first depths[name] of each (the subnet
        that runs; default all); a live modality the controller switches off is left out (no
        blocks, the detector's absent token), and its budget goes to the others."""
        values, run = self.decide(inputs, quality, live, budget)
        return select_slots(values, self.table, budget, run, self.modalities, depths)


class GateAllocator:
    """allocate(inputs, quality, live, budget), the layer controller's call (learned.py), with
    the budget in the cost table's unit for the blocks (costs.block_budget)."""

    name = "dynmm"

    def __init__(self, checkpoint: str | Path | ModalityGate, table: CostTable):
        self.gate = (checkpoint if isinstance(checkpoint, ModalityGate)
                     else load_gate(checkpoint)[0]).eval()
        self.modalities = self.gate.modalities
        self.model_config = self.gate.model_config  # the detector it was trained for
        self.table = table
        self.block_total = table.block_total()
        self.costs = torch.from_numpy(path_costs(self.gate.paths.numpy(), table, self.modalities))

    @torch.inference_mode()
    def choose(self, inputs: ModelInputs, quality: Mapping[str, float], live: Sequence[str],
               budget: float, depths: Mapping[str, int] | None = None) -> int:
        """Index of the path the gate picks among the feasible ones (see feasible_paths) that
        the subnet has (no more than depths[name] blocks of each; default all)."""
        budget = float(budget)
        if not math.isfinite(budget) or budget < 0:
            raise ValueError(f"budget must be a finite non-negative cost, got {budget}")
        if not any(name in live for name in self.modalities):
            raise ValueError("no live modality: there is no path to choose")
        device = next(self.gate.parameters()).device
        rasters = {name: torch.from_numpy(raster).unsqueeze(0).to(device)
                   for name, raster in inputs.rasters.items()
                   if name in self.modalities and name in live}
        live_flags = torch.tensor([[name in live for name in self.modalities]])
        scores = torch.tensor([[float(quality.get(name, 0.0)) for name in self.modalities]])
        fraction = torch.tensor([budget / self.block_total if self.block_total > 0 else 1.0])
        logits = self.gate(self.gate.views(rasters), scores.to(device), live_flags.to(device),
                           fraction.to(device))[0].cpu()
        paths = self.gate.paths.cpu()
        allowed = feasible_paths(paths, self.costs, live_flags,
                                 torch.tensor([budget], dtype=self.costs.dtype))[0]
        if depths is not None:
            allowed &= (paths <= torch.tensor([depths[name] for name in self.modalities])).all(1)
        return int(logits.masked_fill(~allowed, -math.inf).argmax())

    def path_allocation(self, index: int) -> Allocation:
        return {name: first_blocks(int(count))
                for name, count in zip(self.modalities, self.gate.paths[index].tolist(),
                                       strict=True) if count > 0}

    def expected_cost(self, index: int) -> float:
        """What the table says the chosen path costs per frame (fixed part included)."""
        return self.table.fixed + float(self.costs[index])

    def allocate(self, inputs: ModelInputs, quality: Mapping[str, float], live: Sequence[str],
                 budget: float, depths: Mapping[str, int] | None = None) -> Allocation:
        return self.path_allocation(self.choose(inputs, quality, live, budget, depths))
