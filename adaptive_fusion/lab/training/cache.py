"""On-disk cache of rendered frame sets: one uncompressed .npz per seed plus a manifest whose
hash identifies the training data in checkpoints. Rendering once and reading back is cheaper
than re-rendering every epoch; corruptions are applied on the fly on top."""

import hashlib
import json
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
    arrays = {
        "image": frames.image, "depth": frames.depth, "points": frames.points,
        "K": frames.calib.K, "size": np.array([frames.calib.width, frames.calib.height]),
        "T_cam_lidar": frames.calib.T_cam_lidar,
        "elevations_deg": frames.lidar.elevations_deg,
        "lidar_params": np.array([
            frames.lidar.azimuth_steps, frames.lidar.max_range, frames.lidar.min_range
        ]),
    }
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
        image=arrays["image"], depth=arrays["depth"], points=arrays["points"],
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


def build_cache(directory: str | Path, world_config: WorldConfig, seeds: list[int],
                show_progress: bool = True) -> dict:
    """Render the missing seeds (an interrupted build resumes), then write and return the
    manifest with content_digest's sha256. A manifest from before content hashing gets it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    settings = {"version": CACHE_VERSION, "renderer": RENDERER_VERSION,
                "world": asdict(world_config), "seeds": list(seeds)}
    manifest_path = directory / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in settings} != json.loads(json.dumps(settings)):
            raise CacheError(f"{directory} holds a cache for other world settings or seeds; "
                             "choose another cache directory")
        if manifest.get("sha256_of") == HASHED:
            return manifest
    world = World(world_config)
    missing = [seed for seed in seeds if not frame_path(directory, seed).is_file()]
    for seed in tqdm(missing, desc=f"render {directory.name}", disable=not show_progress):
        partial = frame_path(directory, seed).with_suffix(".tmp.npz")
        np.savez(partial, **frames_to_arrays(world.render(seed)))
        partial.rename(frame_path(directory, seed))  # atomic: a stop never leaves half a file
    manifest = {**settings, "sha256_of": HASHED,
                "sha256": content_digest(directory, seeds, show_progress)}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
