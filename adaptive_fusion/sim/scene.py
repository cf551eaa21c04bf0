"""Random street scenes: a road with lanes and sidewalks, cars, pedestrians and cyclists built from
a few primitives each, distractors (poles, signs, trees, walls, clutter), and the lighting.

All positions are in the lidar frame; the ground is the plane z = -lidar_height."""

from dataclasses import dataclass

import numpy as np

from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.primitives import PrimitiveList, Primitives

# size distributions per class: mean and spread of (length, width, height), and hard bounds
SIZE_MEAN = np.array([[4.5, 1.8, 1.5], [0.6, 0.6, 1.75], [1.8, 0.6, 1.7]])
SIZE_STD = np.array([[0.35, 0.1, 0.1], [0.08, 0.07, 0.1], [0.12, 0.06, 0.08]])
SIZE_MIN = np.array([[3.6, 1.55, 1.3], [0.4, 0.45, 1.45], [1.5, 0.45, 1.5]])
SIZE_MAX = np.array([[5.4, 2.05, 1.8], [0.85, 0.8, 2.0], [2.1, 0.8, 1.9]])

# fmt: off
CAR_PAINTS = np.array([
    [0.85, 0.85, 0.85], [0.08, 0.08, 0.09], [0.55, 0.56, 0.58], [0.6, 0.08, 0.07],
    [0.1, 0.2, 0.5], [0.25, 0.3, 0.28], [0.75, 0.7, 0.55], [0.9, 0.55, 0.1],
])
CLOTHES = np.array([
    [0.1, 0.1, 0.12], [0.2, 0.25, 0.45], [0.5, 0.1, 0.1], [0.35, 0.3, 0.25],
    [0.8, 0.8, 0.75], [0.15, 0.35, 0.2], [0.6, 0.5, 0.2], [0.45, 0.45, 0.5],
])
# fmt: on
SKIN = np.array([[0.85, 0.65, 0.5], [0.6, 0.42, 0.3], [0.35, 0.22, 0.15]])
FACADES = np.array(
    [[0.55, 0.3, 0.22], [0.7, 0.68, 0.62], [0.45, 0.45, 0.47], [0.8, 0.75, 0.6], [0.3, 0.3, 0.32]]
)


@dataclass
class Ground:
    """Road layout on the ground plane (lateral positions are lidar y, road runs along x)."""

    z: float
    road_right: float  # y of the right road edge (< 0)
    road_left: float  # y of the left road edge (> 0)
    lane_width: float
    lane_centres: np.ndarray  # (L,) y of each lane's centre; the ego lane is at 0
    sidewalk_width: float
    asphalt: np.ndarray  # (3,) albedo
    sidewalk: np.ndarray
    verge: np.ndarray
    texture_offset: np.ndarray  # (2,) metres, shifts markings and paving per scene
    texture_variant: int  # which precomputed ground grain the camera uses


@dataclass
class Lighting:
    sun_dir: np.ndarray  # (3,) unit vector towards the sun, lidar frame
    sun_colour: np.ndarray  # (3,)
    ambient_colour: np.ndarray  # (3,)
    sky_top: np.ndarray  # (3,)
    sky_horizon: np.ndarray  # (3,)
    haze_distance: float  # metres at which 63% of the colour is haze


@dataclass
class Scene:
    prims: Primitives
    labels: np.ndarray  # (N,) int64
    centers: np.ndarray  # (N, 3)
    sizes: np.ndarray  # (N, 3)
    yaws: np.ndarray  # (N,)
    ground: Ground
    light: Lighting


def _jitter(rng, colour, amount=0.06):
    """A colour varied mostly in brightness, a little in hue."""
    gain = (1 + rng.normal(0, amount)) * (1 + rng.normal(0, amount / 3, 3))
    return np.clip(np.asarray(colour) * gain, 0, 1)


class _Footprints:
    """Occupied discs on the ground, so that nothing is placed inside something else."""

    def __init__(self):
        self.xy, self.r = [], []

    def free(self, xy, r):
        return all(np.hypot(*(xy - q)) >= r + rq for q, rq in zip(self.xy, self.r, strict=True))

    def add(self, xy, r):
        self.xy.append(np.asarray(xy, dtype=np.float64))
        self.r.append(r)


