"""Training configuration, read from YAML with every key checked (a typo is an error, not a
silently ignored setting)."""

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from adaptive_fusion.lab.training.augment import CorruptionSampler
from adaptive_fusion.lab.training.layerdrop import DropSchedule
from adaptive_fusion.lab.training.precision import check_bf16_setting
from adaptive_fusion.model.config import ModelConfig


class ConfigError(ValueError):
    """A training config file with unknown keys or values of the wrong kind."""


@dataclass
class NuScenesDataConfig:
    """Frames from a nuScenes-layout dataroot instead of the rendered world: CAM_FRONT and
    LIDAR_TOP of each keyframe sample of the splits, read with nuscenes-devkit
    (lab/nuscenes/reader.py) into the same cache. Unused while `dataroot` is empty."""

    dataroot: str = ""
    version: str = "v1.0-mini"
    train_split: str = "mini_train"  # nuScenes' own split, or one of <version>/splits.json
    val_split: str = "mini_val"
    depth: str = "absent"  # the depth camera nuScenes lacks: "absent", or "lidar" (projected)

    @property
    def used(self) -> bool:
        return bool(self.dataroot)

    def __post_init__(self):
        if not self.used:
            return
        # The devkit is imported only by configs that read nuScenes.
        from adaptive_fusion.lab.nuscenes.reader import DEPTH_SOURCES

        if self.depth not in DEPTH_SOURCES:
            raise ConfigError(f"data.nuscenes.depth must be one of {DEPTH_SOURCES}, "
                              f"got {self.depth!r}")


@dataclass
class DataConfig:
    cache_dir: str = "runs/cache"
    world: dict = field(default_factory=dict)  # WorldConfig overrides
    train_seeds: list[int] = field(default_factory=lambda: [0, 4000])  # [start, stop)
    val_seeds: list[int] = field(default_factory=lambda: [1_000_000, 1_000_100])
    # With a dataroot, train and validate on nuScenes instead of the world (whose three keys
    # above are then unused).
    nuscenes: NuScenesDataConfig = field(default_factory=NuScenesDataConfig)
    mirror_probability: float = 0.5
    corruptions: CorruptionSampler = field(default_factory=CorruptionSampler)
    # Who makes the batches (training/data.epoch_batches): `workers` loader processes ahead of
    # the step, or with 0, `sample_threads` threads of the training process between steps, which
    # is faster where torch's threads already take every core. Neither changes what is trained.
    workers: int = 0
    sample_threads: int = 2

    def __post_init__(self):
        if self.workers < 0 or self.sample_threads < 1:
            raise ConfigError(f"data: workers must be >= 0 and sample_threads >= 1, got "
                              f"{self.workers} and {self.sample_threads}")
        fog = self.corruptions.fog_probability > 0 or "camera:fog" not in self.corruptions.held_out
        if self.nuscenes.used and fog:
            # Fog is drawn from each pixel's distance, which only the world's dense depth camera
            # gives: nuScenes has none, and the lidar projected into the camera would leave
            # every pixel no return lands in at infinity, fogged as sky.
            raise ConfigError("data.corruptions: fog needs a dense depth camera, which nuScenes "
                              "lacks: set fog_probability: 0 and hold out camera:fog")


@dataclass
class OptimiserConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    grad_clip: float = 1.0
    warmup_steps: int = 100
    # Validate, keep and ship an exponential moving average of the weights (0: the weights
    # themselves). Each step moves the average this close to the last one: 0.999 averages
    # about the last 1000 steps. On the shipped recipe, whose cosine schedule ends at zero, 0.999
    # scored 0.2 points under the weights it averaged (README, "did not win either").
    ema_decay: float = 0.0


@dataclass
class ScheduleConfig:
    epochs: int = 10
    batch_size: int = 16  # global: split across data-parallel ranks
    clean_epochs: int = 1  # no corruption augmentation before this epoch
    layerdrop: DropSchedule = field(default_factory=DropSchedule)
    checkpoint_minutes: float = 5.0
    eval_every_epochs: int = 1
    # Stop, validated and checkpointed, after this many of the schedule's epochs; the learning
    # rate still decays over all `epochs` (the shipped recipe stops after 7 of 8).
    train_epochs: int | None = None
    max_steps: int | None = None  # stop early (tests, smoke runs)


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"
    seed: int = 0
    threads: int = 2  # torch threads per process
    bf16: bool | str = "auto"  # bfloat16 autocast for forward passes (precision.use_bf16)
    init_from: str | None = None  # start from this checkpoint's weights (fine-tuning)
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = field(default_factory=dict)  # ModelConfig overrides
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def model_config(self) -> ModelConfig:
        try:
            return ModelConfig.from_dict(self.model)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"model: {error}") from error


def _build(cls, values: Any, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown keys {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        path = f"{where}.{name}" if where else name
        kwargs[name] = _build(type(default), value, path) if is_dataclass(default) else value
    return cls(**kwargs)


def config_from_dict(cls, values: dict):
    """A `cls` dataclass from a mapping, every key checked; a key it lacks takes its default."""
    return _build(cls, values, "")


def read_config(cls, path: str | Path, what: str):
    """A `cls` dataclass from the YAML file at `path`, every key checked (ConfigError names
    `what` when the file cannot be read)."""
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read {what} config {path}: {error}") from error
    return config_from_dict(cls, values)


def load_config(path: str | Path, cls: type[TrainConfig] = TrainConfig,
                what: str = "training") -> TrainConfig:
    """A training config (of `cls`, TrainConfig or a subclass), checked."""
    config = read_config(cls, path, what)
    config.model_config()  # validate early
    try:
        check_bf16_setting(config.bf16, str(path))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return config


def config_to_dict(config) -> dict:
    if is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in fields(config)}
    return config
