"""Draws one frame of a running Foxglove live view as a PNG, from what the server sends (no
Foxglove viewer can run here): the camera image with boxes, the cloud and the boxes from above
in the lidar frame, and the allocation. docs/foxglove_view.png is its picture of the demo (start
it once the demo prints its first line; 13 s later the scenario has fog and a quarter budget):

    .venv/bin/adaptive-fusion demo --foxglove --duration 24 &
    .venv/bin/python scripts/draw_live_view.py --skip 13   # ws://127.0.0.1:8765 -> docs/
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from adaptive_fusion.lab.foxglove_client import FoxgloveClient  # noqa: E402
from adaptive_fusion.runtime.foxglove_view import TOPICS  # noqa: E402

SKIP_S = 8.0  # into the demo's scenario: past the first frames


def newest_frame(url: str, skip_s: float) -> dict[str, object]:
    """The newest message of each channel after skip_s seconds of the stream."""
    newest: dict[str, object] = {}
    with FoxgloveClient(url) as client:
        client.subscribe_all(set(TOPICS.values()), timeout_s=60.0)
        try:
            for received in client.messages(timeout_s=skip_s):
                newest[received.topic] = received.message
        except TimeoutError:
            pass
    return newest


def draw(frame: dict[str, object], out: str) -> None:
    image, cloud = frame[TOPICS["image"]], frame[TOPICS["points"]]
    (entity,) = frame[TOPICS["boxes"]].entities
    allocation = frame[TOPICS["allocation"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.9),
                                         gridspec_kw={"width_ratios": [1.33, 1]})  # fmt: skip
    left.imshow(np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 3))
    left.set_title(TOPICS["image"], fontsize=9)
    left.axis("off")
    points = np.frombuffer(cloud.data, np.float32).reshape(-1, cloud.point_stride // 4)
    right.scatter(points[:, 1], points[:, 0], s=0.3, c=points[:, 2], cmap="viridis")
    for cube, text in zip(entity.cubes, entity.texts, strict=True):
        q, c = cube.pose.orientation, cube.pose.position
        yaw = 2 * np.arctan2(q.z, q.w)
        corners = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1], [1, 1]]) * [cube.size.x / 2,
                                                                            cube.size.y / 2]
        rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        xy = corners @ rotation.T + [c.x, c.y]
        colour = (cube.color.r, cube.color.g, cube.color.b)
        right.plot(xy[:, 1], xy[:, 0], color=colour, linewidth=1.2)
        right.text(c.y, c.x + cube.size.x / 2 + 0.8, text.text, color=colour, fontsize=6,
                   ha="center")  # fmt: skip
    right.set_xlim(20, -20)  # lidar y to the left, as seen from above
    right.set_ylim(-5, 45)
    right.set_aspect("equal")
    right.set_title(f"{TOPICS['points']} + {TOPICS['boxes']} (lidar frame, from above)",
                    fontsize=9)  # fmt: skip
    layers = ", ".join(f"{m} {n}" for m, n in allocation["layers"].items())
    quality = ", ".join(f"{m} {q:.2f}" for m, q in allocation["quality"].items())
    figure.suptitle(f"{TOPICS['allocation']}: layers {layers} of {allocation['budget_blocks']} "
                    f"blocks; quality {quality}; {allocation['latency_ms']:.0f} ms",
                    fontsize=9)  # fmt: skip
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765")
    parser.add_argument("--skip", type=float, default=SKIP_S, help="seconds of stream to skip")
    parser.add_argument("--out", default="docs/foxglove_view.png")
    args = parser.parse_args()
    draw(newest_frame(args.url, args.skip), args.out)


if __name__ == "__main__":
    main()