def sample_scene(rng: np.random.Generator, config: WorldConfig) -> Scene:
    ground = _sample_ground(rng, config)
    light = _sample_lighting(rng)
    prims = PrimitiveList()
    taken = _Footprints()
    taken.add(np.zeros(2), 2.5)  # the ego vehicle
    labels, centers, sizes, yaws = [], [], [], []
    n_objects = rng.integers(config.min_objects, config.max_objects + 1)
    weights = np.asarray(config.class_weights, dtype=np.float64)
    for _ in range(n_objects):
        label = int(rng.choice(3, p=weights / weights.sum()))
        size = rng.normal(SIZE_MEAN[label], SIZE_STD[label])
        size = np.clip(size, SIZE_MIN[label], SIZE_MAX[label])
        pose = _place_object(rng, config, ground, label, size, taken)
        if pose is None:
            continue
        xy, yaw = pose
        owner = len(labels)
        _BUILDERS[label](prims, rng, np.array([*xy, ground.z]), size, yaw, owner)
        labels.append(label)
        centers.append([xy[0], xy[1], ground.z + size[2] / 2])
        sizes.append(size)
        yaws.append(yaw)
    _add_distractors(rng, prims, ground, taken)
    return Scene(
        prims=prims.build(),
        labels=np.array(labels, np.int64),
        centers=np.array(centers, np.float64).reshape(-1, 3),
        sizes=np.array(sizes, np.float64).reshape(-1, 3),
        yaws=np.array(yaws, np.float64),
        ground=ground,
        light=light,
    )


def _sample_ground(rng, config) -> Ground:
    lane_width = rng.uniform(3.0, 3.7)
    lanes_right, lanes_left = rng.integers(1, 3), rng.integers(1, 3)
    shade = rng.uniform(0.22, 0.38)
    return Ground(
        z=-config.lidar_height,
        road_right=-(lanes_right - 0.5) * lane_width - rng.uniform(0.3, 1.5),
        road_left=(lanes_left + 0.5) * lane_width + rng.uniform(0.3, 1.5),
        lane_width=lane_width,
        lane_centres=np.arange(1 - lanes_right, lanes_left + 1) * lane_width,
        sidewalk_width=rng.uniform(2.0, 4.5),
        asphalt=_jitter(rng, [shade, shade, shade * 1.04], 0.03),
        sidewalk=_jitter(rng, [0.58, 0.56, 0.52]),
        verge=_jitter(rng, rng.choice([[0.3, 0.42, 0.18], [0.45, 0.38, 0.28]]), 0.1),
        texture_offset=rng.uniform(0, 100, 2),
        texture_variant=int(rng.integers(1 << 16)),
    )


def _sample_lighting(rng) -> Lighting:
    elevation = np.radians(rng.uniform(8, 70))
    azimuth = rng.uniform(0, 2 * np.pi)
    sun_dir = np.array(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
        ]
    )
    overcast = rng.random() < 0.25
    warmth = np.clip(1.2 - elevation, 0, 1) * 0.25  # low sun is warmer
    sun = rng.uniform(0.1, 0.25) if overcast else rng.uniform(0.55, 0.9)
    ambient = rng.uniform(0.45, 0.65) if overcast else rng.uniform(0.22, 0.42)
    sky_top = np.array([0.62, 0.64, 0.67]) if overcast else np.array([0.3, 0.5, 0.85])
    return Lighting(
        sun_dir=sun_dir,
        sun_colour=sun * np.array([1.0, 1.0 - 0.4 * warmth, 1.0 - warmth]),
        ambient_colour=ambient * _jitter(rng, [0.95, 0.98, 1.05], 0.03),
        sky_top=_jitter(rng, sky_top, 0.05),
        sky_horizon=_jitter(rng, [0.82, 0.85, 0.88], 0.04),
        haze_distance=rng.uniform(150, 600) if not overcast else rng.uniform(80, 250),
    )


