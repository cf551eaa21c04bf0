"""sensor_msgs <-> numpy without cv_bridge or sensor_msgs_py (neither is on PyPI).

Incoming arrays are views on the message buffer whenever numpy can describe the layout with
strides (rclpy hands `data` over as an `array.array('B')`, which exposes a writable buffer);
a copy happens only for byte swapping, gathering scattered cloud fields or dropping NaN points.
Every malformed message raises `MessageFormatError` with a message naming the problem.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header


class MessageFormatError(ValueError):
    """A sensor message whose fields contradict each other or its payload."""


# encoding -> (dtype, channels); mono16 and 16UC1 are both unsigned 16-bit, 16UC1 depth in mm.
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}

POINT_FIELD_DTYPES: dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}
_DATATYPE_OF = {dtype: code for code, dtype in POINT_FIELD_DTYPES.items()}
_HOST_BIG_ENDIAN = sys.byteorder == "big"


def _byte_buffer(data) -> np.ndarray:
    """The message payload as a flat uint8 array, sharing memory with `data`."""
    return np.frombuffer(data, dtype=np.uint8)


def _rows_payload(kind: str, msg, step_name: str, unit: int, unit_name: str) -> np.ndarray:
    """msg.data as bytes after checking that rows of `width` units fit in the row step and
    that the payload holds exactly `height` rows."""
    step = getattr(msg, step_name)
    if step < msg.width * unit:
        raise MessageFormatError(
            f"{kind} {step_name} {step} is smaller than width*{unit_name} = "
            f"{msg.width}*{unit} = {msg.width * unit}"
        )
    raw = _byte_buffer(msg.data)
    if raw.size != msg.height * step:
        raise MessageFormatError(
            f"{kind} data has {raw.size} bytes, expected height*{step_name} = "
            f"{msg.height}*{step} = {msg.height * step}"
        )
    return raw


def _to_byte_array(buffer: np.ndarray) -> array.array:
    """One memcpy into the array.array rclpy keeps (assigning an ndarray iterates per element,
    bytes too). Assign it to a message built with check_fields=True and after construction:
    otherwise the generated setter copies it a second time."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(buffer).view(np.uint8).reshape(-1).data)
    return out


def _make_header(header: Header | None, frame_id: str) -> Header:
    return header if header is not None else Header(frame_id=frame_id)


def _native(values: np.ndarray) -> np.ndarray:
    """Native byte order, copying only when the payload was written in the other one."""
    if values.dtype.isnative:
        return values
    return values.astype(values.dtype.newbyteorder("="))


# ---------------------------------------------------------------- Image


def _encoding(encoding: str) -> tuple[np.dtype, int]:
    if encoding not in IMAGE_ENCODINGS:
        raise MessageFormatError(
            f"Image encoding {encoding!r} is not supported; expected one of "
            f"{', '.join(IMAGE_ENCODINGS)}"
        )
    return IMAGE_ENCODINGS[encoding]


def image_to_numpy(msg: Image) -> np.ndarray:
    """(H, W) or (H, W, C) array in the encoding's channel order, a view on msg.data when the
    payload is in host byte order."""
    dtype, channels = _encoding(msg.encoding)
    raw = _rows_payload(
        f"Image ({msg.encoding})", msg, "step", channels * dtype.itemsize, "bytes_per_pixel"
    )
    dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels = np.ndarray(
        shape=(msg.height, msg.width, channels),
        dtype=dtype,
        buffer=raw,
        strides=(msg.step, channels * dtype.itemsize, dtype.itemsize),
    )
    pixels = _native(pixels)
    return pixels[:, :, 0] if channels == 1 else pixels


