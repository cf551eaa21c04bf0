"""Everything that sets up the synthetic world: sensor rig, beam pattern, scene density, sensor
realism. Defaults follow a KITTI-like car rig (lidar 1.73 m above the road, camera 0.27 m ahead of
and 0.08 m below it)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class WorldConfig:
    # camera (pinhole, level, looking along lidar x)
    camera_width: int = 320
    camera_height: int = 240
    camera_hfov_deg: float = 80.0
    camera_position: tuple[float, float, float] = (0.27, 0.0, -0.08)  # in the lidar frame
    # depth camera: registered to the camera, valid between these z distances
    depth_min: float = 0.3
    depth_max: float = 50.0
    # spinning lidar at the origin of the lidar frame
    lidar_height: float = 1.73
    lidar_beams: int = 32
    lidar_elevation_min_deg: float = -25.0
    lidar_elevation_max_deg: float = 15.0
    lidar_azimuth_steps: int = 1024
    lidar_min_range: float = 1.0
    lidar_max_range: float = 80.0
    # scene content
    min_objects: int = 2
    max_objects: int = 12
    object_distance: tuple[float, float] = (3.0, 40.0)  # metres ahead of the camera
    class_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)  # car, pedestrian, cyclist
    min_visible_pixels: int = 1  # objects with fewer unoccluded camera pixels are not labelled
    # mild sensor realism of the clean data (corruptions are applied separately)
    image_noise_sigma: float = 1.0  # grey levels
    image_blur_sigma: float = 0.5  # optics, pixels
    vignetting: float = 0.2  # brightness lost at the image corners
    depth_noise_rel: float = 0.002  # relative to depth
    depth_baseline: float = 0.05  # metres from the depth camera's emitter to its sensor (shadows)
    lidar_range_noise: float = 0.01  # metres
    lidar_weak_return_power: float = 0.002  # return power (reflectivity x cos / (r/10 m)^2) at
    # which 63% of returns are detected: dark, far, grazing surfaces lose returns

    def __post_init__(self):
        for name in ("camera_position", "object_distance", "class_weights"):
            # YAML and JSON give lists; tuples keep the config hashable
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        problems = [
            text
            for bad, text in (
                (min(self.camera_width, self.camera_height) < 16, "camera smaller than 16x16"),
                (not 10 <= self.camera_hfov_deg <= 160, "camera_hfov_deg outside [10, 160]"),
                (len(self.camera_position) != 3, "camera_position needs 3 values"),
                (not 0 < self.depth_min < self.depth_max, "need 0 < depth_min < depth_max"),
                (self.lidar_height <= 0, "lidar_height must be > 0"),
                (self.lidar_beams < 1 or self.lidar_azimuth_steps < 8, "too few lidar rays"),
                (
                    not self.lidar_elevation_min_deg <= self.lidar_elevation_max_deg,
                    "lidar_elevation_min_deg > lidar_elevation_max_deg",
                ),
                (not 0 <= self.lidar_min_range < self.lidar_max_range, "bad lidar ranges"),
                (not 0 <= self.min_objects <= self.max_objects, "need min_objects <= max_objects"),
                (
                    len(self.object_distance) != 2
                    or not 0 < self.object_distance[0] < self.object_distance[1],
                    "object_distance must be (near, far) with 0 < near < far",
                ),
                (
                    len(self.class_weights) != 3
                    or min(self.class_weights) < 0
                    or sum(self.class_weights) <= 0,
                    "class_weights needs 3 non-negative weights with a positive sum",
                ),
            )
            if bad
        ]
        if problems:
            raise ValueError("invalid WorldConfig: " + "; ".join(problems))
