"""Frame sets on disk in the KITTI object layout, so that real data in that layout trains and
evaluates the same way as the synthetic world:

    <root>/image_2/<id>.png     RGB image
    <root>/depth_2/<id>.png     16-bit depth in millimetres registered to image_2, 0 = invalid
    <root>/velodyne/<id>.bin    float32 x, y, z, intensity (lidar frame)
    <root>/calib/<id>.txt       P0..P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo (KITTI keys)
    <root>/label_2/<id>.txt     KITTI label lines in the (rectified) camera frame; an optional
                                16th column holds the exact visibility in [0, 1]
    <root>/meta.json            lidar beam pattern and provenance (optional for real data)

Only Car, Pedestrian and Cyclist labels are read (KITTI's Van, Truck, Tram, Misc, Person_sitting
and DontCare are not among the package's classes); `KittiDataset.ignored_labels` counts the
skipped ones.
"""

import json
import os
import warnings
from collections import Counter

import cv2
import numpy as np

from adaptive_fusion.core.frames import CLASSES, Calibration, FrameSet, LidarModel, Objects
from adaptive_fusion.sim.rig import BOX_EDGES, CAMERA_NEAR, clip_hull_near

KITTI_NAMES = ("Car", "Pedestrian", "Cyclist")  # KITTI spelling of CLASSES
DEPTH_SCALE = 1000.0  # depth_2 PNG units per metre
META_FILE = "meta.json"
FOLDERS = ("image_2", "depth_2", "velodyne", "calib", "label_2")
# the sensor behind the real KITTI object data (Velodyne HDL-64E), used when there is no meta.json
KITTI_HDL64E = LidarModel(
    elevations_deg=np.linspace(-24.9, 2.0, 64), azimuth_steps=2083, max_range=120.0, min_range=0.9
)


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


def frame_id(index: int) -> str:
    return f"{index:06d}"


