"""A nuScenes-layout dataroot read with nuscenes-devkit as the package's frame sets: CAM_FRONT
and LIDAR_TOP of each keyframe sample, in the package's lidar frame (geometry.py), with the
annotations of the package's classes as ground truth.

nuScenes has no depth camera. `depth="absent"` leaves it out (the detector fuses without it, as
with a dead sensor); `depth="lidar"` gives it the lidar returns projected into the camera, a
sparse depth image. docs/model.md reports both on the world's scenes.
"""

import os
from collections.abc import Sequence

import cv2
import numpy as np
from nuscenes.eval.common.loaders import get_samples_of_scenes
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.splits import (
    create_splits_scenes,
    get_scenes_of_custom_split,
    is_predefined_split,
)

from adaptive_fusion.core.frames import CLASSES, Calibration, FrameSet, LidarModel, Objects
from adaptive_fusion.lab.nuscenes.geometry import LIDAR_TOP_FROM_PACKAGE, LidarPlacement, Pose
from adaptive_fusion.sim.dataset import read_meta
from adaptive_fusion.sim.rig import BOX_EDGES, CAMERA_NEAR, clip_hull_near

# The package's classes by their nuScenes detection names, and the category the world writes.
DETECTION_NAME_BY_CLASS = {"car": "car", "pedestrian": "pedestrian", "cyclist": "bicycle"}
CATEGORY_BY_CLASS = ("vehicle.car", "human.pedestrian.adult", "vehicle.bicycle")  # CLASSES order
# The attribute of a standing object of each class: the world's objects stand still (cars
# parked, pedestrians standing, every bicycle ridden), and the detector, which has no attribute
# head, reports the same, as nuScenes detectors without one do.
STANDING_ATTRIBUTE = {"car": "vehicle.parked", "pedestrian": "pedestrian.standing",
                      "bicycle": "cycle.with_rider"}
# nuScenes' visibility table: (upper bound of the visible fraction, level), token i + 1.
VISIBILITY_LEVELS = ((0.4, "v0-40"), (0.6, "v40-60"), (0.8, "v60-80"), (1.0, "v80-100"))
INTENSITY_MAX = 255.0  # nuScenes' lidar intensity scale; the package's is [0, 1]
# nuScenes' Velodyne HDL-32E, nominal: 32 beams from -30.67 to +10.67 degrees, 1084 columns a
# turn at 20 Hz; used unless the dataroot's version folder has a meta.json (world exports do).
NUSCENES_HDL32E = LidarModel(elevations_deg=np.linspace(-30.67, 10.67, 32), azimuth_steps=1084,
                             max_range=70.0, min_range=1.0)
DEPTH_SOURCES = ("absent", "lidar")


def default_attribute(label: int) -> str:
    return STANDING_ATTRIBUTE[DETECTION_NAME_BY_CLASS[CLASSES[label]]]


def open_nuscenes(dataroot: str, version: str) -> NuScenes:
    """The devkit's NuScenes on a dataroot's tables of this version; a ValueError naming the
    folder when it is missing (the devkit asserts, which the CLI would not report)."""
    if not os.path.isdir(os.path.join(dataroot, version)):
        raise ValueError(f"{os.path.join(dataroot, version)}: no such folder (a nuScenes dataroot "
                         "holds one folder of tables per version)")
    return NuScenes(version, dataroot, verbose=False)


def split_sample_tokens(nusc: NuScenes, split: str) -> list[str]:
    """The keyframe samples of a split: one of nuScenes' own (mini_val, val, ...) or a custom
    one from <dataroot>/<version>/splits.json, as DetectionEval chooses them."""
    scenes = (create_splits_scenes()[split] if is_predefined_split(split)
              else get_scenes_of_custom_split(split, nusc))
    return get_samples_of_scenes(scenes, nusc)


def depth_from_lidar(points: np.ndarray, calib: Calibration) -> np.ndarray:
    """(H, W) camera z of the nearest lidar return in each pixel, NaN where none lands."""
    uv, z = calib.project(points)
    inside = np.isfinite(uv).all(axis=1) & (z > 0)
    uv, z = uv[inside], z[inside]
    cols, rows = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (cols >= 0) & (cols < calib.width) & (rows >= 0) & (rows < calib.height)
    depth = np.full((calib.height, calib.width), np.inf, np.float32)
    np.minimum.at(depth, (rows[inside], cols[inside]), z[inside].astype(np.float32))
    depth[np.isinf(depth)] = np.nan
    return depth


