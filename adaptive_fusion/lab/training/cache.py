"""On-disk cache of frame sets: one uncompressed .npz per frame (a world seed, or a sample of a
nuScenes split: lab/nuscenes/cache.py) plus a manifest whose hash identifies the training data in
checkpoints. Rendering or reading a dataset once and reading back is cheaper than doing it every
epoch; corruptions are applied on the fly on top."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adaptive_fusion.core.frames import Calibration, FrameSet, LidarModel, Objects
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.world import RENDERER_VERSION, World

CACHE_VERSION = 1
MANIFEST = "manifest.json"
HASHED = "arrays"  # what the manifest's sha256 covers (content_digest)


class CacheError(ValueError):
    """A cache directory that is missing, incomplete, or made for other settings."""


def frames_to_arrays(frames: FrameSet) -> dict[str, np.ndarray]:
    """The frame set's arrays by name; a frame set without a depth camera (nuScenes) has no
    "depth" (an array of None could only be stored pickled)."""
    arrays = {
        "image": frames.image, "points": frames.points,
        "K": frames.calib.K, "size": np.array([frames.calib.width, frames.calib.height]),
        "T_cam_lidar": frames.calib.T_cam_lidar,
        "elevations_deg": frames.lidar.elevations_deg,
        "lidar_params": np.array([
            frames.lidar.azimuth_steps, frames.lidar.max_range, frames.lidar.min_range
        ]),
    }
    if frames.depth is not None:
        arrays["depth"] = frames.depth
    for name in ("labels", "centers", "sizes", "yaws", "boxes2d", "visibility"):
        arrays[f"objects_{name}"] = getattr(frames.objects, name)
    return arrays


def arrays_to_frames(arrays) -> FrameSet:
    width, height = (int(v) for v in arrays["size"])
    steps, max_range, min_range = arrays["lidar_params"]
    objects = {
        name: arrays[f"objects_{name}"]
        for name in ("labels", "centers", "sizes", "yaws", "boxes2d", "visibility")
    }
    return FrameSet(
        image=arrays["image"], depth=arrays.get("depth"), points=arrays["points"],
        calib=Calibration(K=arrays["K"], width=width, height=height,
                          T_cam_lidar=arrays["T_cam_lidar"]),
        lidar=LidarModel(elevations_deg=arrays["elevations_deg"], azimuth_steps=int(steps),
                         max_range=float(max_range), min_range=float(min_range)),
        objects=Objects(**objects),
    )


def frame_path(directory: Path, seed: int) -> Path:
    return directory / f"{seed:08d}.npz"


def load_frames(path: Path) -> FrameSet:
    with np.load(path, allow_pickle=False) as data:
        return arrays_to_frames({key: data[key] for key in data.files})


def content_digest(directory: Path, seeds: list[int], show_progress: bool = False) -> str:
    """sha256 over the arrays of every file in seed order (name, dtype, shape and bytes of each):
    the same scenes give the same hash whenever they are rendered. The files' own bytes would
    not: np.savez stamps the time into its zip entries."""
    digest = hashlib.sha256()
    for seed in tqdm(seeds, desc=f"hash {directory.name}", disable=not show_progress):
        with np.load(frame_path(directory, seed), allow_pickle=False) as data:
            for key in sorted(data.files):
                array = np.ascontiguousarray(data[key])
                digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
                digest.update(array.tobytes())
    return digest.hexdigest()


def complete_manifest(directory: Path, settings: dict) -> dict | None:
    """The manifest of a cache made with these settings when its frames are all written and
    hashed; None while they are not (missing or interrupted). A cache of other settings is a
    CacheError: its frames are not the ones asked for."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if {k: manifest.get(k) for k in settings} != json.loads(json.dumps(settings)):
        raise CacheError(f"{directory} holds a cache for other settings ({', '.join(settings)}); "
                         "choose another cache directory")
    return manifest if manifest.get("sha256_of") == HASHED else None


def fill_cache(directory: Path, settings: dict, keys: list[int],
               frames_of: Callable[[int], FrameSet], show_progress: bool,
               record: dict | None = None) -> dict:
    """Write the frame set of each key whose file is missing (an interrupted build resumes),
    then write and return the manifest: the settings, `record` and content_digest's sha256. A
    manifest from before content hashing gets it."""
    directory.mkdir(parents=True, exist_ok=True)
    missing = [key for key in keys if not frame_path(directory, key).is_file()]
    for key in tqdm(missing, desc=f"cache {directory.name}", disable=not show_progress):
        partial = frame_path(directory, key).with_suffix(".tmp.npz")
        np.savez(partial, **frames_to_arrays(frames_of(key)))
        partial.rename(frame_path(directory, key))  # atomic: a stop never leaves half a file
    manifest = {**settings, **(record or {}), "sha256_of": HASHED,
                "sha256": content_digest(directory, keys, show_progress)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def build_cache(directory: str | Path, world_config: WorldConfig, seeds: list[int],
                show_progress: bool = True) -> dict:
    """The world's scenes of these seeds, rendered into `directory` unless they already are
    (fill_cache); the manifest."""
    directory = Path(directory)
    settings = {"version": CACHE_VERSION, "renderer": RENDERER_VERSION,
                "world": asdict(world_config), "seeds": list(seeds)}
    manifest = complete_manifest(directory, settings)
    if manifest is not None:
        return manifest
    return fill_cache(directory, settings, list(seeds), World(world_config).render, show_progress)
