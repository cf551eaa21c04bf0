"""The live view for Foxglove: each fused frame served through foxglove-sdk's WebSocket server,
as Foxglove's own message types (the annotated camera image, the lidar cloud, the 3D boxes, the
lidar <-> camera transform) and one JSON message of the allocation to plot.

foxglove-sdk is imported only when a view starts, so a robot that never asks for one does not
need it. Each view has its own foxglove Context: its channels reach its server only, and two
views in one process (tests) do not mix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.core.frames import MODALITIES
from adaptive_fusion.runtime.frame import SensorFrame
from adaptive_fusion.runtime.overlay import CLASS_COLOURS_RGB
from adaptive_fusion.runtime.pipeline import FusionResult

HOST = "127.0.0.1"  # localhost only: the server has no authentication
FOXGLOVE_SDK = "foxglove-sdk==0.30.3"
TOPICS = {
    "image": "/fusion/image",  # RawImage: the camera image with boxes and layer bars
    "points": "/fusion/points",  # PointCloud: the lidar cloud the frame fused
    "boxes": "/fusion/boxes",  # SceneUpdate: one cube and label per detection
    "tf": "/tf",  # FrameTransforms: the camera's pose in the lidar frame
    "allocation": "/fusion/allocation",  # JSON: layers, quality, budget, latency
}
ALLOCATION_SCHEMA = {
    "type": "object",
    "properties": {
        "layers": {"type": "object", "additionalProperties": {"type": "integer"}},
        "quality": {"type": "object", "additionalProperties": {"type": "number"}},
        "budget_blocks": {"type": "integer"},
        "budget_binding": {"type": "string"},
        "budget_fraction": {"type": "number"},
        "latency_ms": {"type": "number"},
        "detections": {"type": "integer"},
    },
}
POINT_FIELDS = ("x", "y", "z", "intensity")  # SensorFrame.points' columns, float32


class FoxgloveNotInstalled(RuntimeError):
    """foxglove-sdk is not installed."""


class FoxgloveServerError(RuntimeError):
    """The WebSocket server could not start (a port in use, a port not allowed)."""


class FoxgloveView:
    """A WebSocket server on HOST:port (0: any free port) and the channels of the view."""

    def __init__(self, port: int, classes: Sequence[str], modalities: Sequence[str],
                 name: str = "adaptive_fusion"):  # fmt: skip
        try:
            import foxglove
            from foxglove import channels
        except ImportError as error:
            raise FoxgloveNotInstalled(
                f"the Foxglove live view needs foxglove-sdk: pip install {FOXGLOVE_SDK} "
                f"({error})"
            ) from error
        self._messages = foxglove.messages
        self.classes = tuple(classes)
        self.modalities = tuple(modalities)
        self._context = foxglove.Context()
        try:
            self._server = foxglove.start_server(name=name, host=HOST, port=port,
                                                 context=self._context)  # fmt: skip
        except Exception as error:  # the SDK raises its own error types for a bind failure
            raise FoxgloveServerError(
                f"cannot serve the Foxglove live view on {HOST}:{port} ({error}); "
                "is the port in use? choose another"
            ) from error
        self.port = self._server.port
        kw = {"context": self._context}
        self._image = channels.RawImageChannel(TOPICS["image"], **kw)
        self._points = channels.PointCloudChannel(TOPICS["points"], **kw)
        self._boxes = channels.SceneUpdateChannel(TOPICS["boxes"], **kw)
        self._tf = channels.FrameTransformsChannel(TOPICS["tf"], **kw)
        self._allocation = foxglove.Channel(TOPICS["allocation"], schema=ALLOCATION_SCHEMA,
                                            **kw)  # fmt: skip

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def stop(self) -> None:
        self._server.stop()

    def wants_image(self) -> bool:
        """Whether a client watches the image channel (only then is an overlay worth drawing)."""
        return self._image.has_sinks()

    def publish(
        self,
        frame: SensorFrame,
        result: FusionResult,
        picture: np.ndarray | None,
        stamp_ns: int,
        lidar_frame: str,
        camera_frame: str,
        budget_fraction: float,
    ) -> None:
        """One fused frame on every channel; a message nobody subscribes to is not built.
        picture: the camera image with boxes and layer bars (runtime/overlay.py), drawn once by
        the caller for this view and the node's debug image alike; None without one."""
        m = self._messages
        stamp = m.Timestamp(*divmod(stamp_ns, 1_000_000_000))
        layers = result.layers(self.modalities)
        if picture is not None and self._image.has_sinks():
            height, width = picture.shape[:2]
            self._image.log(m.RawImage(timestamp=stamp, frame_id=camera_frame, width=width,
                                       height=height, encoding="rgb8", step=3 * width,
                                       data=picture.tobytes()))  # fmt: skip
        if frame.points is not None and self._points.has_sinks():
            self._points.log(_point_cloud(m, frame.points, stamp, lidar_frame))
        if self._boxes.has_sinks():
            self._boxes.log(self._scene(result.boxes, stamp, lidar_frame))
        if self._tf.has_sinks():
            self._tf.log(_camera_in_lidar(m, frame.calib.T_cam_lidar, stamp, lidar_frame,
                                          camera_frame))  # fmt: skip
        self._allocation.log({
            "layers": layers,
            # JSON has no NaN: a sensor without a measurement is left out, as a dead one is
            "quality": {k: float(v) for k, v in result.quality.items() if np.isfinite(v)},
            "budget_blocks": result.budget.total_blocks,
            "budget_binding": result.budget.binding,
            "budget_fraction": budget_fraction,
            "latency_ms": result.timings_ms.get("total", 0.0),
            "detections": len(result.boxes),
        }, log_time=stamp_ns)  # fmt: skip

    def _scene(self, boxes: Boxes3D, stamp, lidar_frame: str):
        """One entity replaced every frame: a cube and a label per box."""
        m = self._messages
        cubes, texts = [], []
        for k in range(len(boxes)):
            label = int(boxes.labels[k])
            r, g, b = (c / 255 for c in CLASS_COLOURS_RGB[label % len(CLASS_COLOURS_RGB)])
            length, width, height = (float(v) for v in boxes.sizes[k])
            center = [float(v) for v in boxes.centers[k]]
            cubes.append(m.CubePrimitive(
                pose=_pose(m, center, float(boxes.yaws[k])),
                size=m.Vector3(x=length, y=width, z=height),
                color=m.Color(r=r, g=g, b=b, a=0.4),
            ))  # fmt: skip
            texts.append(m.TextPrimitive(
                pose=_pose(m, [center[0], center[1], center[2] + height / 2 + 0.4], 0.0),
                billboard=True, font_size=14.0, scale_invariant=True,
                color=m.Color(r=r, g=g, b=b, a=1.0),
                text=f"{self.classes[label]} {float(boxes.scores[k]):.2f}",
            ))  # fmt: skip
        entity = m.SceneEntity(timestamp=stamp, frame_id=lidar_frame, id="detections",
                               cubes=cubes, texts=texts)  # fmt: skip
        return m.SceneUpdate(entities=[entity])


