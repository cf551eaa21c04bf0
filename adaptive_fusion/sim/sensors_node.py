"""sim_sensors: the synthetic world as a robot's sensors over ROS.

Publishes camera/image_raw (rgb8) + camera/camera_info + depth/image_raw (32FC1, registered to
the camera, same rate: an RGB-D camera) at `camera_rate`, lidar/points (x, y, z, intensity) at
`lidar_rate`, and ground_truth (Detection3DArray, lidar frame) with every camera frame, all with
sensor-data QoS. Objects move smoothly between frames. Each stamp is the capture time, earlier
than the publish time by a random driver latency of up to `jitter_ms`, so the streams are never
aligned exactly (as with real drivers). Per-modality corruption and severity, and whether each
sensor publishes at all, are parameters that can change at any time; a scenario file scripts
them (and the compute budget) over time for repeatable runs, from the moment a subscriber
first listens to a sensor.
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float32, Header
from vision_msgs.msg import Detection3DArray

from adaptive_fusion.core.frames import MODALITIES
from adaptive_fusion.ros.conversions import numpy_to_image, numpy_to_pointcloud2
from adaptive_fusion.ros.messages import boxes_to_detections, objects_to_boxes
from adaptive_fusion.ros.params import (
    ParameterValueError,
    Spec,
    check_initial,
    choices_problem,
    declare_all,
)
from adaptive_fusion.ros.qos import LATCHED_QOS, RESULTS_QOS, SENSOR_QOS
from adaptive_fusion.ros.spin import init_for_main, spin_until_shutdown
from adaptive_fusion.ros.topics import GROUND_TRUTH, INPUTS
from adaptive_fusion.sim import World, WorldConfig
from adaptive_fusion.sim.load import start_busy_core
from adaptive_fusion.sim.moving_world import CLEAN, MovingWorld, corruption_kinds
from adaptive_fusion.sim.scenario import Scenario, ScenarioError

SCENARIO_TICK_S = 0.05
PARAMETERS = (
    Spec("camera_rate", 10.0, "Hz of camera, camera_info, depth and ground truth",
         (0.5, 60.0), True),
    Spec("lidar_rate", 10.0, "Hz of lidar sweeps", (0.5, 30.0), True),
    Spec("jitter_ms", 3.0, "largest driver latency: stamps precede publishing by "
         "U[0, jitter_ms]", (0.0, 100.0)),
    Spec("seed", 0, "scene seed (same seed, same scene and motion)", (0, 2**31 - 1), True),
    Spec("motion_scale", 1.0, "how far objects travel (0 = a still scene)", (0.0, 5.0), True),
    Spec("camera_frame_id", "camera_optical_frame", "frame of camera, depth, camera_info",
         read_only=True),
    Spec("lidar_frame_id", "lidar", "frame of the cloud and the ground truth", read_only=True),
    Spec("scenario", "", "YAML file of timed events (corrupt, budget, kill, revive, "
         "latency_budget, busy_cores); '' none", read_only=True),
    Spec("fusion_node", "fusion_node", "node whose latency_budget_ms a scenario's latency_budget "
         "sets", read_only=True),
    *(
        spec
        for m in MODALITIES
        for spec in (
            Spec(f"{m}.corruption", CLEAN, f"corruption of the {m} ({CLEAN} = clean)",
                 choices=corruption_kinds(m)),
            Spec(f"{m}.severity", 0.0, f"{m} corruption severity", (0.0, 1.0)),
            Spec(f"{m}.enabled", True, f"whether the {m} publishes (false: it stops)"),
        )
    ),
)  # fmt: skip


def camera_info_msg(world: World, header: Header) -> CameraInfo:
    calib = world.calib
    K = calib.K
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(
        header=header,
        width=calib.width,
        height=calib.height,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=K.reshape(-1).tolist(),
        r=np.eye(3).reshape(-1).tolist(),
        p=P.reshape(-1).tolist(),
    )


BUSY_LIMIT_S = 600.0  # a busy process ends by itself even if sim_sensors is killed


class SimSensors(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_sensors", **kwargs)
        self.busy: list = []  # a scenario's busy_cores processes; first, as destroy_node ends them
        declare_all(self, PARAMETERS)
        param = self._param
        self.camera_rate, self.lidar_rate = param("camera_rate"), param("lidar_rate")
        self.camera_frame, self.lidar_frame = param("camera_frame_id"), param("lidar_frame_id")
        check_initial(self, self._validate)
        self.add_on_set_parameters_callback(self._validate)

        seed = param("seed")
        self.world = MovingWorld(World(WorldConfig()), seed, param("motion_scale"))
        self.rng = np.random.default_rng([seed, 99])
        self.start = self.get_clock().now()
        self.camera_frames = self.lidar_frames = 0
        self.pub_image = self.create_publisher(Image, INPUTS["camera"], SENSOR_QOS)
        self.pub_info = self.create_publisher(CameraInfo, INPUTS["camera_info"], SENSOR_QOS)
        self.pub_depth = self.create_publisher(Image, INPUTS["depth"], SENSOR_QOS)
        self.pub_points = self.create_publisher(PointCloud2, INPUTS["lidar"], SENSOR_QOS)
        self.pub_truth = self.create_publisher(Detection3DArray, GROUND_TRUTH, RESULTS_QOS)
        self.pub_budget = self.create_publisher(Float32, INPUTS["compute_budget"], LATCHED_QOS)
        self.create_timer(1.0 / self.camera_rate, self._camera_tick)
        self.create_timer(1.0 / self.lidar_rate, self._lidar_tick)
        self.scenario = Scenario.load(param("scenario")) if param("scenario") else None
        self.scenario_start = None
        if self.scenario is not None:
            # for its latency_budget events: fusion_node's parameter service
            self.fusion_parameters = AsyncParameterClient(self, param("fusion_node"))
            # when the scenario's clock started (latched), so that others can align to it
            self.pub_scenario_start = self.create_publisher(Header, "~/scenario_start",
                                                            LATCHED_QOS)  # fmt: skip
            self.create_timer(SCENARIO_TICK_S, self._scenario_tick)

    # ------------------------------------------------------------ parameters

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        problem = choices_problem(PARAMETERS, params)
        return SetParametersResult(successful=problem is None, reason=problem or "")

    def corruption(self) -> dict[str, tuple[str, float]]:
        return {
            m: (
                self.get_parameter(f"{m}.corruption").value,
                self.get_parameter(f"{m}.severity").value,
            )
            for m in MODALITIES
        }

    def _enabled(self, modality: str) -> bool:
        return self._param(f"{modality}.enabled")

    # ------------------------------------------------------------ sensors

    def _stamps(self, count: int):
        """Scene time of a capture now, and `count` stamps of it, each earlier than now by its
        own driver latency (devices sharing a capture are stamped a little apart)."""
        now = self.get_clock().now().nanoseconds
        jitter_ms = self._param("jitter_ms")
        stamps = []
        for _ in range(count):
            stamp = now - int(self.rng.uniform(0, jitter_ms) * 1e6)
            stamps.append(Time(sec=stamp // 10**9, nanosec=stamp % 10**9))
        return (now - self.start.nanoseconds) * 1e-9, stamps

    def _camera_tick(self) -> None:
        self.camera_frames += 1
        t, (camera_stamp, depth_stamp) = self._stamps(2)
        capture = self.world.camera(t, self.camera_frames, self.corruption())
        header = Header(stamp=camera_stamp, frame_id=self.camera_frame)
        if self._enabled("camera"):
            self.pub_image.publish(numpy_to_image(capture.image, "rgb8", header))
            self.pub_info.publish(camera_info_msg(self.world.world, header))
        if self._enabled("depth"):
            depth_header = Header(stamp=depth_stamp, frame_id=self.camera_frame)
            self.pub_depth.publish(numpy_to_image(capture.depth, "32FC1", depth_header))
        truth = boxes_to_detections(
            objects_to_boxes(capture.objects), Header(stamp=camera_stamp, frame_id=self.lidar_frame)
        )
        self.pub_truth.publish(truth)

    def _lidar_tick(self) -> None:
        if not self._enabled("lidar"):
            return
        self.lidar_frames += 1
        t, (stamp,) = self._stamps(1)
        points = self.world.lidar(t, self.lidar_frames, self.corruption())
        header = Header(stamp=stamp, frame_id=self.lidar_frame)
        self.pub_points.publish(numpy_to_pointcloud2(points, ("x", "y", "z", "intensity"), header))

    # ------------------------------------------------------------ scenario

    def _scenario_tick(self) -> None:
        """Play the events due; the scenario's clock starts once something subscribes to a
        sensor, so that discovery time does not eat into the first event."""
        now = self.get_clock().now()
        if self.scenario_start is None:
            sensors = (self.pub_image, self.pub_depth, self.pub_points)
            if not any(pub.get_subscription_count() for pub in sensors):
                return
            self.scenario_start = now
            self.pub_scenario_start.publish(Header(stamp=now.to_msg(), frame_id="scenario"))
            self.get_logger().info("a subscriber is listening: the scenario starts")
        elapsed = (now - self.scenario_start).nanoseconds * 1e-9
        for event in self.scenario.due(elapsed):
            self.get_logger().info(f"scenario t={event.at:.1f}s: {event}")
            if event.action == "budget":
                self.pub_budget.publish(Float32(data=float(event.value)))
            elif event.action == "latency_budget":
                self._set_latency_budget(event.value)
            elif event.action == "busy_cores":
                self._keep_cores_busy(int(event.value))
            elif event.action in ("kill", "revive"):
                self.set_parameters(
                    [Parameter(f"{event.modality}.enabled", value=event.action == "revive")]
                )
            else:
                self.set_parameters(
                    [
                        Parameter(f"{event.modality}.corruption", value=event.kind),
                        Parameter(f"{event.modality}.severity", value=event.value),
                    ]
                )


    def _set_latency_budget(self, ms: float) -> None:
        """Ask fusion_node (the `fusion_node` parameter names it) for this deadline; a refusal
        or a missing node is logged, the scenario goes on."""
        name = self._param("fusion_node")
        if not self.fusion_parameters.services_are_ready():
            self.get_logger().warning(f"scenario: no parameter service of {name}; "
                                      f"latency_budget {ms:g} ms not set")
            return
        future = self.fusion_parameters.set_parameters(
            [Parameter("latency_budget_ms", value=float(ms))])
        future.add_done_callback(lambda done: self._report_set(done, name, ms))

    def _report_set(self, future, name: str, ms: float) -> None:
        result = future.result()
        refused = [r.reason for r in (result.results if result else []) if not r.successful]
        if result is None or refused:
            self.get_logger().warning(f"scenario: {name} refused latency_budget_ms {ms:g}: "
                                      f"{'; '.join(refused) or 'no answer'}")

    def _keep_cores_busy(self, cores: int) -> None:
        """Exactly `cores` other processes spinning, each for at most BUSY_LIMIT_S."""
        while len(self.busy) > cores:
            process = self.busy.pop()
            process.terminate()
            process.join()
        while len(self.busy) < cores:
            self.busy.append(start_busy_core(BUSY_LIMIT_S))

    def destroy_node(self) -> None:
        self._keep_cores_busy(0)
        super().destroy_node()


def main(args=None) -> int:
    init_for_main(args)
    try:
        node = SimSensors()
    except (ScenarioError, ParameterValueError) as error:
        print(f"sim_sensors: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    return spin_until_shutdown(node)


if __name__ == "__main__":
    sys.exit(main())