def numpy_to_image(
    pixels: np.ndarray,
    encoding: str,
    header: Header | None = None,
    frame_id: str = "",
    step: int | None = None,
    is_bigendian: bool = _HOST_BIG_ENDIAN,
) -> Image:
    """Image message from an (H, W) or (H, W, C) array; `step` > W*bpp pads every row."""
    dtype, channels = _encoding(encoding)
    expected_shape = "(H, W)" if channels == 1 else f"(H, W, {channels})"
    shape_ok = (
        pixels.ndim == 2 and channels == 1 or pixels.ndim == 3 and pixels.shape[2] == channels
    )
    if not shape_ok or pixels.dtype != dtype:
        raise MessageFormatError(
            f"{encoding} needs a {dtype} array of shape {expected_shape}, "
            f"got {pixels.dtype} {pixels.shape}"
        )
    height, width = pixels.shape[:2]
    row_bytes = width * channels * dtype.itemsize
    step = row_bytes if step is None else step
    if step < row_bytes:
        raise MessageFormatError(f"step {step} is smaller than the row size {row_bytes}")
    wire = pixels.astype(dtype.newbyteorder(">" if is_bigendian else "<"), copy=False)
    rows = np.ascontiguousarray(wire).reshape(height, row_bytes // dtype.itemsize)
    if step != row_bytes:
        padded = np.zeros((height, step), dtype=np.uint8)
        padded[:, :row_bytes] = rows.view(np.uint8)
        rows = padded
    msg = Image(
        check_fields=True,  # makes the data setter keep our array.array instead of copying it
        header=_make_header(header, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(is_bigendian),
        step=step,
    )
    msg.data = _to_byte_array(rows)  # after construction: the constructor copies `data`
    return msg


def depth_to_metres(msg: Image) -> np.ndarray:
    """(H, W) float32 depth in metres with NaN where there is no measurement: 16UC1/mono16
    millimetres with 0 = invalid, 32FC1 metres with NaN/inf/<= 0 = invalid (REP 118)."""
    if msg.encoding not in ("16UC1", "mono16", "32FC1"):
        raise MessageFormatError(
            f"depth Image encoding {msg.encoding!r} is not a depth encoding (16UC1 or 32FC1)"
        )
    depth = image_to_numpy(msg).astype(np.float32)
    if msg.encoding != "32FC1":
        depth *= np.float32(0.001)
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


# ---------------------------------------------------------------- PointCloud2


def cloud_dtype(msg: PointCloud2) -> np.dtype:
    """Structured dtype of one point (field offsets, datatypes, counts, point_step padding)."""
    if not msg.fields:
        raise MessageFormatError("PointCloud2 has no fields")
    if msg.point_step <= 0:
        raise MessageFormatError(f"PointCloud2 point_step is {msg.point_step}")
    names, formats, offsets = [], [], []
    order = ">" if msg.is_bigendian else "<"
    for field in msg.fields:
        if field.datatype not in POINT_FIELD_DTYPES:
            raise MessageFormatError(
                f"PointCloud2 field {field.name!r} has unknown datatype {field.datatype}"
            )
        if field.count < 1:
            raise MessageFormatError(f"PointCloud2 field {field.name!r} has count {field.count}")
        if field.name in names:
            raise MessageFormatError(f"PointCloud2 field {field.name!r} appears twice")
        scalar = POINT_FIELD_DTYPES[field.datatype].newbyteorder(order)
        end = field.offset + scalar.itemsize * field.count
        if end > msg.point_step:
            raise MessageFormatError(
                f"PointCloud2 field {field.name!r} (offset {field.offset}, {end - field.offset}"
                f" bytes) runs past point_step {msg.point_step}"
            )
        names.append(field.name)
        formats.append(scalar if field.count == 1 else (scalar, (field.count,)))
        offsets.append(field.offset)
    return np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step}
    )


def pointcloud2_to_structured(msg: PointCloud2) -> np.ndarray:
    """(height*width,) structured array of every point; a view unless rows are padded."""
    dtype = cloud_dtype(msg)
    raw = _rows_payload("PointCloud2", msg, "row_step", msg.point_step, "point_step")
    grid = np.ndarray(
        shape=(msg.height, msg.width),
        dtype=dtype,
        buffer=raw,
        strides=(msg.row_step, msg.point_step),
    )
    return grid.reshape(-1)


def pointcloud2_to_array(
    msg: PointCloud2,
    fields: tuple[str, ...] | None = None,
    dtype: np.dtype | type = np.float32,
    remove_nans: bool = True,
) -> np.ndarray:
    """(N, C) array of the named fields (all fields when None; a field with count k gives k
    columns). With `remove_nans`, points with a non-finite value in any selected column are
    dropped whatever `is_dense` claims. A view when the fields are laid out uniformly."""
    points = pointcloud2_to_structured(msg)
    available = points.dtype.names
    fields = available if fields is None else tuple(fields)
    missing = [name for name in fields if name not in available]
    if missing:
        raise MessageFormatError(
            f"PointCloud2 lacks field(s) {', '.join(missing)}; it has {', '.join(available)}"
        )
    columns = _native(_columns(points, fields, np.dtype(dtype)))
    if remove_nans and columns.dtype.kind == "f" and not np.isfinite(columns).all():
        return columns.take(np.flatnonzero(_finite_rows(columns)), axis=0)
    return columns


def _columns(points: np.ndarray, fields: tuple[str, ...], dtype: np.dtype) -> np.ndarray:
    """(N, C) array of the fields: a strided view when they are consecutive scalars of `dtype`
    (the usual x, y, z[, intensity] float32 layout), else one strided copy per field, which is
    ~8x faster than numpy.lib.recfunctions.structured_to_unstructured's copy."""
    layout = [points.dtype.fields[name][:2] for name in fields]
    first_dtype, first_offset = layout[0]
    consecutive = all(
        field_dtype == first_dtype and offset == first_offset + k * dtype.itemsize
        for k, (field_dtype, offset) in enumerate(layout)
    )
    if consecutive and first_dtype.newbyteorder("=") == dtype:
        first = points[fields[0]]
        return np.lib.stride_tricks.as_strided(
            first, shape=(len(points), len(fields)), strides=(first.strides[0], dtype.itemsize)
        )
    widths = [int(np.prod(field_dtype.shape)) for field_dtype, _ in layout]  # count per field
    out = np.empty((len(points), sum(widths)), dtype)
    start = 0
    for name, width in zip(fields, widths, strict=True):
        out[:, start : start + width] = points[name].reshape(len(points), width)
        start += width
    return out


