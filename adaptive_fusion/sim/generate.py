"""Render N scenes into a KITTI-layout dataset, optionally corrupting some, in parallel.

Scene i of a dataset with seed s is `World.render(scene_seed(s, i))`, so any frame can be
re-rendered from its id alone; which corruption (if any) each frame got is listed in meta.json.
"""

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from multiprocessing import get_context

import numpy as np

from adaptive_fusion.core.frames import CLASSES
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.dataset import frame_id, write_frameset, write_meta
from adaptive_fusion.sim.world import World

SCENES_PER_SEED = 1_000_000
FOG_SHARE = 0.15  # of corrupted frames, the share that gets the scene-level fog event


def scene_seed(seed: int, index: int) -> int:
    if not 0 <= index < SCENES_PER_SEED:
        raise ValueError(f"scene index {index} outside [0, {SCENES_PER_SEED})")
    return seed * SCENES_PER_SEED + index


def random_corruption(rng: np.random.Generator) -> dict:
    """One corruption spec drawn uniformly: a modality and one of its kinds, or scene fog, with a
    uniform severity."""
    from adaptive_fusion.core.frames import CORRUPTIONS

    severity = round(float(rng.uniform(0.05, 1.0)), 3)
    if rng.random() < FOG_SHARE:
        return {"scene": ("fog", severity)}
    modality = str(rng.choice(list(CORRUPTIONS)))
    return {modality: (str(rng.choice(CORRUPTIONS[modality])), severity)}


_worlds: dict[WorldConfig, World] = {}  # one World per process and config (its set-up is costly)


def _world(config: WorldConfig) -> World:
    if config not in _worlds:
        _worlds[config] = World(config)
    return _worlds[config]


def _init_worker(config: WorldConfig) -> None:
    import cv2

    cv2.setNumThreads(1)
    _world(config)


class _Job:
    """Renders, corrupts and writes one scene; picklable for worker processes."""

    def __init__(self, root: str, config: WorldConfig, seed: int, mix: float, fixed: dict):
        self.root, self.config, self.seed, self.mix, self.fixed = root, config, seed, mix, fixed

    def __call__(self, index: int) -> tuple[str, dict, list[int]]:
        seed = scene_seed(self.seed, index)
        frames = _world(self.config).render(seed)
        spec = dict(self.fixed)
        rng = np.random.default_rng([seed, 1])
        if self.mix > 0 and rng.random() < self.mix:
            spec.update(random_corruption(rng))
        if spec:
            from adaptive_fusion.sim.corruptions import corrupt

            frames = corrupt(frames, spec, seed)
        name = write_frameset(self.root, index, frames)
        return name, spec, frames.objects.labels.tolist()


def generate_dataset(
    root: str,
    scenes: int,
    seed: int = 0,
    config: WorldConfig | None = None,
    corruption_mix: float = 0.0,
    corruption: dict | None = None,
    workers: int = 1,
    progress: Callable[[Iterator], Iterator] = iter,
) -> dict:
    """Write `scenes` frame sets under root; returns a summary (frames, objects per class).

    corruption_mix: share of frames given one random corruption; corruption: a fixed spec applied
    to every frame (both need adaptive_fusion.sim.corruptions). progress wraps the iterator of
    finished frames (e.g. tqdm)."""
    config = config or WorldConfig()
    if scenes < 0 or not 0.0 <= corruption_mix <= 1.0:
        raise ValueError("scenes must be >= 0 and corruption_mix in [0, 1]")
    os.makedirs(root, exist_ok=True)
    job = _Job(root, config, seed, corruption_mix, corruption or {})
    specs: dict[str, dict] = {}
    counts: Counter = Counter()
    pool = None
    if workers > 1:
        pool = get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(config,))
    try:
        results = pool.imap(job, range(scenes), chunksize=4) if pool else map(job, range(scenes))
        for name, spec, labels in progress(results):
            specs[name] = spec
            counts.update(labels)
    finally:
        if pool:
            pool.close()
            pool.join()
    write_meta(
        root,
        _world(config).lidar,
        {
            "generator": {"seed": seed, "scenes": scenes, "config": asdict(config)},
            "corruptions": {name: specs[name] for name in sorted(specs) if specs[name]},
        },
    )
    return {
        "out": root,
        "frames": scenes,
        "first_id": frame_id(0),
        "objects": {name: counts.get(k, 0) for k, name in enumerate(CLASSES)},
        "corrupted_frames": sum(bool(s) for s in specs.values()),
    }
