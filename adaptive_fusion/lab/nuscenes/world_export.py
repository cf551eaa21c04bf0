"""Frame sets of the synthetic world written as a nuScenes dataroot, so that the nuScenes route
(nuscenes-devkit's NuScenes class, the reader, DetectionEval) runs here, where nuScenes itself
cannot be downloaded. Written by hand: the devkit only reads this schema.

    <dataroot>/<version>/{scene,sample,sample_data,sample_annotation,instance,category,attribute,
                          visibility,sensor,calibrated_sensor,ego_pose,log,map}.json
    <dataroot>/<version>/splits.json      the devkit's custom splits: {split: [scene names]}
    <dataroot>/<version>/meta.json        the world's lidar beam pattern (sim/dataset.py's meta)
    <dataroot>/samples/CAM_FRONT/<scene>.png
    <dataroot>/samples/LIDAR_TOP/<scene>.pcd.bin   float32 x, y, z, intensity (0-255), ring
    <dataroot>/maps/world.png             the map mask the devkit's loader requires (empty)

Each world scene is one nuScenes scene of one keyframe sample (the world is static). The ego
vehicle stands on the ground under the lidar, at a pose drawn per scene, so that boxes really go
through both transforms; the annotations are the scene's labelled objects in the global frame,
with the lidar returns inside each (`num_lidar_pts`, which DetectionEval filters on).
"""

import hashlib
import json
import os

import cv2
import numpy as np
from pyquaternion import Quaternion

from adaptive_fusion.core.boxes import boxes_from_objects
from adaptive_fusion.core.frames import FrameSet, LidarModel
from adaptive_fusion.lab.evaluation.runner import lidar_points_in_boxes
from adaptive_fusion.lab.nuscenes.geometry import LIDAR_TOP_FROM_PACKAGE, LidarPlacement, Pose
from adaptive_fusion.lab.nuscenes.reader import (
    CATEGORY_BY_CLASS,
    INTENSITY_MAX,
    VISIBILITY_LEVELS,
    default_attribute,
)
from adaptive_fusion.sim.dataset import write_meta

FIRST_TIMESTAMP_US = 1_600_000_000_000_000
SCENE_SPACING_US = 20_000_000  # scenes 20 s apart, as nuScenes' 20 s scenes
EGO_PLACEMENT_M = 1000.0  # ego positions drawn in a square of this half-width


def token(*parts: object) -> str:
    """A nuScenes-shaped token (32 hex digits), the same for the same parts."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def ego_pose(seed: int) -> Pose:
    """The ego vehicle's global pose for one scene, on the ground, seeded."""
    rng = np.random.default_rng([seed, 38])
    x, y = rng.uniform(-EGO_PLACEMENT_M, EGO_PLACEMENT_M, 2)
    heading = Quaternion(axis=[0.0, 0.0, 1.0], angle=float(rng.uniform(-np.pi, np.pi)))
    return Pose(heading, np.array([x, y, 0.0]))


def lidar_calibration(lidar_height: float) -> Pose:
    """LIDAR_TOP -> ego: the package's lidar frame has the ego's axes, `lidar_height` above it."""
    return Pose(LIDAR_TOP_FROM_PACKAGE.inverse, np.array([0.0, 0.0, lidar_height]))


def camera_calibration(frames: FrameSet, lidar_to_ego: Pose) -> Pose:
    """CAM_FRONT (optical frame) -> ego, from the frame set's lidar -> camera extrinsic."""
    package_to_ego = lidar_to_ego.matrix() @ Pose(LIDAR_TOP_FROM_PACKAGE, np.zeros(3)).matrix()
    camera_to_ego = package_to_ego @ np.linalg.inv(frames.calib.T_cam_lidar)
    return Pose(Quaternion(matrix=camera_to_ego[:3, :3], atol=1e-9), camera_to_ego[:3, 3])