def _finite_rows(columns: np.ndarray) -> np.ndarray:
    """Row mask of all-finite rows, column by column (np.all(axis=1) is ~20x slower here)."""
    finite = np.isfinite(columns[:, 0])
    for k in range(1, columns.shape[1]):
        finite &= np.isfinite(columns[:, k])
    return finite


def pointcloud2_to_xyzi(msg: PointCloud2, remove_nans: bool = True) -> tuple[np.ndarray, bool]:
    """(N, 4) float32 x, y, z, intensity (zeros when the cloud has no intensity) and whether
    the cloud carried intensity; NaN points dropped."""
    has_intensity = any(field.name == "intensity" for field in msg.fields)
    if has_intensity:
        xyzi = pointcloud2_to_array(msg, ("x", "y", "z", "intensity"), np.float32, remove_nans)
        return xyzi, True
    xyz = pointcloud2_to_array(msg, ("x", "y", "z"), np.float32, remove_nans)
    return np.concatenate([xyz, np.zeros((len(xyz), 1), np.float32)], axis=1), False


def numpy_to_pointcloud2(
    points: np.ndarray,
    fields: tuple[str, ...] | None = None,
    header: Header | None = None,
    frame_id: str = "",
    is_bigendian: bool = _HOST_BIG_ENDIAN,
) -> PointCloud2:
    """Unorganized (height 1) cloud from an (N, C) numeric array with C field names, or from a
    structured array whose dtype gives the layout (offsets, padding, point_step) verbatim."""
    if points.dtype.names is None:
        if points.ndim != 2 or fields is None or len(fields) != points.shape[1]:
            raise MessageFormatError(
                f"an (N, C) array needs C field names, got shape {points.shape} and {fields}"
            )
        packed = np.dtype({"names": list(fields), "formats": [points.dtype] * len(fields)})
        points = np.ascontiguousarray(points).view(packed).reshape(-1)
    elif fields is not None:
        raise MessageFormatError("field names come from the structured dtype; pass fields=None")
    order = ">" if is_bigendian else "<"
    point_fields = []
    for name in points.dtype.names:
        field_dtype, offset = points.dtype.fields[name][:2]
        scalar, shape = field_dtype.base, field_dtype.shape
        code = _DATATYPE_OF.get(scalar.newbyteorder("="))
        if code is None:
            raise MessageFormatError(f"field {name!r} has dtype {scalar}, not a PointField type")
        count = int(np.prod(shape))
        point_fields.append(PointField(name=name, offset=offset, datatype=code, count=count))
    wire = points.astype(points.dtype.newbyteorder(order), copy=False).reshape(-1)
    msg = PointCloud2(
        check_fields=True,  # makes the data setter keep our array.array instead of copying it
        header=_make_header(header, frame_id),
        height=1,
        width=len(wire),
        fields=point_fields,
        is_bigendian=is_bigendian,
        point_step=wire.dtype.itemsize,
        row_step=wire.dtype.itemsize * len(wire),
        is_dense=_all_finite(wire),
    )
    msg.data = _to_byte_array(np.ascontiguousarray(wire).view(np.uint8))
    return msg


def _all_finite(points: np.ndarray) -> bool:
    return all(
        bool(np.isfinite(points[name]).all())
        for name in points.dtype.names
        if points.dtype.fields[name][0].base.kind == "f"
    )


# ---------------------------------------------------------------- CameraInfo


@dataclass
class CameraIntrinsics:
    """Pinhole intrinsics of a CameraInfo: K (3, 3) float64, image size, distortion."""

    K: np.ndarray
    width: int
    height: int
    distortion: np.ndarray
    distortion_model: str


def camera_info_to_intrinsics(msg: CameraInfo) -> CameraIntrinsics:
    """Intrinsics of a calibrated camera; an uncalibrated (all-zero) K or zero size is an error."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if msg.width <= 0 or msg.height <= 0:
        raise MessageFormatError(f"CameraInfo size is {msg.width}x{msg.height}")
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1:
        raise MessageFormatError(
            "CameraInfo K is not a calibrated pinhole matrix (fx, fy > 0, K[2,2] = 1): "
            f"{K.tolist()}"
        )
    distortion = np.asarray(msg.d, dtype=np.float64)
    if not np.isfinite(distortion).all():
        raise MessageFormatError(f"CameraInfo distortion has non-finite values: {distortion}")
    return CameraIntrinsics(K, int(msg.width), int(msg.height), distortion, msg.distortion_model)
