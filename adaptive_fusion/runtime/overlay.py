"""The debug picture: detected boxes projected into the camera image and, along the bottom, one
bar per modality showing its layers in use (filled) out of the stack, with its quality."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.core.frames import Calibration, Objects

BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
             (0, 4), (1, 5), (2, 6), (3, 7))  # fmt: skip
CLASS_COLOURS_RGB = ((30, 150, 255), (255, 80, 50), (60, 230, 80))
BAR_HEIGHT = 12


def _corners(boxes: Boxes3D) -> np.ndarray:
    n = len(boxes)
    as_objects = Objects(
        boxes.labels, boxes.centers, boxes.sizes, boxes.yaws,
        np.zeros((n, 4), np.float32), np.ones(n, np.float32),
    )  # fmt: skip
    return as_objects.corners()


def draw_overlay(
    image: np.ndarray,
    boxes: Boxes3D,
    calib: Calibration,
    layers: Mapping[str, int],
    quality: Mapping[str, float],
    max_layers: int,
    classes: Sequence[str],
) -> np.ndarray:
    """A copy of the RGB image with boxes (edges behind the camera left out) and layer bars."""
    canvas = np.ascontiguousarray(image).copy()
    if len(boxes):
        corners = _corners(boxes)
        uv, z = calib.project(corners.reshape(-1, 3))
        uv, z = uv.reshape(-1, 8, 2), z.reshape(-1, 8)
        for k in range(len(boxes)):
            colour = CLASS_COLOURS_RGB[int(boxes.labels[k]) % len(CLASS_COLOURS_RGB)]
            for a, b in BOX_EDGES:
                if z[k, a] > 0.1 and z[k, b] > 0.1:
                    pa = tuple(int(round(v)) for v in uv[k, a])
                    pb = tuple(int(round(v)) for v in uv[k, b])
                    cv2.line(canvas, pa, pb, colour, 1, cv2.LINE_AA)
            top = uv[k, z[k] > 0.1]
            if len(top):
                label = f"{classes[int(boxes.labels[k])]} {float(boxes.scores[k]):.2f}"
                anchor = (int(top[:, 0].min()), max(int(top[:, 1].min()) - 3, 8))
                cv2.putText(canvas, label, anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1)
    _draw_bars(canvas, layers, quality, max_layers)
    return canvas


def _draw_bars(canvas, layers, quality, max_layers) -> None:
    height, width = canvas.shape[:2]
    names = list(layers)
    slot = width // max(len(names), 1)
    top = height - BAR_HEIGHT - 2
    for i, name in enumerate(names):
        x0, x1 = i * slot + 2, (i + 1) * slot - 2
        cv2.rectangle(canvas, (x0, top), (x1, height - 2), (210, 210, 210), -1)
        filled = x0 + int((x1 - x0) * layers[name] / max(max_layers, 1))
        if filled > x0:
            cv2.rectangle(canvas, (x0, top), (filled, height - 2), (250, 200, 40), -1)
        score = quality.get(name)
        text = f"{name} {layers[name]}/{max_layers}" + ("" if score is None else f" q{score:.2f}")
        cv2.putText(canvas, text, (x0 + 2, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
