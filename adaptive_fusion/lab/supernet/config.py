"""The supernet's training configuration: a detector training config (lab/training/config.py)
plus the sandwich rule."""

from dataclasses import dataclass, field
from pathlib import Path

from adaptive_fusion.lab.training.config import ConfigError, TrainConfig, load_config


@dataclass
class SandwichConfig:
    # Each step trains the largest and the smallest subnet and this many random ones, on the
    # same batch, their losses averaged (BigNAS's sandwich rule).
    random_subnets: int = 2

    def __post_init__(self):
        if self.random_subnets < 0:
            raise ConfigError(f"sandwich.random_subnets must be >= 0, got {self.random_subnets}")


@dataclass
class SupernetConfig(TrainConfig):
    out_dir: str = "runs/supernet"
    sandwich: SandwichConfig = field(default_factory=SandwichConfig)


def load_supernet_config(path: str | Path) -> SupernetConfig:
    return load_config(path, SupernetConfig, "supernet")