def layout(lidar_frame: str = "lidar"):
    """The Foxglove layout of the view (config/foxglove_layout.json is this, written out): the
    image with boxes, the 3D scene following the lidar, and plots of the allocation."""
    import foxglove.layouts as fl

    allocation = TOPICS["allocation"]

    def plot(title: str, fields: Sequence[str]):
        series = [fl.PlotSeries(value=f"{allocation}.{field}", label=field.split(".")[-1])
                  for field in fields]  # fmt: skip
        return fl.SplitItem(content=fl.PlotPanel(title=title, config=fl.PlotConfig(
            paths=series, show_legend=True)))  # fmt: skip

    scene = fl.ThreeDeePanel(title="lidar frame: cloud and detections", config=fl.ThreeDeeConfig(
        follow_tf=lidar_frame,
        topics={TOPICS["points"]: fl.BaseRendererPointCloudTopicSettings(visible=True),
                TOPICS["boxes"]: fl.BaseRendererSceneUpdateTopicSettings(visible=True)},
    ))  # fmt: skip
    image = fl.ImagePanel(title="camera: detections and layers per modality",
                          config=fl.ImageConfig(image_mode=fl.ImageModeConfig(
                              image_topic=TOPICS["image"])))  # fmt: skip
    views = fl.SplitContainer(direction="row", items=[fl.SplitItem(content=image),
                                                      fl.SplitItem(content=scene)])  # fmt: skip
    plots = fl.SplitContainer(direction="row", items=[
        plot("layers per modality and the budget (blocks)",
             [*(f"layers.{m}" for m in MODALITIES), "budget_blocks"]),
        plot("measured quality", [f"quality.{m}" for m in MODALITIES]),
        plot("latency (ms)", ["latency_ms"]),
    ])  # fmt: skip
    return fl.Layout(content=fl.SplitContainer(direction="column", items=[
        fl.SplitItem(proportion=2, content=views), fl.SplitItem(content=plots)]))  # fmt: skip


def _pose(m, center: Sequence[float], yaw: float):
    x, y, z = center
    return m.Pose(position=m.Vector3(x=x, y=y, z=z),
                  orientation=m.Quaternion(x=0.0, y=0.0, z=float(np.sin(yaw / 2)),
                                           w=float(np.cos(yaw / 2))))  # fmt: skip


def _point_cloud(m, points: np.ndarray, stamp, lidar_frame: str):
    packed = np.ascontiguousarray(points[:, : len(POINT_FIELDS)], dtype=np.float32)
    fields = [m.PackedElementField(name=name, offset=4 * i,
                                   type=m.PackedElementFieldNumericType.Float32)
              for i, name in enumerate(POINT_FIELDS[: packed.shape[1]])]  # fmt: skip
    return m.PointCloud(timestamp=stamp, frame_id=lidar_frame, point_stride=packed.strides[0],
                        fields=fields, data=packed.tobytes())  # fmt: skip


def _camera_in_lidar(m, T_cam_lidar: np.ndarray, stamp, lidar_frame: str, camera_frame: str):
    """The lidar as the parent: the 3D panel follows the frame the points and boxes are in."""
    T_lidar_cam = np.linalg.inv(T_cam_lidar)
    x, y, z = (float(v) for v in T_lidar_cam[:3, 3])
    qx, qy, qz, qw = (float(v) for v in Rotation.from_matrix(T_lidar_cam[:3, :3]).as_quat())
    return m.FrameTransforms(transforms=[m.FrameTransform(
        timestamp=stamp, parent_frame_id=lidar_frame, child_frame_id=camera_frame,
        translation=m.Vector3(x=x, y=y, z=z), rotation=m.Quaternion(x=qx, y=qy, z=qz, w=qw),
    )])  # fmt: skip
