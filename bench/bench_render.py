"""Rendering speed of the synthetic world on one core: frame sets per second, per stage/sensor.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_render.py            # default sizes
    .venv/bin/python bench/bench_render.py --camera-size 640x480 --beams 64 --json out.json

Stages: scene sampling, camera + registered depth (one ray cast), lidar, ground truth; "render()"
is the end-to-end `World.render(seed)` timed separately. Everything runs on one thread; the
frames/s column is from the process's CPU time (the cost on one core, robust to other programs
sharing the machine), the wall column from the clock (equal on an idle machine).
Target: >= 20 frame sets/s at default sizes.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy loads

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adaptive_fusion.sim import World, WorldConfig  # noqa: E402
from adaptive_fusion.sim.scene import sample_scene  # noqa: E402

TARGET_FPS = 20.0


STAGES = ("scene", "camera+depth", "lidar", "ground truth", "render()")


def _now() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def time_stages(world: World, seeds: range) -> dict[str, np.ndarray]:
    """Per stage, (frames, 2) seconds of (CPU, wall) time."""
    samples: dict[str, list] = {k: [] for k in STAGES}
    for seed in seeds:
        scene_rng, camera_rng, lidar_rng = world.rngs(seed)
        marks = [_now()]
        scene = sample_scene(scene_rng, world.config)
        marks.append(_now())
        camera = world.render_camera(scene, camera_rng)
        marks.append(_now())
        world.render_lidar(scene, lidar_rng)
        marks.append(_now())
        world.ground_truth(scene, camera)
        marks.append(_now())
        world.render(seed)
        marks.append(_now())
        steps = np.diff(np.array(marks), axis=0)
        for key, step in zip(STAGES, steps, strict=True):
            samples[key].append(step)
    return {k: np.array(v) for k, v in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--camera-size", default="320x240", metavar="WxH")
    parser.add_argument("--beams", type=int, default=32)
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    width, height = (int(v) for v in args.camera_size.split("x"))
    config = WorldConfig(camera_width=width, camera_height=height, lidar_beams=args.beams)
    world = World(config)
    time_stages(world, range(1000, 1005))  # warm-up
    samples = time_stages(world, range(args.frames))
    rows = {}
    for key, v in samples.items():
        cpu_ms, wall_ms = 1e3 * v.mean(axis=0)
        rows[key] = {
            "cpu_ms": float(cpu_ms),
            "p90_cpu_ms": 1e3 * float(np.percentile(v[:, 0], 90)),
            "fps": 1e3 / float(cpu_ms),
            "wall_fps": 1e3 / float(wall_ms),
        }
    print(
        f"World rendering, {width}x{height} camera + depth, {args.beams}-beam x "
        f"{config.lidar_azimuth_steps} lidar, {args.frames} scenes, one thread "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    print(f"{'stage':<14}{'CPU ms':>9}{'p90 ms':>9}{'frames/s':>10}{'wall f/s':>10}")
    for key, row in rows.items():
        print(
            f"{key:<14}{row['cpu_ms']:>9.2f}{row['p90_cpu_ms']:>9.2f}{row['fps']:>10.1f}"
            f"{row['wall_fps']:>10.1f}"
        )
    total = rows["render()"]["fps"]
    verdict = "meets" if total >= TARGET_FPS else "MISSES"
    print(
        f"end-to-end: {total:.1f} frame sets/s on one core ({verdict} the "
        f"{TARGET_FPS:.0f}/s target)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"camera_size": [width, height], "beams": args.beams, "stages": rows}, f, indent=1
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
