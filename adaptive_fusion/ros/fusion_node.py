"""fusion_node: the adaptive-depth detector behind ROS topics, as a lifecycle node.

Executor thread: subscriptions check and decode each message (bad ones are counted, logged
throttled and skipped), an approximate-time synchronizer over the modalities that are alive
forms sets, and the newest set waits in a one-slot mailbox. Worker thread: takes the newest
set, runs the ROS-free FusionPipeline (quality -> budget -> allocation -> only the allocated
blocks -> boxes) and publishes. A set still waiting when a newer one forms is dropped and
counted, so inference never queues and the subscriptions never wait for it.

A modality silent for `sensor_timeout` leaves the synchronizer and gets no layers; its first
message afterwards brings it back.

Every input message is also shown to an InputMonitor before any check, and the monitor says in
/diagnostics (one status per input, one for the synchronizer) and a throttled warning why the
node is silent when it is: incompatible QoS, matched publishers whose samples never arrive,
stamps that never pair within the slop, clock offsets, frames or sizes disagreeing with
camera_info. The node's own checks decide per message what is skipped and count it; the
monitor's explain the pattern and name the fix.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float32, Header
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from adaptive_fusion.core.errors import BudgetError, check_fraction
from adaptive_fusion.core.frames import MODALITIES, Calibration, LidarModel
from adaptive_fusion.model.architecture import ArchitectureError, choose_architecture
from adaptive_fusion.model.checkpoint import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_MODEL,
    CheckpointError,
    load_checkpoint,
)
from adaptive_fusion.policies.registry import POLICIES, make_policy
from adaptive_fusion.ros import filters, transport
from adaptive_fusion.ros.conversions import (
    MessageFormatError,
    camera_info_to_intrinsics,
    numpy_to_image,
)
from adaptive_fusion.ros.diagnostics import diagnostic_array, to_ros
from adaptive_fusion.ros.extrinsics import Extrinsics, tf_in_use
from adaptive_fusion.ros.input_monitor import (
    InputMonitor,
    MonitorConfig,
    event_callbacks,
    fusion_inputs,
    refresh_graph,
)
from adaptive_fusion.ros.inputs import (
    Decoded,
    StampGuard,
    decode,
)
from adaptive_fusion.ros.messages import boxes_to_detections, boxes_to_markers, label_info
from adaptive_fusion.ros.params import (
    ParameterValueError,
    Spec,
    check_initial,
    choices_problem,
    declare_all,
)
from adaptive_fusion.ros.qos import (
    LATCHED_QOS,
    RELIABILITIES,
    RESULTS_QOS,
    SENSOR_QOS,
    sensor_qos,
)
from adaptive_fusion.ros.spin import init_for_main, spin_until_shutdown
from adaptive_fusion.ros.topics import INPUTS, OUTPUTS
from adaptive_fusion.runtime import FusionPipeline, InputError, SensorFrame, blank_frame
from adaptive_fusion.runtime.foxglove_view import (
    FoxgloveNotInstalled,
    FoxgloveServerError,
    FoxgloveView,
)
from adaptive_fusion.runtime.frame import check_depth, check_image
from adaptive_fusion.runtime.latency import LatencyStats
from adaptive_fusion.runtime.liveness import Liveness
from adaptive_fusion.runtime.mailbox import Mailbox
from adaptive_fusion.runtime.overlay import draw_overlay
from adaptive_fusion.runtime.scheduling import STREAM_SCHEDULING
from adaptive_fusion.runtime.status import Counters, fusion_status, modality_status
from adaptive_fusion.runtime.throttle import Throttle
from adaptive_fusion.sync import stamp_ns

TYPES = {"camera": Image, "depth": Image, "lidar": PointCloud2}
SENSOR_INPUTS = ("camera", "camera_info", "depth", "lidar")  # subscribed with sensor-data QoS
# Findings of the monitor that are also per-message skips here: the node's own warning (and
# counter) reports each skip, so the monitor's finding goes to /diagnostics (with its fix) only.
SKIPS_LOGGED_BY_THE_NODE = frozenset({"stamp_future", "stamp_backwards", "size_mismatch"})
LIVENESS_PERIOD_S = 0.05
# Parameters with no default: they describe the robot's own rig, and a wrong guess would give
# wrong 3D boxes or a lidar quality that reads a healthy sensor as degraded.
LIDAR_MODEL = ("lidar_beams", "lidar_elevation_min_deg", "lidar_elevation_max_deg",
               "lidar_azimuth_steps")  # fmt: skip


@dataclass
class Job:
    """One synchronized set waiting for the worker."""

    frame: SensorFrame
    header: Header  # synchronized stamp, lidar frame
    formed: float  # time.perf_counter() when the set formed
    newest_stamp_ns: int


PARAMETERS = (
    # configure-time (read-only once the node exists)
    Spec("autostart", True, "main() configures and activates the node", read_only=True),
    Spec("model_path", "", "checkpoint (.safetensors + .json); '' = the packaged model",
         read_only=True),
    Spec("architecture", "", "architecture JSON of the subnet to run (adaptive-fusion search "
         "--pick-latency); 'full' = every block; '' = the packaged model's recommended subnet "
         "(with model_path '') or every block of model_path's model; the budget counts its "
         "blocks", read_only=True),
    Spec("controller_path", "", "layer controller checkpoint for policy 'controller'; '' = the "
         "packaged controller", read_only=True),
    Spec("gate_path", "", "DynMM gate checkpoint for policy 'dynmm'; '' = the packaged gate",
         read_only=True),
    Spec("device", "cpu", "torch device for inference", read_only=True),
    Spec("threads", 0, "torch intra-op threads (0 = torch's default)", (0, 256), True),
    Spec("stream_scheduling", "auto", "with more than one thread on a CPU: run the modality "
         "streams one_after_another, side_by_side (one per thread; faster where other "
         "processes share the cores), or auto (whichever the frames measure faster)",
         read_only=True, choices=STREAM_SCHEDULING),
    Spec("lidar_frame_id", "lidar", "the lidar's frame: the cloud's expected frame_id, and the "
         "detections' frame when the lidar gives none", read_only=True),
    Spec("use_tf", True, "look the lidar->camera transform up on TF (camera_info's frame_id <- "
         "the cloud's) where tf2_ros is installed; camera_from_lidar, where set, serves until TF "
         "has it", read_only=True),
    Spec("camera_from_lidar", Parameter.Type.DOUBLE_ARRAY,
         "4x4 row-major transform mapping lidar-frame points to the camera optical frame; no "
         "default: required unless TF provides the transform", read_only=True),
    *(spec for name in SENSOR_INPUTS for spec in (
        Spec(f"qos.{name}.reliability", SENSOR_QOS.reliability.name.lower(),
             f"QoS reliability of the {name} subscription (reliable matches reliable "
             "publishers only)", read_only=True, choices=RELIABILITIES),
        Spec(f"qos.{name}.depth", SENSOR_QOS.depth, f"QoS history depth of the {name} "
             "subscription", (1, 1000), True),
    )),
    Spec("lidar_beams", 0, "lidar beam count (its quality measure compares density against the "
         "beam pattern); 0 = not set: required", (0, 512), True),
    Spec("lidar_elevation_min_deg", 0.0, "lowest beam elevation; required", (-90.0, 90.0), True),
    Spec("lidar_elevation_max_deg", 0.0, "highest beam elevation; required", (-90.0, 90.0),
         True),
    Spec("lidar_azimuth_steps", 0, "lidar points per beam and turn; 0 = not set: required",
         (0, 65536), True),
    Spec("lidar_min_range", 1.0, "metres", (0.0, 1000.0), True),
    Spec("lidar_max_range", 80.0, "metres", (0.1, 1000.0), True),
    Spec("diagnostics_period", 1.0, "seconds between /diagnostics messages", (0.1, 60.0), True),
    Spec("log_throttle_s", 5.0, "repeat a warning of one kind at most this often (s)",
         (0.0, 3600.0), True),
    Spec("foxglove_port", 0, "serve the Foxglove live view (image with boxes, cloud, 3D boxes, "
         "TF, allocation) on ws://127.0.0.1:PORT; needs foxglove-sdk; 0 = off", (0, 65535),
         True),
    # runtime
    Spec("compute_budget", 1.0, "fraction of the blocks of the architecture in use; the "
         "compute_budget topic can lower it (the stricter wins)", (0.01, 1.0)),
    Spec("latency_budget_ms", 0.0, "deadline per frame in ms, turned into blocks with the "
         "block costs measured while running (0 = none)", (0.0, 60000.0)),
    Spec("policy", "controller", "layer allocation policy", choices=tuple(POLICIES)),
    Spec("quality_stride", 1, "measure each sensor's quality on one frame in this many, the "
         "sensors in turn, its last score serving in between (quality is the largest fixed cost "
         "of a frame; 1 = every sensor every frame)", (1, 30)),
    Spec("score_threshold", 0.3, "lowest detection score published", (0.0, 1.0)),
    Spec("max_detections", 50, "most detections per frame", (1, 1000)),
    Spec("sync_slop", 0.05, "seconds two stamps may differ within a set", (0.0, 5.0)),
    Spec("sync_queue_size", 10, "messages kept per input for matching", (1, 1000)),
    Spec("sensor_timeout", 0.5, "seconds of silence after which a modality is fused without",
         (0.05, 60.0)),
    Spec("max_future_stamp", 0.5, "seconds a stamp may lead the node's clock", (0.0, 60.0)),
    Spec("silence_timeout", 3.0, "seconds without samples from matched publishers, or without "
         "a synchronized set, before /diagnostics names the likely cause", (0.1, 600.0)),
    Spec("publish_debug_image", True, "draw ~/debug_image while someone subscribes"),
)  # fmt: skip


class FusionNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("fusion_node", **kwargs)
        self.pipeline: FusionPipeline | None = None
        self._pending_policy = None  # built by the parameter check, installed by _apply
        self._active = False
        self._lock = threading.Lock()  # guards last_result and the counters the worker updates
        self._mailbox = Mailbox(self._work, "fusion_worker")
        self._view: FoxgloveView | None = None
        declare_all(self, PARAMETERS)
        check_initial(self, self._validate)  # raises: destroy_node must work from here on
        self.add_on_set_parameters_callback(self._validate)
        self.add_post_set_parameters_callback(self._apply)
        self._reset_state()

    def _reset_state(self) -> None:
        self._intrinsics = None
        self._camera_info_frame = ""
        self._topic_budget: float | None = None
        self._liveness = Liveness(MODALITIES, self._param("sensor_timeout"))
        self._relays: dict[str, filters.SimpleFilter] = {}
        self._sync = None
        future = self.get_parameter("max_future_stamp").value
        self._stamp_guards = {m: StampGuard(future) for m in MODALITIES}
        # the parameter's extrinsic holds for lidar_frame_id only; TF's for any frame
        lidar_frame = None if tf_in_use(self._param("use_tf")) else self._param("lidar_frame_id")
        self.monitor = InputMonitor(
            fusion_inputs(lidar_frame=lidar_frame, qos=self._input_qos()),
            self._monitor_config(),
            self.get_fully_qualified_name(),
        )
        self.counters = Counters()
        self.last_result = None
        self._latency = LatencyStats()
        self._throttle = Throttle(self._param("log_throttle_s"))
        self._mailbox.dropped = 0

    # ------------------------------------------------------------ parameters

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _validate(self, params) -> SetParametersResult:
        """Checks the descriptors cannot express (ranges and types rclpy enforces itself)."""
        problem = choices_problem(PARAMETERS, params)
        if problem:
            return _reject(problem)
        for param in params:
            if param.name == "policy" and self.pipeline is not None:
                try:
                    self._pending_policy = self._make_policy(param.value)
                except (CheckpointError, ValueError) as error:
                    return _reject(f"policy {param.value!r} unavailable: {error}")
            if param.name == "camera_from_lidar":
                T = np.asarray(param.value, dtype=np.float64)
                if (
                    T.shape != (16,)
                    or not np.isfinite(T).all()
                    or not np.allclose(T[12:], [0, 0, 0, 1])
                ):
                    return _reject("camera_from_lidar needs 16 finite values, last row 0 0 0 1")
        return SetParametersResult(successful=True)

    def _apply(self, params) -> None:
        names = {param.name for param in params}
        if self.pipeline is not None and "policy" in names:
            self.pipeline.policy = self._pending_policy
        if self.pipeline is not None and "quality_stride" in names:
            self.pipeline.quality_stride = self._param("quality_stride")
        if "max_future_stamp" in names:
            for guard in self._stamp_guards.values():
                guard.max_future_s = self._param("max_future_stamp")
        if "sensor_timeout" in names:
            self._liveness.timeout_s = self._param("sensor_timeout")
        if "log_throttle_s" in names:
            self._throttle.period_s = self._param("log_throttle_s")
        if names & {"sync_slop", "sync_queue_size"} and self._sync is not None:
            self._rebuild_sync()
        if names & {"sync_slop", "max_future_stamp", "silence_timeout", "log_throttle_s"}:
            self.monitor.config = self._monitor_config()

    def _make_policy(self, name: str, model=None):
        model = model if model is not None else self.pipeline.model
        checkpoint = {"controller": "controller_path", "dynmm": "gate_path"}.get(name)
        return make_policy(name, model, self._param(checkpoint) or None if checkpoint else None)

    def _monitor_config(self) -> MonitorConfig:
        return MonitorConfig(
            slop_s=self._param("sync_slop"),
            silence_s=self._param("silence_timeout"),
            no_set_s=self._param("silence_timeout"),
            max_future_s=self._param("max_future_stamp"),
            throttle_s=self._param("log_throttle_s"),
        )

    def _input_qos(self) -> dict:
        return {
            name: sensor_qos(
                self._param(f"qos.{name}.reliability"), self._param(f"qos.{name}.depth")
            )  # fmt: skip
            for name in SENSOR_INPUTS
        }

    def _extrinsic(self) -> np.ndarray | None:
        """camera_from_lidar as a 4x4 matrix, or None where it is not set."""
        try:
            values = self._param("camera_from_lidar")
        except ParameterUninitializedException:
            return None
        return np.asarray(values, np.float64).reshape(4, 4)

    def _lidar_model(self) -> LidarModel:
        return LidarModel(
            elevations_deg=np.linspace(
                self._param("lidar_elevation_min_deg"),
                self._param("lidar_elevation_max_deg"),
                self._param("lidar_beams"),
            ),  # fmt: skip
            azimuth_steps=self._param("lidar_azimuth_steps"),
            max_range=self._param("lidar_max_range"),
            min_range=self._param("lidar_min_range"),
        )

    def rig_problem(self) -> str | None:
        """Why the node cannot configure with the rig it was given: no lidar->camera
        extrinsic from anywhere, or no lidar beam model."""
        if self._extrinsic() is None and not tf_in_use(self._param("use_tf")):
            looked = ("use_tf is false" if not self._param("use_tf") else
                      "tf2_ros is not installed (it comes with a ROS 2 distribution)")  # fmt: skip
            return (
                f"no lidar->camera extrinsic: set the parameter camera_from_lidar (16 values, "
                f"the row-major 4x4 transform from the lidar frame "
                f"'{self._param('lidar_frame_id')}' to the camera optical frame), or publish TF "
                f"from the cloud's frame to camera_info's frame_id ({looked})"
            )
        beams = self._param("lidar_beams")
        low, high = (self._param(f"lidar_elevation_{end}_deg") for end in ("min", "max"))
        if beams == 0 or self._param("lidar_azimuth_steps") == 0 or (beams > 1 and low >= high):
            return (
                f"no lidar beam model: set {', '.join(LIDAR_MODEL)} to your lidar's (beams, "
                f"lowest and highest elevation with min < max, points per beam and turn); got "
                f"{beams}, {low}, {high}, {self._param('lidar_azimuth_steps')}"
            )
        return None

    # ------------------------------------------------------------ lifecycle

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        problem = self.rig_problem()
        if problem:
            self.get_logger().error(f"cannot configure: {problem}")
            return TransitionCallbackReturn.FAILURE
        path = self._param("model_path") or DEFAULT_MODEL
        try:
            model, _ = load_checkpoint(path)
        except CheckpointError as error:
            self.get_logger().error(f"cannot load the model: {error}")
            return TransitionCallbackReturn.FAILURE
        # The packaged model comes with the subnet the architecture search recommends; a
        # model of the user's runs whole unless its architecture is given.
        default = None if self._param("model_path") else DEFAULT_ARCHITECTURE
        try:
            model.use_architecture(choose_architecture(self._param("architecture"),
                                                       model.config, default))
        except ArchitectureError as error:
            self.get_logger().error(f"cannot use the architecture: {error}")
            return TransitionCallbackReturn.FAILURE
        if self._param("threads") > 0:
            torch.set_num_threads(self._param("threads"))
        try:
            policy = self._make_policy(self._param("policy"), model)
        except (CheckpointError, ValueError) as error:
            self.get_logger().error(f"cannot use policy {self._param('policy')!r}: {error}")
            return TransitionCallbackReturn.FAILURE
        try:
            self._view = self._start_view(model.config)
        except FoxgloveNotInstalled as error:
            self.get_logger().error(f"cannot configure: {error}")
            return TransitionCallbackReturn.FAILURE
        self.pipeline = FusionPipeline(model, policy, self._param("device"),
                                       self._param("stream_scheduling"),
                                       self._param("quality_stride"))
        self.pipeline.warm_up(blank_frame(self._warm_up_frame()))
        self._reset_state()
        self.pub_detections = self.create_lifecycle_publisher(
            Detection3DArray, OUTPUTS["detections"], RESULTS_QOS
        )
        self.pub_markers = self.create_lifecycle_publisher(
            MarkerArray, OUTPUTS["markers"], RESULTS_QOS
        )
        self.pub_debug = self.create_lifecycle_publisher(Image, OUTPUTS["debug_image"],
                                                         SENSOR_QOS)  # fmt: skip
        self.pub_labels = self.create_lifecycle_publisher(LabelInfo, OUTPUTS["label_info"],
                                                          LATCHED_QOS)  # fmt: skip
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, OUTPUTS["diagnostics"], 10)
        qos = self._input_qos()
        self._sensor_subs = {}
        for modality in MODALITIES:
            events = event_callbacks(self.monitor, modality)
            sub = filters.sensor_subscriber(
                self, TYPES[modality], INPUTS[modality], qos[modality], event_callbacks=events
            )
            sub.registerCallback(self._on_sensor, modality)
            self._sensor_subs[modality] = sub
        self._info_sub = self.create_subscription(
            CameraInfo, INPUTS["camera_info"], self._on_camera_info, qos["camera_info"],
            event_callbacks=event_callbacks(self.monitor, "camera_info"),
        )  # fmt: skip
        self._budget_sub = self.create_subscription(
            Float32, INPUTS["compute_budget"], self._on_budget, LATCHED_QOS,
            event_callbacks=event_callbacks(self.monitor, "compute_budget"),
        )  # fmt: skip
        self._extrinsics = Extrinsics(self, self._extrinsic(), self._param("use_tf"))
        self._periodic = [
            self.create_timer(LIVENESS_PERIOD_S, self._update_liveness),
            self.create_timer(self._param("diagnostics_period"), self._publish_diagnostics),
        ]
        self._mailbox.start()
        blocks, config = self.pipeline.costs, model.config
        self.get_logger().info(
            f"configured: {path}, blocks per modality {model.depths} of {config.layers} "
            f"({self._param('architecture') or ('recommended subnet' if default else 'full')}), "
            f"policy {policy.name}; warm-up block {1e3 * blocks.block_s:.2f} ms, "
            f"overhead {1e3 * blocks.overhead_s:.1f} ms; extrinsic from "
            f"{self._extrinsics.source}; transport {transport.rmw_implementation()}, profile "
            f"{transport.profile_in_effect() or 'none'}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _start_view(self, config) -> FoxgloveView | None:
        """The Foxglove live view where foxglove_port asks for one. A server that cannot start
        (a port in use) leaves the detector running without it: the view is for people, the
        detections for the robot."""
        port = self._param("foxglove_port")
        if port == 0:
            return None
        try:
            view = FoxgloveView(port, config.classes, config.modalities)
        except FoxgloveServerError as error:
            self.get_logger().error(f"Foxglove live view off: {error}; detections go on")
            return None
        self.get_logger().info(f"Foxglove live view on {view.url} (layout: "
                               "config/foxglove_layout.json)")  # fmt: skip
        return view

    def _stop_view(self) -> None:
        if self._view is not None:
            self._view.stop()
            self._view = None

    def _warm_up_frame(self) -> SensorFrame:
        config = self.pipeline.config
        w, h = config.image_width, config.image_height
        K = np.array([[w / 2, 0, w / 2], [0, w / 2, h / 2], [0, 0, 1]], np.float64)
        T = self._extrinsic()
        return SensorFrame(None, None, None, Calibration(K, w, h, np.eye(4) if T is None else T),
                           self._lidar_model())  # fmt: skip

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._liveness.start(time.monotonic())
        self._update_liveness()
        self._active = True
        result = super().on_activate(state)
        header = Header(stamp=self.get_clock().now().to_msg())
        classes = self.pipeline.config.classes
        self.pub_labels.publish(label_info(classes, self._param("score_threshold"), header))
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        self._mailbox.clear()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop inference first, so nothing publishes through a destroyed publisher."""
        self._active = False
        self._mailbox.stop()
        self._stop_view()
        super().destroy_node()

    def _release(self) -> None:
        self._active = False
        self._mailbox.stop()
        self._stop_view()
        if self.pipeline is None:
            return
        for timer in self._periodic:
            self.destroy_timer(timer)
        for sub in self._sensor_subs.values():
            self.destroy_subscription(sub.sub)
        self.destroy_subscription(self._info_sub)
        self.destroy_subscription(self._budget_sub)
        for pub in (self.pub_detections, self.pub_markers, self.pub_debug, self.pub_labels):
            self.destroy_lifecycle_publisher(pub)
        self.destroy_publisher(self.pub_diagnostics)
        self.pipeline = None

    # ------------------------------------------------------------ inputs

    def _reject_input(self, source: str, error: InputError) -> None:
        """Count a bad input and warn, at most once per log_throttle_s per (source, kind)."""
        with self._lock:
            self.counters.errors[source][error.kind] += 1
        text = f"skipped {source} input [{error.kind}]: {error}"
        self._warn_throttled((source, error.kind), text)

    def _warn_throttled(self, key: tuple[str, str], text: str) -> None:
        held = self._throttle.allow(key, time.monotonic())
        if held is not None:
            also = f" ({held} more since the last warning)" if held else ""
            self.get_logger().warning(f"{text}{also}")

    def _on_sensor(self, msg, modality: str) -> None:
        now_ns = self.get_clock().now().nanoseconds
        self.monitor.on_message(modality, msg, now_ns)
        if not self._active:
            return
        guard = self._stamp_guards[modality]
        try:
            stamp = guard.check(msg, now_ns)
            array, dropped = decode(modality, msg)
            intrinsics = self._intrinsics
            if intrinsics is not None and modality != "lidar":
                calib = Calibration(intrinsics.K, intrinsics.width, intrinsics.height, np.eye(4))
                (check_image if modality == "camera" else check_depth)(array, calib)
        except InputError as error:
            self._reject_input(modality, error)
            return
        guard.accept(stamp)
        if dropped:
            self._count_dropped_points(modality, dropped, len(array) + dropped)
        self._liveness.arrived(modality, time.monotonic())
        if modality not in self._liveness.live:
            self._update_liveness()
        relay = self._relays.get(modality)
        if relay is not None:
            relay.signalMessage(Decoded(msg.header, array))

    def _count_dropped_points(self, modality: str, dropped: int, total: int) -> None:
        with self._lock:
            self.counters.dropped_points[modality] += dropped
            self.counters.dropped_share_last[modality] = dropped / total
        self._warn_throttled((modality, "nan_points"),
                             f"{modality}: dropped {dropped} of {total} points as NaN or infinite "
                             "(kept the rest; normal for an organised cloud's missing returns)")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.monitor.on_message("camera_info", msg, self.get_clock().now().nanoseconds)
        if not self._active:
            return
        try:
            self._intrinsics = camera_info_to_intrinsics(msg)
        except MessageFormatError as error:
            self._reject_input("camera_info", InputError("malformed", str(error)))
            return
        self._camera_info_frame = msg.header.frame_id

    def _on_budget(self, msg: Float32) -> None:
        self.monitor.on_message("compute_budget", msg, self.get_clock().now().nanoseconds)
        try:
            self._topic_budget = check_fraction(msg.data)
        except BudgetError as error:
            self._reject_input("compute_budget", InputError("invalid_budget", str(error)))

    def budget_in_force(self) -> float:
        """The stricter of the compute_budget parameter and the last valid topic value."""
        budget = self._param("compute_budget")
        return budget if self._topic_budget is None else min(budget, self._topic_budget)

    # ------------------------------------------------------------ liveness and sync

    def _update_liveness(self) -> None:
        if self.pipeline is None:
            return
        change = self._liveness.update(time.monotonic())
        if change is None:
            return
        live = ", ".join(change.live) or "nothing"
        if change.lost and self._active:
            lost = ", ".join(change.lost)
            self.get_logger().warning(f"{lost} silent for {self._param('sensor_timeout')} s: "
                                      f"fusing {live} without {lost}")  # fmt: skip
        if change.back and self._active:
            self.get_logger().info(f"{', '.join(change.back)} back: fusing {live}")
        self._rebuild_sync()

    def _rebuild_sync(self) -> None:
        """A synchronizer over the live modalities only (a dead one would hold every set)."""
        live = self._liveness.live
        self._relays = {m: filters.SimpleFilter() for m in live}
        if not live:
            self._sync = None
            return
        self._sync = filters.ApproximateTimeSynchronizer(
            [self._relays[m] for m in live],
            self._param("sync_queue_size"),
            self._param("sync_slop"),
        )
        self._sync.registerCallback(self._on_set, live)
        filters.observe_drops(self._sync, self._on_sync_drop, live)

    def _on_sync_drop(self, msg, index: int, reason: str, live: tuple[str, ...]) -> None:
        with self._lock:
            self.counters.sync_drops[live[index]][reason] += 1

    def _on_set(self, *args) -> None:
        self.monitor.on_set_emitted()
        *decoded, live = args
        intrinsics = self._intrinsics
        if intrinsics is None:
            with self._lock:
                self.counters.sets_before_camera_info += 1
            self._warn_throttled(("set", "waiting_for_camera_info"),
                                 "skipping synchronized sets until a valid camera_info arrives")
            return
        arrays = dict(zip(live, decoded, strict=True))
        stamps = {m: d.header.stamp for m, d in arrays.items()}
        stamp_source = next(m for m in ("lidar", "camera", "depth") if m in arrays)
        frame_id = arrays["lidar"].header.frame_id if "lidar" in arrays else ""
        header = Header(stamp=stamps[stamp_source],
                        frame_id=frame_id or self._param("lidar_frame_id"))  # fmt: skip
        T_cam_lidar, problem = self._extrinsics.camera_from_lidar(self._camera_info_frame,
                                                                  header.frame_id)  # fmt: skip
        if T_cam_lidar is None:
            self._reject_input("set", InputError("no_extrinsic", problem))
            return
        if problem:
            self._warn_throttled(("set", "extrinsic_from_parameter"),
                                 f"{problem}; using camera_from_lidar")  # fmt: skip
        calib = Calibration(intrinsics.K, intrinsics.width, intrinsics.height, T_cam_lidar)
        frame = SensorFrame(
            image=arrays["camera"].array if "camera" in arrays else None,
            depth=arrays["depth"].array if "depth" in arrays else None,
            points=arrays["lidar"].array if "lidar" in arrays else None,
            calib=calib,
            lidar=self._lidar_model(),
        )
        newest = max(s.sec * 10**9 + s.nanosec for s in stamps.values())
        self._mailbox.put(Job(frame, header, time.perf_counter(), newest))

    # ------------------------------------------------------------ worker

    def _work(self, job: Job) -> None:
        try:
            self._process(job)
        except InputError as error:
            self._reject_input("set", error)
        except Exception as error:  # noqa: BLE001 - one bad frame must not stop the node
            if self.context.ok():  # else shutting down: publishing can no longer work
                self._reject_input("set", InputError("inference_error", repr(error)))

    def _process(self, job: Job) -> None:
        pipeline = self.pipeline
        result = pipeline.run(
            job.frame,
            fraction=self.budget_in_force(),
            latency_ms=self._param("latency_budget_ms"),
            score_threshold=self._param("score_threshold"),
            max_detections=self._param("max_detections"),
        )
        classes = pipeline.config.classes
        self.pub_detections.publish(boxes_to_detections(result.boxes, job.header))
        self.pub_markers.publish(boxes_to_markers(result.boxes, job.header, classes))
        debug = (self._param("publish_debug_image")
                 and self.pub_debug.get_subscription_count() > 0)
        picture = None  # the overlay, drawn once for whoever watches it
        if job.frame.image is not None and (
                debug or (self._view is not None and self._view.wants_image())):
            picture = draw_overlay(job.frame.image, result.boxes, job.frame.calib,
                                   result.layers(pipeline.config.modalities), result.quality,
                                   pipeline.config.layers, classes)  # fmt: skip
        if debug and picture is not None:
            header = Header(stamp=job.header.stamp, frame_id=self._camera_info_frame)
            self.pub_debug.publish(numpy_to_image(picture, "rgb8", header))
        if self._view is not None:
            self._view.publish(job.frame, result, picture, stamp_ns(job), job.header.frame_id,
                               self._camera_info_frame, self.budget_in_force())  # fmt: skip
        pipeline_ms = result.timings_ms["total"]
        host_ms = 1e3 * (time.perf_counter() - job.formed) - pipeline_ms
        age_ms = (self.get_clock().now().nanoseconds - job.newest_stamp_ns) * 1e-6
        self._latency.add(pipeline_ms, host_ms, age_ms)
        with self._lock:
            self.counters.frames += 1
            self.last_result = result

    # ------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            return
        with self._lock:
            result = self.last_result
            statuses = [fusion_status(
                pipeline, result, self.counters, self._latency.summary(),
                active=self._active, live=self._liveness.live, stale_sets=self._mailbox.dropped,
                budget={
                    "budget_in_force": self.budget_in_force(),
                    "compute_budget_param": self._param("compute_budget"),
                    "compute_budget_topic": ("none" if self._topic_budget is None
                                             else self._topic_budget),
                    "latency_budget_ms": self._param("latency_budget_ms"),
                },
            )] + [modality_status(m, pipeline, result, self.counters,
                                  live=m in self._liveness.live,
                                  received=self.monitor.states[m].received)
                  for m in MODALITIES]  # fmt: skip
        name = self.get_fully_qualified_name()
        messages = [to_ros(s, f"{name}: {s.name}") for s in statuses] + self._diagnose_inputs()
        self.pub_diagnostics.publish(diagnostic_array(self.get_clock().now().to_msg(), messages))

    def _diagnose_inputs(self) -> list:
        """The monitor's status per input and for the synchronizer; its due findings logged."""
        refresh_graph(self.monitor, self)
        report = self.monitor.check(self.get_clock().now().nanoseconds)
        for finding in report.due:  # throttled by the monitor, per input and kind
            if finding.kind not in SKIPS_LOGGED_BY_THE_NODE:
                self.get_logger().warning(finding.line())
        return report.statuses


def _reject(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def main(args=None) -> int:
    init_for_main(args)
    try:
        node = FusionNode()
    except ParameterValueError as error:
        print(f"fusion_node: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    if node.get_parameter("autostart").value:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.destroy_node()
            rclpy.try_shutdown()
            return 1
        node.trigger_activate()
    return spin_until_shutdown(node)


if __name__ == "__main__":
    sys.exit(main())
