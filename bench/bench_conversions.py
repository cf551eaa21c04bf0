"""Conversion throughput, sensor_msgs <-> numpy, each as a ratio to a plain numpy copy of the
same bytes timed in the same run (ratio < 1: cheaper than copying the payload once).

    .venv/bin/python bench/bench_conversions.py
    .venv/bin/python bench/bench_conversions.py --json out.json

Messages are decoded as a subscriber gets them (deserialized by rclpy, `data` an array.array).
Decoding images and uniform clouds yields views, so their cost does not depend on the size.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adaptive_fusion.ros.conversions import (  # noqa: E402
    depth_to_metres,
    image_to_numpy,
    numpy_to_image,
    numpy_to_pointcloud2,
    pointcloud2_to_array,
    pointcloud2_to_xyzi,
)

XYZI = ("x", "y", "z", "intensity")
PADDED_LIDAR_POINT = np.dtype(
    {
        "names": ["x", "y", "z", "intensity", "ring", "time"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"],
        "offsets": [0, 4, 8, 16, 20, 24],
        "itemsize": 40,
    }
)


def median_seconds(call, budget_s: float) -> float:
    """Median wall time of `call` over as many runs as fit in about budget_s (at least 5)."""
    call()
    samples = []
    start = time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def received(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def cases(rng) -> list[tuple[str, str, object, int]]:
    """(payload, operation, call, payload bytes)."""
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.uniform(0.3, 40.0, (480, 640)).astype(np.float32)
    xyzi = rng.uniform(-50, 50, (100_000, 4)).astype(np.float32)
    xyzi[rng.choice(100_000, 1000, replace=False), 0] = np.nan
    lidar = np.zeros(100_000, PADDED_LIDAR_POINT)
    for name in XYZI:
        lidar[name] = rng.uniform(-50, 50, 100_000)
    rgb_msg = received(numpy_to_image(rgb, "rgb8"))
    depth_msg = received(numpy_to_image(depth, "32FC1"))
    cloud_msg = received(numpy_to_pointcloud2(xyzi, XYZI))
    lidar_msg = received(numpy_to_pointcloud2(lidar))
    return [
        ("640x480 rgb8", "Image -> numpy (view)", lambda: image_to_numpy(rgb_msg), rgb.nbytes),
        ("640x480 rgb8", "numpy -> Image", lambda: numpy_to_image(rgb, "rgb8"), rgb.nbytes),
        ("640x480 32FC1", "Image -> numpy (view)", lambda: image_to_numpy(depth_msg), depth.nbytes),
        (
            "640x480 32FC1",
            "Image -> metres, NaN mask",
            lambda: depth_to_metres(depth_msg),
            depth.nbytes,
        ),
        ("640x480 32FC1", "numpy -> Image", lambda: numpy_to_image(depth, "32FC1"), depth.nbytes),
        (
            "100k pts xyzi/16 B",
            "cloud -> (N,4), drop NaN",
            lambda: pointcloud2_to_xyzi(cloud_msg),
            xyzi.nbytes,
        ),
        (
            "100k pts xyzi/16 B",
            "cloud -> (N,4) (view)",
            lambda: pointcloud2_to_array(cloud_msg, XYZI, remove_nans=False),
            xyzi.nbytes,
        ),
        (
            "100k pts xyzi/16 B",
            "numpy -> cloud",
            lambda: numpy_to_pointcloud2(xyzi, XYZI),
            xyzi.nbytes,
        ),
        (
            "100k pts padded/40 B",
            "cloud -> (N,4), drop NaN",
            lambda: pointcloud2_to_xyzi(lidar_msg),
            lidar.nbytes,
        ),
        (
            "100k pts padded/40 B",
            "numpy -> cloud",
            lambda: numpy_to_pointcloud2(lidar),
            lidar.nbytes,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.5, help="seconds of timing per row")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    copy_cache: dict[int, float] = {}
    for payload, operation, call, nbytes in cases(np.random.default_rng(0)):
        if nbytes not in copy_cache:
            source = np.ones(nbytes, np.uint8)
            copy_cache[nbytes] = median_seconds(source.copy, args.budget)
        seconds = median_seconds(call, args.budget)
        rows.append(
            {
                "payload": payload,
                "operation": operation,
                "bytes": nbytes,
                "us": seconds * 1e6,
                "copy_us": copy_cache[nbytes] * 1e6,
                "ratio_to_copy": seconds / copy_cache[nbytes],
                "gb_per_s": nbytes / seconds / 1e9,
            }
        )
    print(
        f"{'payload':<21} {'operation':<26} {'us/op':>9} {'GB/s':>8} {'copy us':>8} {'x copy':>7}"
    )
    for r in rows:
        print(
            f"{r['payload']:<21} {r['operation']:<26} {r['us']:>9.1f} {r['gb_per_s']:>8.2f}"
            f" {r['copy_us']:>8.1f} {r['ratio_to_copy']:>7.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
