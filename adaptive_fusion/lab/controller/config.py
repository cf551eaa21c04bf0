"""Training configuration of the layer controller, read from YAML with every key checked, built
from the detector training's own config pieces (data, optimiser) where they are the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adaptive_fusion.lab.training.augment import CorruptionSampler
from adaptive_fusion.lab.training.config import (
    ConfigError,
    DataConfig,
    OptimiserConfig,
    read_config,
)
from adaptive_fusion.lab.training.precision import check_bf16_setting
from adaptive_fusion.policies.network import ControllerConfig


def controller_corruptions() -> CorruptionSampler:
    """Most samples corrupted (1 - 0.5^3 = 87.5% have at least one sensor hit, "dead" among the
    kinds), so the controller sees what it must react to; the detector's held-out kind stays
    held out."""
    return CorruptionSampler(probability=0.5, fog_probability=0.1,
                             held_out=["camera:motion_blur"])


@dataclass
class ControllerSchedule:
    epochs: int = 3
    batch_size: int = 16
    epoch_steps: int | None = None  # batches per epoch (default: the whole training set)
    checkpoint_minutes: float = 5.0
    eval_every_epochs: int = 1
    train_epochs: int | None = None  # stop after this many epochs (training/config.py)
    max_steps: int | None = None  # stop early (tests, smoke runs)


@dataclass
class SelectionConfig:
    """How a training step turns the controller's slot values into gates."""

    temperature: float = 1.0  # of the sigmoid relaxations behind the straight-through gates
    # Gumbel noise on the slots' log values (Gumbel top-k sampling), and logistic noise on the
    # use logits (a Gumbel-sigmoid sample: a logistic is the difference of two Gumbels)
    gumbel_scale: float = 1.0
    absent_probability: float = 0.1  # per sample, one random modality not live (no data)


@dataclass
class ValidationConfig:
    scenes: int = 24  # the first validation scenes, each with a seeded random corruption
    budget: float = 0.25  # fraction of the blocks' compute the allocator gets


@dataclass
class ControllerTrainConfig:
    out_dir: str = "runs/controller"
    seed: int = 0
    threads: int = 2
    bf16: bool | str = "auto"  # bfloat16 autocast for the detector's forward pass
    detector: str = "adaptive_fusion/models/default"  # frozen detector checkpoint
    corruption_weight: float = 1.0  # of the corruption-prediction loss next to detection loss
    # of the use head's loss against the frozen detector's "dropping it helps" (controller
    # configs with may_skip_live only; see usage.py)
    use_weight: float = 1.0
    # of the spread of the slot values across live sensors (network.slot_spread; 0 = off)
    spread_weight: float = 0.0
    # Without a `data` key; a `data` mapping in the YAML starts from DataConfig's own defaults
    # (the detector's corruption rate), so the configs spell the corruptions out.
    data: DataConfig = field(
        default_factory=lambda: DataConfig(corruptions=controller_corruptions()))
    controller: dict = field(default_factory=dict)  # ControllerConfig overrides
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    schedule: ControllerSchedule = field(default_factory=ControllerSchedule)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def controller_config(self) -> ControllerConfig:
        try:
            return ControllerConfig.from_dict(self.controller)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"controller: {error}") from error


def load_controller_config(path: str | Path) -> ControllerTrainConfig:
    config = read_config(ControllerTrainConfig, path, "controller training")
    config.controller_config()  # validate early
    try:
        check_bf16_setting(config.bf16, str(path))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return config