def image_rectangles(corners: np.ndarray, calib: Calibration) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 of each (8, 3) lidar-frame box's projection, clipped to the image
    (zeros for a box wholly behind the camera)."""
    rectangles = np.zeros((len(corners), 4), np.float32)
    for k, box in enumerate(corners):
        cam = clip_hull_near(calib.lidar_to_camera(box), BOX_EDGES, CAMERA_NEAR)
        if len(cam):
            uv = (cam @ calib.K.T)[:, :2] / cam[:, 2:3]
            rectangles[k] = np.clip(np.r_[uv.min(axis=0), uv.max(axis=0)], 0,
                                    [calib.width, calib.height] * 2)
    return rectangles


class NuScenesFrames(Sequence):
    """The samples of a split as FrameSets, read on access."""

    def __init__(self, nusc: NuScenes, split: str, depth: str = "absent"):
        if depth not in DEPTH_SOURCES:
            raise ValueError(f"depth must be one of {DEPTH_SOURCES}, got {depth!r}")
        self.nusc, self.split, self.depth = nusc, split, depth
        self.sample_tokens = split_sample_tokens(nusc, split)
        meta = read_meta(nusc.table_root)
        self.lidar = NUSCENES_HDL32E if meta is None else LidarModel(
            elevations_deg=np.asarray(meta["lidar"]["elevations_deg"], np.float64),
            azimuth_steps=int(meta["lidar"]["azimuth_steps"]),
            max_range=float(meta["lidar"]["max_range"]),
            min_range=float(meta["lidar"]["min_range"]))

    def __len__(self) -> int:
        return len(self.sample_tokens)

    def __getitem__(self, index: int) -> FrameSet:
        sample = self.nusc.get("sample", self.sample_tokens[index])
        placement = self.placement(sample["token"])
        camera = self.nusc.get("sample_data", sample["data"]["CAM_FRONT"])
        calib = self._calibration(camera, placement)
        image = cv2.imread(self.nusc.get_sample_data_path(camera["token"]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(self.nusc.get_sample_data_path(camera["token"]))
        lidar_file = self.nusc.get_sample_data_path(sample["data"]["LIDAR_TOP"])
        points = LidarPointCloud.from_file(lidar_file).points.T.astype(np.float32)  # LIDAR_TOP
        points[:, :3] = points[:, :3] @ LIDAR_TOP_FROM_PACKAGE.rotation_matrix.astype(np.float32)
        points[:, 3] /= INTENSITY_MAX
        return FrameSet(
            image=cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
            depth=depth_from_lidar(points, calib) if self.depth == "lidar" else None,
            points=points, calib=calib, lidar=self.lidar,
            objects=self._objects(sample, placement, calib))

    def placement(self, sample_token: str) -> LidarPlacement:
        """The sample's LIDAR_TOP calibration and ego pose: the package's lidar frame."""
        lidar = self.nusc.get("sample_data",
                              self.nusc.get("sample", sample_token)["data"]["LIDAR_TOP"])
        return LidarPlacement(
            Pose.from_record(self.nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])),
            Pose.from_record(self.nusc.get("ego_pose", lidar["ego_pose_token"])))

    def _calibration(self, camera: dict, placement: LidarPlacement) -> Calibration:
        """Package lidar frame -> CAM_FRONT through the global frame: the camera's ego pose is
        that of its own timestamp, not the lidar's."""
        calibrated = self.nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
        camera_to_global = (Pose.from_record(self.nusc.get("ego_pose", camera["ego_pose_token"]))
                            .matrix() @ Pose.from_record(calibrated).matrix())
        return Calibration(K=np.asarray(calibrated["camera_intrinsic"], np.float64),
                           width=int(camera["width"]), height=int(camera["height"]),
                           T_cam_lidar=np.linalg.inv(camera_to_global)
                           @ placement.global_from_package())

    def _objects(self, sample: dict, placement: LidarPlacement, calib: Calibration) -> Objects:
        """The sample's annotations of the package's classes, in its lidar frame."""
        class_by_name = {name: k for k, name in enumerate(
            DETECTION_NAME_BY_CLASS[c] for c in CLASSES)}
        kept = [(class_by_name[name], annotation) for annotation in sample["anns"]
                if (name := category_to_detection_name(
                    self.nusc.get("sample_annotation", annotation)["category_name"]))
                in class_by_name]
        if not kept:
            return Objects.empty()
        centres, sizes, yaws = placement.to_package(
            [self.nusc.get_box(annotation) for _, annotation in kept])
        visible_fraction = {str(i + 1): (low + high) / 2 for i, (low, high) in enumerate(
            zip((0.0, 0.4, 0.6, 0.8), (upper for upper, _ in VISIBILITY_LEVELS), strict=True))}
        objects = Objects(
            labels=np.array([label for label, _ in kept], np.int64),
            centers=centres.astype(np.float32), sizes=sizes.astype(np.float32),
            yaws=yaws.astype(np.float32), boxes2d=np.zeros((len(kept), 4), np.float32),
            visibility=np.array([visible_fraction.get(
                self.nusc.get("sample_annotation", a)["visibility_token"], 1.0)
                for _, a in kept], np.float32))
        objects.boxes2d = image_rectangles(objects.corners(), calib)
        return objects