def _place_object(rng, config, ground, label, size, taken, attempts=20):
    """A free pose in the camera's view for a labelled object, or None."""
    half_fov = np.radians(config.camera_hfov_deg) / 2
    radius = 0.5 * np.hypot(size[0], size[1]) + 0.2
    cam_x = config.camera_position[0]
    for _ in range(attempts):
        x = cam_x + rng.uniform(*config.object_distance)
        if label == 0:  # cars drive in lanes or park at the kerb
            if rng.random() < 0.3:
                y = rng.choice([ground.road_right, ground.road_left]) * 0.92
                y -= np.sign(y) * size[1] / 2
            else:
                y = rng.choice(ground.lane_centres) + rng.normal(0, 0.25)
            yaw = rng.choice([0.0, np.pi]) + rng.normal(0, 0.05)
            if rng.random() < 0.15:
                yaw = rng.uniform(-np.pi, np.pi)
        elif label == 1:  # pedestrians walk on sidewalks, sometimes cross the road
            if rng.random() < 0.25:
                y = rng.uniform(ground.road_right, ground.road_left)
                yaw = rng.choice([np.pi / 2, -np.pi / 2]) + rng.normal(0, 0.3)
            else:
                side = rng.choice([-1, 1])
                edge = ground.road_left if side > 0 else ground.road_right
                y = edge + side * rng.uniform(0.3, ground.sidewalk_width - 0.3)
                yaw = rng.uniform(-np.pi, np.pi)
        else:  # cyclists ride near the road edges
            edge = rng.choice([ground.road_right, ground.road_left])
            y = edge - np.sign(edge) * rng.uniform(0.6, 1.8)
            yaw = rng.choice([0.0, np.pi]) + rng.normal(0, 0.08)
        bearing = np.arctan2(y, x - cam_x)
        if abs(bearing) > half_fov + np.radians(3) or not taken.free(np.array([x, y]), radius):
            continue
        taken.add(np.array([x, y]), radius)
        return np.array([x, y]), float((yaw + np.pi) % (2 * np.pi) - np.pi)
    return None


def _at(base, yaw, forward, left, up):
    """A point given in an object's own frame (metres forward/left/up of its ground centre)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return base + np.array([c * forward - s * left, s * forward + c * left, up])


def _build_car(prims, rng, base, size, yaw, owner):
    length, width, height = size
    paint = _jitter(rng, CAR_PAINTS[rng.integers(len(CAR_PAINTS))], 0.05)
    refl = rng.uniform(0.35, 0.65)
    wheel_h = 0.42 * height
    body_z0, body_z1 = 0.2 * height, rng.uniform(0.55, 0.65) * height
    roof_z = body_z1 + 0.75 * (height - body_z1)  # glass below, painted roof above
    cabin_len = rng.uniform(0.45, 0.6) * length
    cabin_shift = -rng.uniform(0.0, 0.1) * length
    glass = _jitter(rng, [0.16, 0.18, 0.22], 0.1)
    parts = (  # (forward offset, up centre, size, colour, reflectivity)
        (0.0, (body_z0 + body_z1) / 2, (length, width, body_z1 - body_z0), paint, refl),
        (cabin_shift, (body_z1 + roof_z) / 2, (cabin_len, 0.86 * width, roof_z - body_z1),
         glass, 0.1),
        (cabin_shift, (roof_z + height) / 2, (0.9 * cabin_len, 0.82 * width, height - roof_z),
         paint, refl),
        (0.32 * length, wheel_h / 2, (0.2 * length, 0.94 * width, wheel_h), [0.05] * 3, 0.08),
        (-0.31 * length, wheel_h / 2, (0.2 * length, 0.94 * width, wheel_h), [0.05] * 3, 0.08),
    )  # fmt: skip
    for forward, up, part_size, colour, reflectivity in parts:
        prims.box(_at(base, yaw, forward, 0, up), part_size, yaw, colour, reflectivity, owner)


def _build_person(prims, rng, base, size, yaw, owner, riding=False):
    """A person's legs, torso and head; `size` is the pedestrian box (length, width, height)."""
    length, width, height = size
    skin = _jitter(rng, SKIN[rng.integers(len(SKIN))])
    top = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))])
    trousers = _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))])
    refl_top, refl_legs = rng.uniform(0.15, 0.5, 2)
    head_r = 0.11 * height / 1.75
    head_z0 = height - 2.1 * head_r
    hip = 0.5 * height
    leg_z0 = 0.3 * height if riding else 0.0
    prims.box(
        _at(base, yaw, 0, 0, (leg_z0 + hip) / 2),
        (0.75 * length if riding else 0.6 * length, 0.55 * width, hip - leg_z0),
        yaw,
        trousers,
        refl_legs,
        owner,
    )
    prims.box(
        _at(base, yaw, 0.05 * length if riding else 0.0, 0, (hip + head_z0) / 2),
        (0.55 * length, width, head_z0 - hip),
        yaw,
        top,
        refl_top,
        owner,
    )
    prims.cylinder(
        _at(base, yaw, 0.08 * length if riding else 0.0, 0, head_z0 + head_r * 1.05),
        head_r,
        2.1 * head_r,
        skin,
        0.3,
        owner,
    )


def _build_pedestrian(prims, rng, base, size, yaw, owner):
    _build_person(prims, rng, base, size, yaw, owner)