def write_meta(root: str, lidar: LidarModel, extra: dict | None = None) -> None:
    """Dataset-wide facts: the lidar beam pattern (not part of KITTI's calib) and provenance."""
    os.makedirs(root, exist_ok=True)
    meta = {
        "classes": list(CLASSES),
        "depth_scale": DEPTH_SCALE,
        "lidar": {
            "elevations_deg": [float(e) for e in lidar.elevations_deg],
            "azimuth_steps": int(lidar.azimuth_steps),
            "min_range": float(lidar.min_range),
            "max_range": float(lidar.max_range),
        },
        **(extra or {}),
    }
    with open(os.path.join(root, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)


def read_meta(root: str) -> dict | None:
    path = os.path.join(root, META_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_frameset(root: str, index: int, frames: FrameSet) -> str:
    """Write one frame set under its KITTI id; returns the id."""
    name = frame_id(index)
    for folder in FOLDERS:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    path = os.path.join(root, "image_2", name + ".png")
    if not cv2.imwrite(path, cv2.cvtColor(frames.image, cv2.COLOR_RGB2BGR)):
        raise DatasetError(f"{path}: could not write image")
    depth_mm = np.nan_to_num(frames.depth * DEPTH_SCALE, nan=0.0)
    unrepresentable = (depth_mm < 0) | (depth_mm > 65535)
    if unrepresentable.any():
        warnings.warn(
            f"frame {name}: {int(unrepresentable.sum())} depth pixels outside the 0..65.535 m a "
            "16-bit millimetre PNG holds are written as invalid",
            stacklevel=2,
        )
        depth_mm[unrepresentable] = 0
    cv2.imwrite(os.path.join(root, "depth_2", name + ".png"), np.round(depth_mm).astype(np.uint16))
    frames.points.astype(np.float32).tofile(os.path.join(root, "velodyne", name + ".bin"))
    with open(os.path.join(root, "calib", name + ".txt"), "w") as f:
        f.write(_calib_text(frames.calib))
    with open(os.path.join(root, "label_2", name + ".txt"), "w") as f:
        f.writelines(line + "\n" for line in label_lines(frames.objects, frames.calib))
    return name


def _calib_text(calib: Calibration) -> str:
    P = np.hstack([calib.K, np.zeros((3, 1))])
    rows = {f"P{k}": P for k in range(4)}
    rows["R0_rect"] = np.eye(3)
    rows["Tr_velo_to_cam"] = calib.T_cam_lidar[:3]
    rows["Tr_imu_to_velo"] = np.hstack([np.eye(3), np.zeros((3, 1))])
    return "".join(
        f"{key}: {' '.join(f'{v:.12e}' for v in m.ravel())}\n" for key, m in rows.items()
    )


def label_lines(objects: Objects, calib: Calibration) -> list[str]:
    """KITTI label lines: the location is the bottom centre of the box in the camera frame,
    rotation_y the heading about the camera's y (down) axis, alpha the heading seen from the camera.
    (Files written here have R0_rect = I and no camera offset, so the camera frame is the label
    frame.)"""
    R, t = calib.T_cam_lidar[:3, :3], calib.T_cam_lidar[:3, 3]
    centres = objects.centers.astype(np.float64) @ R.T + t
    headings = np.stack([np.cos(objects.yaws), np.sin(objects.yaws), np.zeros(len(objects))], 1)
    headings_cam = headings.astype(np.float64) @ R.T
    rotation_y = np.arctan2(-headings_cam[:, 2], headings_cam[:, 0])
    lines = []
    for k in range(len(objects)):
        length, width, height = objects.sizes[k].astype(np.float64)
        x, y, z = centres[k] + np.array([0.0, height / 2, 0.0])
        alpha = _wrap(rotation_y[k] - np.arctan2(x, z))
        x1, y1, x2, y2 = objects.boxes2d[k]
        vis = float(objects.visibility[k])
        occluded = 0 if vis >= 0.8 else 1 if vis >= 0.4 else 2
        lines.append(
            f"{KITTI_NAMES[objects.labels[k]]} {_truncation(objects, k, calib):.2f} {occluded} "
            f"{alpha:.4f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} "
            f"{height:.4f} {width:.4f} {length:.4f} {x:.4f} {y:.4f} {z:.4f} "
            f"{rotation_y[k]:.4f} {vis:.4f}"
        )
    return lines


def _truncation(objects: Objects, k: int, calib: Calibration) -> float:
    """Fraction of the projected 3D box's bounding rectangle that falls outside the image."""
    cam = calib.lidar_to_camera(objects.corners()[k])
    cam = clip_hull_near(cam, BOX_EDGES, CAMERA_NEAR)
    if len(cam) == 0:
        return 1.0
    uv = (cam @ calib.K.T)[:, :2] / cam[:, 2:3]
    (u0, v0), (u1, v1) = uv.min(axis=0), uv.max(axis=0)
    area = max(u1 - u0, 1e-9) * max(v1 - v0, 1e-9)
    inside = max(min(u1, calib.width) - max(u0, 0), 0) * max(min(v1, calib.height) - max(v0, 0), 0)
    return float(np.clip(1 - inside / area, 0, 1))


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class KittiDataset:
    """Random access to the frame sets of a KITTI-layout folder, numpy only.

    The lidar beam pattern comes from meta.json, else from `lidar`, else KITTI's HDL-64E. Without a
    depth_2 folder (real KITTI has none) pass `require_depth=False`: depth is then all NaN, which
    the quality measures report as a dead depth sensor."""

    def __init__(self, root: str, lidar: LidarModel | None = None, require_depth: bool = True):
        self.root = root
        image_dir = os.path.join(root, "image_2")
        if not os.path.isdir(image_dir):
            raise DatasetError(f"{image_dir}: no such folder (not a KITTI-layout dataset)")
        self.has_depth = os.path.isdir(os.path.join(root, "depth_2"))
        if require_depth and not self.has_depth:
            raise DatasetError(f"{os.path.join(root, 'depth_2')}: no such folder")
        self.ids = sorted(f[:-4] for f in os.listdir(image_dir) if f.endswith(".png"))
        meta = read_meta(root)
        if meta is not None:
            m = meta["lidar"]
            lidar = LidarModel(
                elevations_deg=np.asarray(m["elevations_deg"], dtype=np.float64),
                azimuth_steps=int(m["azimuth_steps"]),
                max_range=float(m["max_range"]),
                min_range=float(m["min_range"]),
            )
        self.lidar = lidar or KITTI_HDL64E
        self.ignored_labels: Counter = Counter()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> FrameSet:
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} out of range for {len(self)} frames in {self.root}")
        name = self.ids[index]
        image = self._read_image(name)
        calib, T_label_lidar = read_calib(
            self._path("calib", name, ".txt"), image.shape[1], image.shape[0]
        )
        return FrameSet(
            image=image,
            depth=self._read_depth(name, image.shape[:2]),
            points=read_points(self._path("velodyne", name, ".bin")),
            calib=calib,
            lidar=self.lidar,
            objects=self._read_labels(name, T_label_lidar),
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def _path(self, folder: str, name: str, ext: str) -> str:
        path = os.path.join(self.root, folder, name + ext)
        if not os.path.exists(path):
            raise DatasetError(f"{path}: missing")
        return path

    def _read_image(self, name: str) -> np.ndarray:
        path = self._path("image_2", name, ".png")
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{path}: not a readable image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _read_depth(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        if not self.has_depth:
            return np.full(shape, np.nan, np.float32)
        path = self._path("depth_2", name, ".png")
        raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16 or raw.shape != shape:
            raise DatasetError(f"{path}: expected a 16-bit single-channel PNG of shape {shape}")
        depth = raw.astype(np.float32) / DEPTH_SCALE
        depth[raw == 0] = np.nan
        return depth

    def _read_labels(self, name: str, T_label_lidar: np.ndarray) -> Objects:
        path = self._path("label_2", name, ".txt")
        with open(path) as f:
            rows = [line.split() for line in f if line.strip()]
        kept = []
        for n, row in enumerate(rows, 1):
            if len(row) not in (15, 16):
                raise DatasetError(f"{path}:{n}: expected 15 or 16 fields, got {len(row)}")
            if row[0] in KITTI_NAMES:
                kept.append(row)
            else:
                self.ignored_labels[row[0]] += 1
        if not kept:
            return Objects.empty()
        try:
            values = np.array([[float(v) for v in row[1:15]] for row in kept])
        except ValueError as err:
            raise DatasetError(f"{path}: non-numeric label field ({err})") from None
        occluded = values[:, 1]
        vis = np.array([float(r[15]) if len(r) == 16 else np.nan for r in kept])
        from_level = np.choose(np.clip(occluded, 0, 3).astype(int), [1.0, 0.6, 0.2, 0.5])
        h, w, length = values[:, 7], values[:, 8], values[:, 9]
        return _objects_from_camera(
            labels=np.array([KITTI_NAMES.index(r[0]) for r in kept], np.int64),
            boxes2d=values[:, 3:7],
            sizes=np.stack([length, w, h], 1),
            bottom_centres=values[:, 10:13],
            rotation_y=values[:, 13],
            visibility=np.where(np.isnan(vis), from_level, vis),
            T_label_lidar=T_label_lidar,
        )


def _objects_from_camera(
    labels, boxes2d, sizes, bottom_centres, rotation_y, visibility, T_label_lidar
):
    """KITTI camera-frame boxes -> lidar-frame Objects (inverse of label_lines)."""
    T_lidar_label = np.linalg.inv(T_label_lidar)
    R, t = T_lidar_label[:3, :3], T_lidar_label[:3, 3]
    centres_cam = bottom_centres.copy()
    centres_cam[:, 1] -= sizes[:, 2] / 2  # camera y points down: the centre is above the bottom
    centres = centres_cam @ R.T + t
    headings_cam = np.stack([np.cos(rotation_y), np.zeros(len(rotation_y)), -np.sin(rotation_y)], 1)
    headings = headings_cam @ R.T
    return Objects(
        labels=labels,
        centers=centres.astype(np.float32),
        sizes=sizes.astype(np.float32),
        yaws=np.arctan2(headings[:, 1], headings[:, 0]).astype(np.float32),
        boxes2d=boxes2d.astype(np.float32),
        visibility=np.clip(visibility, 0, 1).astype(np.float32),
    )


def read_points(path: str) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise DatasetError(f"{path}: {raw.size} floats are not whole (x, y, z, i) points")
    return raw.reshape(-1, 4)


def read_calib(path: str, width: int, height: int) -> tuple[Calibration, np.ndarray]:
    """KITTI calib -> (Calibration of camera 2, T_label_lidar).

    T_label_lidar = R0_rect Tr_velo_to_cam maps lidar points to the rectified reference camera in
    which KITTI labels live; camera 2 adds the offset t2 its projection P2 = K [I | t2] carries
    (zero in files this package writes): T_cam_lidar = [I | t2] T_label_lidar."""
    values = {}
    with open(path) as f:
        for line in f:
            if ":" in line:
                key, _, rest = line.partition(":")
                try:
                    values[key.strip()] = np.array([float(v) for v in rest.split()])
                except ValueError:
                    raise DatasetError(f"{path}: malformed values for {key.strip()}") from None
    for key in ("P2", "Tr_velo_to_cam"):
        if key not in values or values[key].size != 12:
            raise DatasetError(f"{path}: needs {key} with 12 values")
    P2 = values["P2"].reshape(3, 4)
    K = P2[:, :3].copy()
    R0 = values.get("R0_rect", np.eye(3).ravel()).reshape(3, 3)
    T = np.eye(4)
    T[:3, :4] = values["Tr_velo_to_cam"].reshape(3, 4)
    rect = np.eye(4)
    rect[:3, :3] = R0
    offset = np.eye(4)
    offset[:3, 3] = np.linalg.solve(K, P2[:, 3])
    T_label_lidar = rect @ T
    calib = Calibration(K=K, width=width, height=height, T_cam_lidar=offset @ T_label_lidar)
    return calib, T_label_lidar