def beam_rings(points: np.ndarray, lidar: LidarModel) -> np.ndarray:
    """Each return's beam (ring) index: the beam whose elevation is nearest its own."""
    elevation = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
    beams = np.asarray(lidar.elevations_deg)
    return np.abs(elevation[:, None] - beams[None, :]).argmin(axis=1)


class NuScenesWriter:
    """Collects scenes, then writes the tables (`close`)."""

    def __init__(self, dataroot: str, version: str, lidar_height: float):
        self.dataroot, self.version = dataroot, version
        self.lidar_height = lidar_height
        self.tables: dict[str, list[dict]] = {name: [] for name in (
            "scene", "sample", "sample_data", "sample_annotation", "instance", "calibrated_sensor",
            "ego_pose")}
        self.log_token = token("log", version)
        self.scene_names: list[str] = []
        for channel in ("CAM_FRONT", "LIDAR_TOP"):
            os.makedirs(os.path.join(dataroot, "samples", channel), exist_ok=True)
        os.makedirs(os.path.join(dataroot, version), exist_ok=True)

    def add_scene(self, name: str, seed: int, frames: FrameSet) -> str:
        """Write one frame set's files and rows; returns its sample token."""
        index = len(self.scene_names)
        timestamp = FIRST_TIMESTAMP_US + index * SCENE_SPACING_US
        placement = LidarPlacement(lidar_calibration(self.lidar_height), ego_pose(seed))
        scene_token, sample_token = token("scene", name), token("sample", name)
        self.scene_names.append(name)
        self.tables["scene"].append({
            "token": scene_token, "log_token": self.log_token, "nbr_samples": 1,
            "first_sample_token": sample_token, "last_sample_token": sample_token, "name": name,
            "description": f"synthetic world scene, seed {seed}"})
        self.tables["sample"].append({"token": sample_token, "timestamp": timestamp, "prev": "",
                                      "next": "", "scene_token": scene_token})
        image_file = f"samples/CAM_FRONT/{name}.png"  # PNG: the pixels the package metric scores
        cv2.imwrite(os.path.join(self.dataroot, image_file),
                    cv2.cvtColor(frames.image, cv2.COLOR_RGB2BGR))
        lidar_file = f"samples/LIDAR_TOP/{name}.pcd.bin"
        xyz = frames.points[:, :3].astype(np.float64) @ LIDAR_TOP_FROM_PACKAGE.rotation_matrix.T
        np.column_stack([xyz, frames.points[:, 3] * INTENSITY_MAX,
                         beam_rings(frames.points, frames.lidar)]).astype(np.float32).tofile(
            os.path.join(self.dataroot, lidar_file))
        sensors = {"CAM_FRONT": (camera_calibration(frames, placement.lidar_to_ego), image_file),
                   "LIDAR_TOP": (placement.lidar_to_ego, lidar_file)}
        for channel, (calibration, filename) in sensors.items():
            data_token = token("sample_data", name, channel)
            calibrated = {"token": token("calibrated_sensor", name, channel),
                          "sensor_token": token("sensor", channel), **calibration.to_record(),
                          "camera_intrinsic": (frames.calib.K.tolist()
                                               if channel == "CAM_FRONT" else [])}
            self.tables["calibrated_sensor"].append(calibrated)
            self.tables["ego_pose"].append({"token": data_token, "timestamp": timestamp,
                                            **placement.ego_to_global.to_record()})
            is_camera = channel == "CAM_FRONT"
            self.tables["sample_data"].append({
                "token": data_token, "sample_token": sample_token, "ego_pose_token": data_token,
                "calibrated_sensor_token": calibrated["token"], "timestamp": timestamp,
                "fileformat": "png" if is_camera else "pcd", "is_key_frame": True,
                "height": frames.calib.height if is_camera else 0,
                "width": frames.calib.width if is_camera else 0,
                "filename": filename, "prev": "", "next": ""})
        self._annotate(name, sample_token, frames, placement)
        return sample_token

    def _annotate(self, name: str, sample_token: str, frames: FrameSet,
                  placement: LidarPlacement) -> None:
        truth = boxes_from_objects(frames.objects)
        returns = lidar_points_in_boxes(frames.points, truth)
        visibility = np.searchsorted([upper for upper, _ in VISIBILITY_LEVELS[:-1]],
                                     frames.objects.visibility, side="right")
        for k, box in enumerate(placement.to_global(truth)):
            annotation, instance = token("annotation", name, k), token("instance", name, k)
            category = CATEGORY_BY_CLASS[int(truth.labels[k])]
            self.tables["instance"].append({
                "token": instance, "category_token": token("category", category),
                "nbr_annotations": 1, "first_annotation_token": annotation,
                "last_annotation_token": annotation})
            self.tables["sample_annotation"].append({
                "token": annotation, "sample_token": sample_token, "instance_token": instance,
                "visibility_token": str(visibility[k] + 1),
                "attribute_tokens": [token("attribute", default_attribute(int(truth.labels[k])))],
                "translation": box.center.tolist(), "size": box.wlh.tolist(),
                "rotation": list(box.orientation.elements), "prev": "", "next": "",
                "num_lidar_pts": int(returns[k]), "num_radar_pts": 0})

    def close(self, splits: dict[str, list[str]], lidar: LidarModel) -> None:
        """Write the tables, the split file (scene names by split), the beam pattern and the map
        mask."""
        map_file = "maps/world.png"
        os.makedirs(os.path.join(self.dataroot, "maps"), exist_ok=True)
        cv2.imwrite(os.path.join(self.dataroot, map_file), np.zeros((8, 8), np.uint8))
        categories = sorted(set(CATEGORY_BY_CLASS))
        attributes = sorted({default_attribute(k) for k in range(len(CATEGORY_BY_CLASS))})
        tables = {
            **self.tables,
            "sensor": [{"token": token("sensor", channel), "channel": channel,
                        "modality": modality}
                       for channel, modality in (("CAM_FRONT", "camera"),
                                                 ("LIDAR_TOP", "lidar"))],
            "category": [{"token": token("category", c), "name": c, "description": ""}
                         for c in categories],
            "attribute": [{"token": token("attribute", a), "name": a, "description": ""}
                          for a in attributes],
            "visibility": [{"token": str(i + 1), "level": level, "description": ""}
                           for i, (_, level) in enumerate(VISIBILITY_LEVELS)],
            "log": [{"token": self.log_token, "logfile": "", "vehicle": "synthetic",
                     "date_captured": "2020-09-13", "location": "synthetic-world"}],
            "map": [{"token": token("map", self.version), "log_tokens": [self.log_token],
                     "category": "semantic_prior", "filename": map_file}],
        }
        table_root = os.path.join(self.dataroot, self.version)
        for name, rows in tables.items():
            with open(os.path.join(table_root, f"{name}.json"), "w") as f:
                json.dump(rows, f, indent=0)
        with open(os.path.join(table_root, "splits.json"), "w") as f:
            json.dump(splits, f, indent=0)
        write_meta(table_root, lidar, {"generator": "adaptive-fusion nuscenes export-world"})


def export_world(dataroot: str, version: str, splits: dict[str, list[tuple[int, FrameSet]]],
                 lidar_height: float) -> dict[str, list[str]]:
    """Write (seed, frame set) scenes of each split as one nuScenes dataroot; returns the
    sample tokens of each split. Scene names are "world-<seed>"."""
    scenes = [scene for split_scenes in splits.values() for scene in split_scenes]
    if not scenes:
        raise ValueError("no scenes to export")
    writer = NuScenesWriter(dataroot, version, lidar_height)
    tokens = {split: [writer.add_scene(f"world-{seed}", seed, frames) for seed, frames in
                      split_scenes] for split, split_scenes in splits.items()}
    writer.close({split: [f"world-{seed}" for seed, _ in split_scenes]
                  for split, split_scenes in splits.items()}, scenes[0][1].lidar)
    return tokens
