"""sensor_msgs <-> numpy on the real message classes: round trips for every encoding with row
padding and both byte orders, clouds of any layout, zero-copy views, and every kind of
malformed message raising MessageFormatError."""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from adaptive_fusion.ros.conversions import (
    IMAGE_ENCODINGS,
    MessageFormatError,
    camera_info_to_intrinsics,
    depth_to_metres,
    image_to_numpy,
    numpy_to_image,
    numpy_to_pointcloud2,
    pointcloud2_to_array,
    pointcloud2_to_structured,
    pointcloud2_to_xyzi,
)
from adaptive_fusion.ros.inputs import decode


def over_the_wire(msg):
    """The message as a subscriber receives it (rclpy deserializes data into array.array)."""
    return deserialize_message(serialize_message(msg), type(msg))


def payload(msg) -> np.ndarray:
    return np.frombuffer(msg.data, np.uint8)


def random_pixels(encoding: str, rng, height=7, width=5) -> np.ndarray:
    dtype, channels = IMAGE_ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        return rng.uniform(0.1, 80.0, shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("encoding", list(IMAGE_ENCODINGS))
@pytest.mark.parametrize("padding", [0, 3, 8])
@pytest.mark.parametrize("big_endian", [False, True])
def test_image_round_trip(encoding, padding, big_endian):
    rng = np.random.default_rng(0)
    pixels = random_pixels(encoding, rng)
    row_bytes = pixels[0].nbytes
    msg = over_the_wire(
        numpy_to_image(
            pixels, encoding, frame_id="cam", step=row_bytes + padding, is_bigendian=big_endian
        )
    )
    assert (msg.step, msg.is_bigendian, msg.header.frame_id) == (
        row_bytes + padding,
        big_endian,
        "cam",
    )
    decoded = image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert decoded.dtype == pixels.dtype and decoded.dtype.isnative
    swapped = big_endian and pixels.dtype.itemsize > 1
    assert np.shares_memory(decoded, payload(msg)) != swapped  # a view unless bytes were swapped


def test_big_endian_payload_is_read_as_big_endian():
    depth_mm = np.array([[1, 256, 4660]], dtype=np.uint16)
    msg = Image(
        height=1,
        width=3,
        encoding="16UC1",
        is_bigendian=1,
        step=6,
        data=depth_mm.astype(">u2").tobytes(),
    )
    np.testing.assert_array_equal(image_to_numpy(msg), depth_mm)
    assert bytes(msg.data)[:2] == b"\x00\x01"


def test_channel_order_is_the_encodings():
    bgr = np.zeros((1, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    msg = numpy_to_image(bgr, "bgr8")
    assert bytes(msg.data)[:3] == b"\xff\x00\x00"
    np.testing.assert_array_equal(image_to_numpy(msg), bgr)


def test_depth_in_metres_marks_invalid_pixels_nan():
    mm = np.array([[0, 1500], [65535, 250]], dtype=np.uint16)
    metres = depth_to_metres(numpy_to_image(mm, "16UC1"))
    np.testing.assert_allclose(metres, [[np.nan, 1.5], [65.535, 0.25]], rtol=1e-6)
    assert metres.dtype == np.float32
    raw = np.array([[2.5, np.nan], [np.inf, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(
        depth_to_metres(numpy_to_image(raw, "32FC1")), [[2.5, np.nan], [np.nan, np.nan]]
    )
    with pytest.raises(MessageFormatError, match="not a depth encoding"):
        depth_to_metres(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


def valid_image() -> Image:
    return numpy_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: setattr(m, "encoding", "yuv422"), "encoding 'yuv422' is not supported"),
        (lambda m: setattr(m, "step", 17), "step 17 is smaller than width"),
        (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "has 71 bytes, expected height"),
        (lambda m: setattr(m, "height", 5), "has 72 bytes, expected height\\*step = 5\\*18"),
        (lambda m: setattr(m, "step", 20), "expected height\\*step = 4\\*20"),
    ],
    ids=["unknown encoding", "step too small", "truncated", "height too large", "step mismatch"],
)
def test_malformed_image_names_the_problem(change, problem):
    msg = valid_image()
    change(msg)
    with pytest.raises(MessageFormatError, match=problem):
        image_to_numpy(msg)


def test_array_not_matching_the_encoding_is_rejected():
    with pytest.raises(MessageFormatError, match="rgb8 needs a uint8 array of shape"):
        numpy_to_image(np.zeros((4, 6), np.uint8), "rgb8")
    with pytest.raises(MessageFormatError, match="32FC1 needs a float32"):
        numpy_to_image(np.zeros((4, 6), np.float64), "32FC1")


XYZI = ("x", "y", "z", "intensity")
LIDAR_POINT = np.dtype(
    {
        "names": ["x", "y", "z", "intensity", "ring", "time"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"],
        "offsets": [0, 4, 8, 16, 20, 24],  # 4 padding bytes after z and 2 after ring
        "itemsize": 40,  # 8 more padding bytes at the end of every point
    }
)


def lidar_cloud(points: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cloud = np.zeros(points, LIDAR_POINT)
    for name in ("x", "y", "z"):
        cloud[name] = rng.uniform(-50, 50, points)
    cloud["intensity"] = rng.uniform(0, 255, points)
    cloud["ring"] = rng.integers(0, 32, points)
    cloud["time"] = rng.uniform(0, 0.1, points)
    return cloud


def test_100k_point_cloud_with_padding_and_nan_points():
    cloud = lidar_cloud(100_000)
    nan_rows = np.random.default_rng(1).choice(len(cloud), 1000, replace=False)
    cloud["x"][nan_rows] = np.nan
    msg = over_the_wire(numpy_to_pointcloud2(cloud, frame_id="lidar"))
    assert (msg.point_step, msg.row_step, msg.width, msg.is_dense) == (
        40,
        4_000_000,
        100_000,
        False,
    )
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32),
        ("y", 4, PointField.FLOAT32),
        ("z", 8, PointField.FLOAT32),
        ("intensity", 16, PointField.FLOAT32),
        ("ring", 20, PointField.UINT16),
        ("time", 24, PointField.FLOAT64),
    ]
    keep = np.ones(len(cloud), bool)
    keep[nan_rows] = False

    xyzi, has_intensity = pointcloud2_to_xyzi(msg)
    expected = np.stack([cloud[n] for n in ("x", "y", "z", "intensity")], axis=1)[keep]
    assert has_intensity and xyzi.dtype == np.float32
    np.testing.assert_array_equal(xyzi, expected)

    every = pointcloud2_to_array(msg, dtype=np.float64, remove_nans=False)
    assert every.shape == (100_000, 6)
    np.testing.assert_array_equal(every[:, 4], cloud["ring"])
    np.testing.assert_array_equal(every[:, 5], cloud["time"])

    xyz = pointcloud2_to_array(msg, ("x", "y", "z"), remove_nans=False)
    assert np.shares_memory(xyz, payload(msg))  # contiguous same-type fields: a strided view
    assert pointcloud2_to_structured(msg).tobytes() == cloud.tobytes()  # padding included


def test_cloud_without_intensity_gets_zero_intensity():
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    xyzi, has_intensity = pointcloud2_to_xyzi(numpy_to_pointcloud2(xyz, ("x", "y", "z")))
    assert not has_intensity
    np.testing.assert_array_equal(xyzi, np.concatenate([xyz, np.zeros((4, 1), np.float32)], 1))


def test_empty_cloud_gives_zero_points():
    empty = over_the_wire(numpy_to_pointcloud2(np.zeros((0, 4), np.float32), XYZI))
    xyzi, has_intensity = pointcloud2_to_xyzi(empty)
    assert xyzi.shape == (0, 4) and has_intensity and empty.is_dense


def test_every_datatype_count_big_endian_and_row_padding():
    """A hand-laid organized cloud: 2 rows of 3 points, each row padded by 5 bytes, big-endian,
    one field per PointField datatype plus a count=3 field."""
    names = ["i8", "u8", "i16", "u16", "i32", "u32", "f32", "f64", "normal"]
    formats = [">i1", ">u1", ">i2", ">u2", ">i4", ">u4", ">f4", ">f8", (">f4", (3,))]
    point = np.dtype(
        {
            "names": names,
            "formats": formats,
            "offsets": [0, 1, 2, 4, 8, 12, 16, 24, 32],
            "itemsize": 48,
        }
    )
    grid = np.zeros((2, 3), point)
    for k, name in enumerate(names[:-1]):
        grid[name] = np.arange(6).reshape(2, 3) * (-1 if name.startswith("i") else 1) + k
    grid["normal"] = np.arange(18).reshape(2, 3, 3)
    rows = np.zeros((2, 3 * 48 + 5), np.uint8)
    rows[:, : 3 * 48] = grid.view(np.uint8).reshape(2, -1)
    fields = [
        PointField(name=n, offset=point.fields[n][1], datatype=code, count=count)
        for n, code, count in zip(names, range(1, 9), [1] * 8, strict=False)
    ] + [PointField(name="normal", offset=32, datatype=PointField.FLOAT32, count=3)]
    msg = PointCloud2(
        height=2,
        width=3,
        fields=fields,
        is_bigendian=True,
        point_step=48,
        row_step=3 * 48 + 5,
        data=rows.tobytes(),
        is_dense=True,
    )
    values = pointcloud2_to_array(over_the_wire(msg), dtype=np.float64)
    assert values.shape == (6, 11)
    for k, name in enumerate(names[:-1]):
        np.testing.assert_array_equal(values[:, k], grid[name].reshape(-1))
    np.testing.assert_array_equal(values[:, 8:], np.arange(18).reshape(6, 3))


def valid_cloud() -> PointCloud2:
    return numpy_to_pointcloud2(np.ones((10, 4), np.float32), XYZI)


def set_field(index, **values):
    def change(msg):
        for key, value in values.items():
            setattr(msg.fields[index], key, value)

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: setattr(m, "data", bytes(m.data)[:-16]), "has 144 bytes, expected height"),
        (lambda m: setattr(m, "height", 2), "has 160 bytes, expected height\\*row_step = 2\\*160"),
        (lambda m: setattr(m, "row_step", 150), "row_step 150 is smaller than width"),
        (set_field(2, offset=14), "field 'z' \\(offset 14, 4 bytes\\) runs past point_step 16"),
        (set_field(3, datatype=9), "field 'intensity' has unknown datatype 9"),
        (set_field(0, count=0), "field 'x' has count 0"),
        (set_field(1, name="x"), "field 'x' appears twice"),
        (set_field(2, name="height"), "lacks field\\(s\\) z; it has x, y, height, intensity"),
        (lambda m: setattr(m, "fields", []), "has no fields"),
        (lambda m: setattr(m, "point_step", 0), "point_step is 0"),
    ],
    ids=[
        "truncated",
        "height too large",
        "row_step too small",
        "offset past point_step",
        "unknown datatype",
        "zero count",
        "duplicate name",
        "missing z",
        "no fields",
        "zero point_step",
    ],
)
def test_malformed_cloud_names_the_problem(change, problem):
    msg = valid_cloud()
    change(msg)
    with pytest.raises(MessageFormatError, match=problem):
        pointcloud2_to_xyzi(msg)


def test_camera_info_to_intrinsics():
    K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    msg = CameraInfo(
        width=640, height=480, k=K, d=[0.1, -0.05, 0.0, 0.0, 0.01], distortion_model="plumb_bob"
    )
    intrinsics = camera_info_to_intrinsics(over_the_wire(msg))
    np.testing.assert_array_equal(intrinsics.K, np.reshape(K, (3, 3)))
    assert (intrinsics.width, intrinsics.height, intrinsics.distortion_model) == (
        640,
        480,
        "plumb_bob",
    )
    np.testing.assert_array_equal(intrinsics.distortion, [0.1, -0.05, 0.0, 0.0, 0.01])
    with pytest.raises(MessageFormatError, match="not a calibrated pinhole"):
        camera_info_to_intrinsics(CameraInfo(width=640, height=480))
    with pytest.raises(MessageFormatError, match="size is 0x480"):
        camera_info_to_intrinsics(CameraInfo(width=0, height=480, k=K))


def test_lidar_input_drops_nan_points_and_says_how_many():
    points = np.arange(40, dtype=np.float32).reshape(10, 4)
    points[[1, 4, 7], 0] = np.nan
    points[8, 3] = np.inf  # a bad intensity makes the point unusable too
    cloud = numpy_to_pointcloud2(points, ("x", "y", "z", "intensity"))
    array, dropped = decode("lidar", cloud)
    assert dropped == 4 and array.shape == (6, 4) and np.isfinite(array).all()
    clean, none = decode("lidar", numpy_to_pointcloud2(points[[0, 2]], ("x", "y", "z",
                                                                        "intensity")))
    assert none == 0 and clean.shape == (2, 4)
