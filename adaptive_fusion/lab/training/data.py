"""Training samples: cached frame set -> (augmented) model rasters and per-cell targets, and the
batches an epoch draws from them."""

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from adaptive_fusion.core.boxes import boxes_from_objects
from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.lab.training.augment import CorruptionSampler, mirror
from adaptive_fusion.lab.training.cache import load_frames
from adaptive_fusion.model.coding import encode_targets
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.inputs import ModelInputs, prepare_inputs


def model_boxes2d(frames: FrameSet, config: ModelConfig) -> np.ndarray:
    scale = np.array([config.image_width / frames.calib.width,
                      config.image_height / frames.calib.height] * 2, np.float32)
    return frames.objects.boxes2d * scale


def make_sample(frames: FrameSet, config: ModelConfig) -> dict[str, torch.Tensor]:
    """One frame set -> tensors the collate function stacks: rasters under their modality names
    and targets under "heatmap", "regression", "mask"."""
    inputs = prepare_inputs(frames, config)
    arrays = {**inputs.rasters, **frame_targets(frames, inputs, config)}
    return {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}


def frame_targets(frames: FrameSet, inputs: ModelInputs, config: ModelConfig
                  ) -> dict[str, np.ndarray]:
    """The detection targets of a frame set ("heatmap", "regression", "mask") in the geometry of
    its model inputs."""
    return encode_targets(boxes_from_objects(frames.objects), model_boxes2d(frames, config),
                          inputs.K, inputs.T_cam_lidar, config)


class FrameDataset(Dataset):
    """Samples from cached frame files. With augmentation, the mirror and the corruption of
    item i in epoch e come from the seed (seed, e, i): reproducible, and different per epoch."""

    def __init__(self, files: list[Path], config: ModelConfig, seed: int = 0,
                 corruptions: CorruptionSampler | None = None, mirror_probability: float = 0.0):
        self.files = files
        self.config = config
        self.seed = seed
        self.corruptions = corruptions
        self.mirror_probability = mirror_probability
        self.epoch = 0
        self.corrupt = False

    def set_epoch(self, epoch: int, corrupt: bool) -> None:
        """Must be called before the loader forks its workers for the epoch."""
        self.epoch = epoch
        self.corrupt = corrupt

    def __len__(self) -> int:
        return len(self.files)

    def augmented(self, index: int) -> tuple[FrameSet, dict]:
        """Item `index` after augmentation, and the corruption spec applied to it ({} if none)."""
        frames = load_frames(self.files[index])
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if rng.random() < self.mirror_probability:
            frames = mirror(frames)
        if self.corrupt and self.corruptions is not None:
            return self.corruptions.apply_with_spec(frames, rng)
        return frames, {}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return make_sample(self.augmented(index)[0], self.config)


class ThreadedBatches:
    """An epoch's batches, each made in this process when the loop asks for it, its samples by
    `threads` threads at once (numpy and OpenCV release the GIL for most of a sample's work).
    Where the training's torch threads already use every core, a loader process beside them
    slows each step by more than it saves. bench/experiments/bench_training_step.py, 2 cores,
    batch 16: the
    model's step alone 0.66 s; fed by one loader process 0.89 s; samples made between steps one
    at a time 0.82 s, two at a time 0.75 s."""

    def __init__(self, dataset: Dataset, sampler: Sampler[int], batch_size: int, threads: int):
        self.dataset, self.sampler = dataset, sampler
        self.batch_size, self.threads = batch_size, threads

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        indices = list(self.sampler)
        with ThreadPoolExecutor(self.threads) as pool:
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                chunk = indices[start : start + self.batch_size]
                yield default_collate(list(pool.map(self.dataset.__getitem__, chunk)))


def epoch_batches(dataset: Dataset, sampler: Sampler[int], batch_size: int, workers: int,
                  threads: int) -> Iterable[dict[str, torch.Tensor]]:
    """Batches made ahead by `workers` loader processes (for machines with cores to spare
    beside the training), or with none, by `threads` threads of this process between steps.
    Either way, sample i of an epoch is the same (FrameDataset seeds it)."""
    if workers > 0:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    return ThreadedBatches(dataset, sampler, batch_size, threads)


TARGET_KEYS = ("heatmap", "regression", "mask")


def split_batch(batch: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Collated batch -> (rasters by modality, targets)."""
    targets = {key: batch[key] for key in TARGET_KEYS}
    rasters = {key: value for key, value in batch.items() if key not in TARGET_KEYS}
    return rasters, targets