def _build_cyclist(prims, rng, base, size, yaw, owner):
    length, width, height = size
    frame = _jitter(rng, CAR_PAINTS[rng.integers(len(CAR_PAINTS))])
    wheel = 0.38 * height
    prims.box(
        _at(base, yaw, 0, 0, wheel / 2 + 0.02),
        (length, 0.08, wheel),
        yaw,
        [0.06, 0.06, 0.06],
        0.1,
        owner,
    )
    prims.box(_at(base, yaw, 0, 0, wheel + 0.1), (0.6 * length, 0.1, 0.2), yaw, frame, 0.5, owner)
    rider = np.array([0.55, width, height])
    _build_person(prims, rng, base, rider, yaw, owner, riding=True)


_BUILDERS = (_build_car, _build_pedestrian, _build_cyclist)


def _add_distractors(rng, prims, ground, taken):
    """Poles, signs, trees, building facades, clutter: structure that is not a labelled object."""
    z = ground.z
    for side, edge in ((1, ground.road_left), (-1, ground.road_right)):
        kerb = edge + side * 0.4
        far_edge = edge + side * ground.sidewalk_width
        # building facades / walls beyond the sidewalk, with gaps
        x = rng.uniform(-40, -20)
        while x < 80:
            seg = rng.uniform(6, 30)
            if rng.random() < 0.8:
                depth = rng.uniform(0.3, 10)
                h = rng.uniform(1.0, 14)
                y = far_edge + side * (rng.uniform(0, 3) + depth / 2)
                prims.box(
                    [x + seg / 2, y, z + h / 2],
                    (seg, depth, h),
                    0.0,
                    _jitter(rng, FACADES[rng.integers(len(FACADES))], 0.08),
                    rng.uniform(0.2, 0.6),
                )
            x += seg + rng.uniform(0, 8)
        # poles (street lights, sign posts) along the kerb
        x = rng.uniform(-30, -10)
        while x < 70:
            if taken.free(np.array([x, kerb]), 0.3):
                h = rng.uniform(2.5, 8)
                r = rng.uniform(0.04, 0.14)
                prims.cylinder(
                    [x, kerb, z + h / 2], r, h, _jitter(rng, [0.45, 0.47, 0.5], 0.15), 0.45
                )
                if rng.random() < 0.35:
                    facing = np.pi / 2 * (rng.random() < 0.5)
                    prims.box(
                        [x, kerb, z + h - 0.4],
                        (0.05, 0.7, 0.6),
                        facing,
                        _jitter(rng, [0.9, 0.9, 0.9], 0.2),
                        0.95,
                    )
                taken.add(np.array([x, kerb]), r + 0.1)
            x += rng.uniform(8, 25)
        # trees between kerb and facades: trunk plus a cylindrical crown
        for _ in range(rng.integers(0, 4)):
            x = rng.uniform(-20, 60)
            y = edge + side * rng.uniform(0.5, ground.sidewalk_width)
            if not taken.free(np.array([x, y]), 0.5):
                continue
            h = rng.uniform(2.2, 3.5)
            r = rng.uniform(1.0, 2.2)
            prims.cylinder([x, y, z + h / 2], rng.uniform(0.1, 0.2), h, [0.3, 0.22, 0.15], 0.3)
            prims.cylinder(
                [x, y, z + h + r * 0.7], r, 1.4 * r, _jitter(rng, [0.18, 0.33, 0.12], 0.15), 0.4
            )
            taken.add(np.array([x, y]), 0.4)
    # clutter: bins, crates, bollards, bushes, some on the road shoulder
    for _ in range(rng.integers(3, 14)):
        x = rng.uniform(-15, 60)
        side = rng.choice([-1, 1])
        edge = ground.road_left if side > 0 else ground.road_right
        y = edge + side * rng.uniform(-0.8, ground.sidewalk_width)
        size = rng.uniform([0.3, 0.3, 0.3], [1.6, 1.2, 1.3])
        if not taken.free(np.array([x, y]), 0.5 * np.hypot(size[0], size[1])):
            continue
        taken.add(np.array([x, y]), 0.5 * np.hypot(size[0], size[1]))
        colour = _jitter(rng, rng.uniform(0.1, 0.8, 3), 0.1)
        if rng.random() < 0.3:
            prims.cylinder(
                [x, y, z + size[2] / 2], size[1] / 2, size[2], colour, rng.uniform(0.2, 0.7)
            )
        else:
            prims.box(
                [x, y, z + size[2] / 2],
                size,
                rng.uniform(-np.pi, np.pi),
                colour,
                rng.uniform(0.2, 0.7),
            )
