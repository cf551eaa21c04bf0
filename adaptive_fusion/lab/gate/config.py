"""Training configuration of the DynMM gate, read from YAML with every key checked, built from
the detector training's own config pieces (data, optimiser) where they are the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adaptive_fusion.lab.controller.config import controller_corruptions
from adaptive_fusion.lab.training.config import (
    ConfigError,
    DataConfig,
    OptimiserConfig,
    read_config,
)
from adaptive_fusion.policies.gate import GateConfig

TASKS = ("detection_loss", "ap_misses")


@dataclass
class GateSchedule:
    epochs: int = 40
    batch_size: int = 64
    # DynMM's gate: a softmax at a temperature that decays exponentially over the epochs from
    # `temperature_start` to `temperature_end` (DynMM: 1 to 0.001; config/gate/default.yaml
    # says why it stays at 1 here); soft path weights before `hard_epoch`, the
    # straight-through one-hot of the argmax from it on (the path that really runs).
    temperature_start: float = 1.0
    temperature_end: float = 1.0
    hard_epoch: int = 30
    min_budget: float = 0.1  # each sample's budget fraction is uniform on [min_budget, 1]

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or not 0 <= self.hard_epoch:
            raise ConfigError(f"schedule: epochs and batch_size >= 1, hard_epoch >= 0: {self}")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise ConfigError("schedule: 0 < temperature_end <= temperature_start")
        if not 0 < self.min_budget <= 1:
            raise ConfigError(f"schedule: min_budget must be in (0, 1], got {self.min_budget}")


@dataclass
class GateTrainConfig:
    out_dir: str = "runs/gate"
    seed: int = 0
    threads: int = 2
    detector: str = "adaptive_fusion/models/default"  # frozen detector checkpoint
    # DynMM's resource loss, in measured milliseconds: lambda * max(0, E[ms] - B) / T per
    # sample, E[ms] the table cost of the path weights, B the sample's budget, T all blocks' ms
    resource_weight: float = 5.0  # lambda
    # Weight of the modality level's own supervision: the binary cross-entropy of the gate's
    # use logits (policies/gate.ModalityGate.use_logits) against the layer controller's label,
    # "leaving this sensor out lowers the detection loss" (controller/usage.py; read off the
    # table). The path losses alone never taught the gate to drop a misleading sensor
    # (docs/experiments.md, "The DynMM gate"); 0 trains DynMM's losses only.
    use_weight: float = 4.0
    # What a path costs a sample (table.py): "detection_loss" (DynMM's task loss, the frozen
    # detector's loss as deployed) or "ap_misses" (1 - the frame's AP of its boxes)
    task: str = "detection_loss"
    cost_runs: int = 30  # rounds of the measured cost table (policies/costs.measure_cost_table)
    table_chunk: int = 100  # samples per file of the training table (the unit of resuming)
    data: DataConfig = field(
        default_factory=lambda: DataConfig(corruptions=controller_corruptions()))
    gate: dict = field(default_factory=dict)  # GateConfig overrides
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    schedule: GateSchedule = field(default_factory=GateSchedule)
    validation_budgets: list[float] = field(default_factory=lambda: [0.125, 0.25, 0.5])

    def gate_config(self) -> GateConfig:
        try:
            return GateConfig.from_dict(self.gate)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"gate: {error}") from error


def load_gate_config(path: str | Path) -> GateTrainConfig:
    config = read_config(GateTrainConfig, path, "gate training")
    config.gate_config()  # validate early
    if config.task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {config.task!r}")
    if (config.resource_weight < 0 or config.use_weight < 0 or config.cost_runs < 1
            or config.table_chunk < 1):
        raise ConfigError("resource_weight >= 0, use_weight >= 0, cost_runs >= 1 and "
                          "table_chunk >= 1")
    return config
