"""Fuzzing the input paths with hypothesis: whatever an Image, a PointCloud2 or a CameraInfo
holds (encodings, sizes, steps, field layouts, truncated or oversized data, either byte order),
the conversions raise MessageFormatError and nothing else, and fusion_node's decoders raise
InputError and nothing else; what they do return is the shape the header promises."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from adaptive_fusion.ros.conversions import (
    MessageFormatError,
    camera_info_to_intrinsics,
    depth_to_metres,
    image_to_numpy,
    pointcloud2_to_array,
    pointcloud2_to_xyzi,
)
from adaptive_fusion.ros.inputs import decode
from adaptive_fusion.runtime.frame import InputError

FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1", "8UC3",
             "yuv422", "bayer_rggb8", "", "RGB8", "64FC1")  # fmt: skip
NAMES = ("x", "y", "z", "intensity", "rgb", "ring", "", "x")  # a repeated "x" too


@st.composite
def images(draw):
    width, height = draw(st.integers(0, 9)), draw(st.integers(0, 7))
    step = draw(st.one_of(st.integers(0, 80), st.integers(-5, 2**31)))
    # the size the header promises (when small), or any other
    size = draw(st.one_of(st.just(min(max(step, 0) * height, 4096)), st.integers(0, 700)))
    return Image(width=width, height=height, encoding=draw(st.sampled_from(ENCODINGS)),
                 is_bigendian=draw(st.integers(0, 1)), step=max(0, min(step, 2**32 - 1)),
                 data=draw(st.binary(min_size=size, max_size=size)))  # fmt: skip


@st.composite
def clouds(draw):
    fields = [PointField(name=draw(st.sampled_from(NAMES)), offset=draw(st.integers(0, 40)),
                         datatype=draw(st.integers(0, 10)), count=draw(st.integers(0, 3)))
              for _ in range(draw(st.integers(0, 5)))]  # fmt: skip
    width, height = draw(st.integers(0, 12)), draw(st.integers(0, 3))
    point_step = draw(st.integers(0, 48))
    row_step = draw(st.one_of(st.just(point_step * width), st.integers(0, 600)))
    size = draw(st.one_of(st.just(min(row_step * height, 4096)), st.integers(0, 1200)))
    return PointCloud2(height=height, width=width, fields=fields,
                       is_bigendian=draw(st.booleans()), point_step=point_step,
                       row_step=row_step, is_dense=draw(st.booleans()),
                       data=draw(st.binary(min_size=size, max_size=size)))  # fmt: skip


@FUZZ
@given(images())
def test_image_conversions_raise_only_message_format_errors(msg):
    for convert in (image_to_numpy, depth_to_metres):
        try:
            array = convert(msg)
        except MessageFormatError:
            continue
        assert array.shape[:2] == (msg.height, msg.width)


@FUZZ
@given(images(), st.sampled_from(("camera", "depth")))
def test_image_decoders_raise_only_input_errors(msg, modality):
    try:
        array, dropped = decode(modality, msg)
    except InputError:
        return
    assert array.shape[:2] == (msg.height, msg.width) and dropped == 0


@FUZZ
@given(clouds())
def test_cloud_conversions_raise_only_message_format_errors(msg):
    try:
        points = pointcloud2_to_array(msg)
    except MessageFormatError:
        points = None
    if points is not None:
        assert points.ndim == 2 and len(points) <= msg.width * msg.height
    try:
        xyzi, _ = pointcloud2_to_xyzi(msg)
    except MessageFormatError:
        return
    assert xyzi.shape[1] == 4 and np.isfinite(xyzi).all()


@FUZZ
@given(clouds())
def test_cloud_decoder_raises_only_input_errors(msg):
    try:
        points, dropped = decode("lidar", msg)
    except InputError:
        return
    assert len(points) > 0 and len(points) + dropped == msg.width * msg.height


@FUZZ
@given(st.integers(-3, 5000), st.integers(-3, 5000),
       st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=9,
                max_size=9))  # fmt: skip
def test_camera_info_raises_only_message_format_errors(width, height, k):
    msg = CameraInfo(width=max(width, 0), height=max(height, 0), k=k)
    try:
        intrinsics = camera_info_to_intrinsics(msg)
    except MessageFormatError:
        return
    assert np.isfinite(intrinsics.K).all() and intrinsics.width > 0 and intrinsics.height > 0
