"""DynMM's gate over the detector's modality paths: one pass of a small network picks, for the
whole frame, which modalities run and how many blocks each gets, from a fixed menu of paths.

A path gives every modality a depth from {0} + GateConfig.depths (0: the modality does not run,
its stem neither; the detector's absent token stands in). With three modalities and depths
(1, 2, 4, 8) that is 5**3 - 1 = 124 paths. DynMM's modality level (which experts, i.e. subsets
of modalities) and its fusion level (how many stages of a branch are fused) are the two axes of
this one menu.

The network follows DynMM's fusion-level gate: per modality, two convolutions (kernel 5,
stride 2, tanh) over a pooled view of its raster (the per-cell mean and deviation the layer
controller also reads, network.pooled_view), averaged over the image; then an MLP over those
features, the measured quality, the live flags and the budget. A path's logit is the sum of one
logit per modality for the depth the path gives it, plus one of the path itself. DynMM's gate has
only the latter, one logit per expert, fine for its 2-5 options; over 124 paths that share their
parts, a path whose probability collapsed early got no gradient back (a gate trained on losses
that add up per sensor stuck at choosing one sensor where all three were good), while the
per-modality logits carry what one path learns to every path with the same part. DynMM's batch
norm is left out: the gate runs at batch size 1 and sensors drop out per sample.

At run time the gate only chooses among the paths that fit: those whose modalities are all live
and whose blocks cost no more than the budget (policies/costs.py prices them). The training
loss (lab/gate) teaches it to stay near the budget; the mask makes the budget a guarantee.

policies/learned.py's GateAllocator runs it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.tokenizers import RASTER_CHANNELS, raster_stride
from adaptive_fusion.policies.costs import CostTable
from adaptive_fusion.policies.network import ViewEncoder, budget_features, pooled_view
from adaptive_fusion.policies.selection import FILL_TOLERANCE, cost_matrix

GATE_KERNEL = 5  # DynMM's GlobalGate: conv k5 s2 + tanh, twice


@dataclass(frozen=True)
class GateConfig:
    depths: tuple[int, ...] = (1, 2, 4, 8)  # blocks a running modality may get
    channels: tuple[int, ...] = (16, 16)  # per modality: the gate's convolutions
    hidden: int = 64

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(depths=list(self.depths), channels=list(self.channels))
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> GateConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown gate config keys: {sorted(unknown)}")
        values = dict(data)
        for key in ("depths", "channels"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        config = cls(**values)
        if not config.channels or min(config.channels) < 1 or config.hidden < 1:
            raise ValueError(f"gate sizes must be positive: {config}")
        if not config.depths or min(config.depths) < 1 or len(set(config.depths)) != len(
                config.depths):
            raise ValueError(f"gate depths must be distinct block counts >= 1: {config.depths}")
        return config

    def check_fits(self, model: ModelConfig) -> None:
        if max(self.depths) > model.layers:
            raise ValueError(f"gate depth {max(self.depths)} exceeds the detector's "
                             f"{model.layers} blocks per modality")


def path_counts(modalities: int, depths: Sequence[int]) -> np.ndarray:
    """(paths, modalities) blocks per modality of every path: each modality at 0 or one of the
    depths, at least one modality running; in itertools.product order."""
    choices = (0, *sorted(depths))
    return np.array([c for c in itertools.product(choices, repeat=modalities) if any(c)],
                    dtype=np.int64)


class ModalityGate(nn.Module):
    def __init__(self, config: GateConfig, model: ModelConfig):
        super().__init__()
        config.check_fits(model)
        self.config = config
        self.model_config = model
        self.modalities = tuple(model.modalities)
        self.pool = {name: model.head_stride // raster_stride(name, model)
                     for name in self.modalities}
        self.stems = nn.ModuleDict({
            name: ViewEncoder(2 * RASTER_CHANNELS[name], config.channels, kernel=GATE_KERNEL,
                              first_stride=2, activation=nn.Tanh)
            for name in self.modalities})
        paths = path_counts(len(self.modalities), config.depths)
        self.register_buffer("paths", torch.from_numpy(paths), persistent=False)
        # Per path and modality, the index of its depth among (0, *depths).
        options = np.array((0, *sorted(config.depths)))
        self.register_buffer("option", torch.from_numpy(np.searchsorted(options, paths)),
                             persistent=False)
        count = len(self.modalities)
        features = count * config.channels[-1] + 2 * count + 3
        self.trunk = nn.Sequential(nn.Linear(features, config.hidden), nn.GELU())
        self.per_modality = nn.Linear(config.hidden, count * len(options))
        self.per_path = nn.Linear(config.hidden, len(paths))

    def views(self, rasters: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The gate's input per modality: its raster pooled to the head grid (network.py)."""
        return {name: pooled_view(rasters[name].float(), self.pool[name])
                for name in self.modalities if name in rasters}

    def forward(self, views: Mapping[str, torch.Tensor], quality: torch.Tensor,
                live: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
        """views: modality -> (B, 2C, rows, cols) from `views` (a missing one counts as not
        live); quality and live (B, modalities); budget (B,) fraction of the blocks' cost.
        Returns (B, paths) logits, not yet masked to the feasible paths."""
        return self.path_logits(*self.logits(views, quality, live, budget))

    def path_logits(self, per_modality: torch.Tensor, per_path: torch.Tensor) -> torch.Tensor:
        """(B, paths): per path the per-modality logit of each modality's depth, plus its own."""
        modalities = torch.arange(len(self.modalities), device=per_path.device)
        return per_modality[:, modalities, self.option].sum(dim=2) + per_path

    @staticmethod
    def use_logits(per_modality: torch.Tensor) -> torch.Tensor:
        """(B, modalities): how much more the gate favours running each modality (at its best
        depth) than leaving it out; the modality level of the choice, which the trainer can
        supervise directly (lab/gate/trainer.py)."""
        return torch.logsumexp(per_modality[:, :, 1:], dim=2) - per_modality[:, :, 0]

    def logits(self, views: Mapping[str, torch.Tensor], quality: torch.Tensor,
               live: torch.Tensor, budget: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward's two parts: (B, modalities, 1 + depths) per-modality logits, one per depth
        option (0 first), and (B, paths) per-path logits."""
        live = live.float()
        features = []
        for m, name in enumerate(self.modalities):
            if name in views:
                features.append(self.stems[name](views[name]) * live[:, m : m + 1])
            else:
                features.append(live.new_zeros(len(live), self.config.channels[-1]))
        x = self.trunk(torch.cat([*features, quality.float() * live, live,
                                  budget_features(budget)], dim=1))
        return self.per_modality(x).view(len(x), len(self.modalities), -1), self.per_path(x)


def path_costs(paths: np.ndarray, table: CostTable, modalities: Sequence[str]) -> np.ndarray:
    """(paths,) cost of each path's blocks in the table's unit (each modality's first blocks)."""
    costs = cost_matrix(table, modalities)
    prefix = np.concatenate([np.zeros((len(modalities), 1)), np.cumsum(costs, axis=1)], axis=1)
    return prefix[np.arange(len(modalities)), paths].sum(axis=1)


def feasible_paths(paths: torch.Tensor, costs: torch.Tensor, live: torch.Tensor,
                   budget: torch.Tensor) -> torch.Tensor:
    """(B, paths) bool: the path runs only live modalities and its cost fits the budget (B,),
    which is never less than the cheapest path running every live modality: the runtime
    grants at least one block per live sensor (runtime/budget.py), and a table of measured
    block costs must not price that floor out by a rounding of its noise."""
    running = (paths > 0).unsqueeze(0)  # (1, P, M)
    live = live.bool().unsqueeze(1)  # (B, 1, M)
    on_live = (running <= live).all(dim=2)
    every_live = (running == live).all(dim=2)
    floor = costs.unsqueeze(0).masked_fill(~every_live, math.inf).amin(dim=1)
    limit = torch.maximum(budget, torch.where(torch.isfinite(floor), floor, 0.0))
    tolerance = FILL_TOLERANCE * limit.clamp(min=1.0)
    return on_live & (costs.unsqueeze(0) <= (limit + tolerance).unsqueeze(1))
