"""A nuScenes split as the trainer's frame cache (lab/training/cache.py): each keyframe sample
of the split read with the devkit (reader.py) and stored at the model's input size, one file per
sample in the split's order. Everything downstream of the cache (augmentation, targets,
validation with the package's metric) is the one the world's frames go through.

Stored at the model's input size, not the camera's 1600x900: the detector sees no more
(prepare_inputs resizes the same way), a sample is 0.2 MB of image instead of 4.3, and the
corruption models' severities, set in pixels of the world's 320x240 frames, mean the same.
"""

from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

from nuscenes.nuscenes import NuScenes

from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.lab.nuscenes.reader import NuScenesFrames, open_nuscenes
from adaptive_fusion.lab.training.cache import (
    CACHE_VERSION,
    CacheError,
    complete_manifest,
    fill_cache,
    frame_path,
)
from adaptive_fusion.lab.training.config import NuScenesDataConfig
from adaptive_fusion.lab.training.data import model_boxes2d
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.inputs import at_model_size

# The trainer's split names -> the config's nuScenes split of each.
SPLIT_KEYS = {"train": "train_split", "val": "val_split"}


def at_model_size_with_labels(frames: FrameSet, config: ModelConfig) -> FrameSet:
    """The frame set as the model sees it (at_model_size), its 2D boxes scaled with the image."""
    return replace(at_model_size(frames, config),
                   objects=replace(frames.objects, boxes2d=model_boxes2d(frames, config)))


def build_nuscenes_cache(directory: Path, devkit: Callable[[], NuScenes],
                         source: NuScenesDataConfig, split: str, config: ModelConfig,
                         show_progress: bool) -> dict:
    """The samples of a nuScenes split in `directory` unless they already are; the manifest,
    which lists their sample tokens in file order. `devkit` opens the dataset, called only when
    samples must be read. The dataroot's location is recorded but is not what identifies the
    frames: a moved download keeps its cache."""
    settings = {"version": CACHE_VERSION,
                "nuscenes": {"version": source.version, "split": split, "depth": source.depth},
                "image_size": [config.image_width, config.image_height]}
    manifest = complete_manifest(directory, settings)
    if manifest is not None:
        return manifest
    try:
        frames = NuScenesFrames(devkit(), split, source.depth)
    except ValueError as error:  # no tables of that version, or a split neither defines
        raise CacheError(str(error)) from error
    if not len(frames):
        raise CacheError(f"split {split} has no samples in {source.dataroot} ({source.version})")
    return fill_cache(directory, settings, list(range(len(frames))),
                      lambda index: at_model_size_with_labels(frames[index], config),
                      show_progress, record={"dataroot": str(Path(source.dataroot).resolve()),
                                             "sample_tokens": frames.sample_tokens})


def nuscenes_split_cache(source: NuScenesDataConfig, config: ModelConfig
                         ) -> Callable[[Path, str, bool], tuple[dict, list[Path]]]:
    """For the trainer's cached_splits: (directory, "train" or "val", show_progress) -> that
    split's manifest and frame files. The devkit's tables are loaded at most once (the full
    dataset's take tens of seconds), and not at all when both caches are complete."""
    devkit = cache(lambda: open_nuscenes(source.dataroot, source.version))

    def cached(directory: Path, split: str, show_progress: bool) -> tuple[dict, list[Path]]:
        manifest = build_nuscenes_cache(directory, devkit, source,
                                        getattr(source, SPLIT_KEYS[split]), config, show_progress)
        return manifest, [frame_path(directory, index)
                          for index in range(len(manifest["sample_tokens"]))]

    return cached
