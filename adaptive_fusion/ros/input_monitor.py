"""Why an input is silent, and what to do about it: per input topic, the causes users meet as
"the node publishes nothing", each as a Finding that names the fix.

- incompatible_qos: a publisher whose reliability/durability the subscription cannot match;
- no_publisher / no_samples / samples_lost: nobody publishes, or publishers are matched but
  samples never arrive or are lost in transit (large messages over the default transport);
- no_sync: every input arrives but no synchronized set forms (stamp offsets vs the slop);
- clock_offset / stamp_future / stamp_backwards: stamps far from this node's clock (sim time vs
  wall time), ahead of it, or going back (a looping bag, a restarted driver);
- frame_mismatch / size_mismatch: frame_ids or image sizes that disagree with camera_info or
  the configured frames.

`InputMonitor` is fed by its owner (fusion_node, the doctor command): `on_message` for every
message before any rejection, the QoS events and graph queries through the thin rclpy adapters
at the end of this module, `on_set_emitted` per synchronized set; `check(now)` returns the
findings, one DiagnosticStatus per input and the log lines due (throttled per input and kind).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus

from adaptive_fusion.ros import transport
from adaptive_fusion.ros.diagnostics import ERROR, OK, WARN, status
from adaptive_fusion.ros.topics import INPUTS
from adaptive_fusion.runtime.throttle import Throttle

IMAGE, DEPTH, CLOUD, INFO, OTHER = "image", "depth", "cloud", "info", "other"
BEST_EFFORT, RELIABLE = "best_effort", "reliable"
VOLATILE, TRANSIENT_LOCAL = "volatile", "transient_local"
WINDOW = 60  # recent messages kept per input for rates, sizes and stamp statistics
SIM_TIME_BEFORE_NS = 10**9 * 86400 * 365  # a clock reading under a year since 1970: sim time


@dataclass(frozen=True)
class InputSpec:
    """One input topic as the subscribing node sees it."""

    name: str
    topic: str
    kind: str = OTHER  # IMAGE, DEPTH, CLOUD, INFO or OTHER
    reliability: str = BEST_EFFORT  # the subscription's QoS
    durability: str = VOLATILE
    required: bool = True  # silence is an error (an optional input may stay quiet)
    synchronized: bool = False  # one of the synchronizer's inputs
    expected_frame: str | None = None  # configured frame_id (e.g. the extrinsics' lidar frame)


@dataclass
class MonitorConfig:
    slop_s: float = 0.05  # the synchronizer's
    silence_s: float = 3.0  # matched publishers but no sample this long: no_samples
    no_set_s: float = 3.0  # every input arriving but no set this long: no_sync
    clock_offset_s: float = 2.0  # median |now - stamp| beyond this: clock_offset
    max_future_s: float = 0.5  # a stamp further ahead of the clock: stamp_future
    lost_fraction: float = 0.2  # share of samples lost in transit beyond this: samples_lost
    throttle_s: float = 5.0  # one log line per input and kind at most this often


@dataclass(frozen=True)
class PublisherInfo:
    node: str
    reliability: str
    durability: str
    history: str
    depth: int

    def describe(self) -> str:
        """Node and QoS; DDS does not send history to remote readers, so it may be unknown."""
        history = "" if self.history == "unknown" else f", {self.history} {self.depth}"
        return f"{self.node} ({self.reliability}, {self.durability}{history})"


@dataclass(frozen=True)
class Finding:
    input: str
    kind: str
    level: bytes
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.input}: [{self.kind}] {self.message}. Fix: {self.fix}"


@dataclass
class Report:
    findings: list[Finding]
    statuses: list[DiagnosticStatus]
    due: list[Finding]  # findings due for logging now (throttled)

    @property
    def log_lines(self) -> list[str]:
        return [finding.line() for finding in self.due]

    @property
    def worst(self) -> bytes:
        return max((f.level for f in self.findings), default=OK)


@dataclass
class _InputState:
    spec: InputSpec
    arrivals: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # monotonic s
    stamps: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # ns
    lags: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # s, vs the reference
    ages: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # now - stamp, s
    sizes: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # bytes
    received: int = 0
    first_arrival: float | None = None
    last_stamp: int | None = None
    last_in_time: int | None = None  # the newest stamp not in the future: backwards reference
    backwards: int = 0
    last_jump_s: float = 0.0
    future: int = 0
    most_ahead_s: float = 0.0
    frame_id: str | None = None
    image_size: tuple[int, int] | None = None  # (width, height)
    matched: int | None = None  # from the matched event; None: not reported
    matched_since: float | None = None
    lost: int = 0
    lost_at_last_arrival: int = 0  # losses reported by the last sample: later ones mean transit
    window_start: tuple[int, int] = (0, 0)  # (lost, received) at the previous check
    incompatible: int = 0
    incompatible_policy: str = ""
    publishers: list[PublisherInfo] = field(default_factory=list)


class InputMonitor:
    def __init__(
        self,
        specs: list[InputSpec],
        config: MonitorConfig | None = None,
        node_name: str = "",
        mono=time.monotonic,
    ):
        self.config = config or MonitorConfig()
        self.node_name = node_name
        self._mono = mono
        self.states = {spec.name: _InputState(spec) for spec in specs}
        self.started = mono()
        self.last_set: float | None = None
        self.sets = 0
        self.camera_info: tuple[str, int, int] | None = None  # frame_id, width, height
        self._throttle = Throttle(self.config.throttle_s)

    # ------------------------------------------------------------ feeding

    def on_message(self, name: str, msg, now_ns: int) -> None:
        """Every message of input `name` (Image, PointCloud2, CameraInfo, Float32...), before
        its owner accepts or rejects it; `now_ns` is the owner's clock (sim or wall time: what
        its stamps are compared against)."""
        state = self.states[name]
        state.received += 1
        state.lost_at_last_arrival = state.lost
        state.arrivals.append(self._mono())
        if state.first_arrival is None:
            state.first_arrival = state.arrivals[-1]
        data = getattr(msg, "data", None)
        state.sizes.append(len(data) if hasattr(data, "__len__") else 0)
        header = getattr(msg, "header", None)
        if header is not None:
            self._on_header(state, header, now_ns)
        if state.spec.kind in (IMAGE, DEPTH):
            state.image_size = (msg.width, msg.height)
        elif state.spec.kind == INFO:
            self.camera_info = (header.frame_id, msg.width, msg.height)

    def _on_header(self, state: _InputState, header, now_ns: int) -> None:
        stamp = header.stamp.sec * 10**9 + header.stamp.nanosec
        # a stamp in the future is no reference: the stamps after it are not going back
        if state.last_in_time is not None and stamp < state.last_in_time:
            state.backwards += 1
            state.last_jump_s = (state.last_in_time - stamp) / 1e9
        state.last_stamp = stamp
        state.stamps.append(stamp)
        reference = self._reference()
        if state.spec.synchronized and reference is not None and reference.last_stamp is not None:
            state.lags.append((stamp - reference.last_stamp) / 1e9)
        age_s = (now_ns - stamp) / 1e9
        state.ages.append(age_s)
        if -age_s > self.config.max_future_s:
            state.future += 1
            state.most_ahead_s = max(state.most_ahead_s, -age_s)
        else:
            state.last_in_time = stamp
        state.frame_id = header.frame_id

    def on_set_emitted(self) -> None:
        self.sets += 1
        self.last_set = self._mono()

    def on_matched(self, name: str, current_count: int) -> None:
        state = self.states[name]
        if current_count > 0 and not state.matched:
            state.matched_since = self._mono()
        state.matched = current_count

    def on_message_lost(self, name: str, total_count: int) -> None:
        self.states[name].lost = total_count

    def on_incompatible_qos(self, name: str, policy: str, total_count: int) -> None:
        state = self.states[name]
        state.incompatible, state.incompatible_policy = total_count, policy

    def on_publishers(self, name: str, publishers: list[PublisherInfo]) -> None:
        self.states[name].publishers = publishers

    # ------------------------------------------------------------ statistics

    def rate_hz(self, name: str) -> float:
        arrivals = self.states[name].arrivals
        if len(arrivals) < 2 or arrivals[-1] == arrivals[0]:
            return 0.0
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    def median_age_s(self, name: str) -> float:
        ages = self.states[name].ages
        return float(np.median(ages)) if ages else math.nan

    def _reference(self) -> _InputState | None:
        """The first synchronized input: stamp offsets are given against it."""
        return next((s for s in self.states.values() if s.spec.synchronized), None)

    def offsets_s(self) -> dict[str, float]:
        """Per synchronized input, the median of (its stamp - the reference's newest stamp)
        when its messages arrive: how far its stamps lag (-) or lead the reference's."""
        return {
            s.spec.name: float(np.median(s.lags))
            for s in self.states.values()
            if s.spec.synchronized and s.lags
        }

    def gaps_s(self) -> dict[str, float]:
        """Per synchronized input, the median distance from its stamps to the nearest stamp
        of the reference: what the synchronizer compares with the slop. (Equal to the offset's
        size only when the offset is under half a period.)"""
        reference = self._reference()
        if reference is None or not reference.stamps:
            return {}
        ref = np.sort(np.array(reference.stamps, dtype=np.int64))
        gaps = {}
        for state in self.states.values():
            if state.spec.synchronized and state.stamps and state is not reference:
                stamps = np.array(state.stamps, dtype=np.int64)
                right = np.clip(np.searchsorted(ref, stamps), 0, len(ref) - 1)
                left = np.clip(right - 1, 0, len(ref) - 1)
                nearest = np.minimum(np.abs(stamps - ref[left]), np.abs(stamps - ref[right]))
                gaps[state.spec.name] = float(np.median(nearest)) / 1e9
        return gaps

    def incompatible_publishers(self, name: str) -> list[tuple[PublisherInfo, str]]:
        """Publishers on the graph whose offered QoS this input's subscription cannot match,
        with the policy that fails (reliability, durability)."""
        spec = self.states[name].spec
        found = []
        for pub in self.states[name].publishers:
            if spec.reliability == RELIABLE and pub.reliability == BEST_EFFORT:
                found.append((pub, "reliability"))
            elif spec.durability == TRANSIENT_LOCAL and pub.durability == VOLATILE:
                found.append((pub, "durability"))
        return found

    # ------------------------------------------------------------ checks

    def check(self, now_ns: int) -> Report:
        now = self._mono()
        findings = []
        for state in self.states.values():
            findings += self._silence(state, now)
            findings += self._stamps(state, now_ns, now)
            findings += self._frames(state)
        findings += self._sync(now)
        statuses = [self._status(state, findings) for state in self.states.values()]
        if sum(state.spec.synchronized for state in self.states.values()) >= 2:
            statuses.append(self._sync_status(findings))
        for state in self.states.values():
            state.window_start = (state.lost, state.received)
        return Report(findings, statuses, self._due(findings, now))

    def _recent(self, state: _InputState, now: float) -> bool:
        return bool(state.arrivals) and now - state.arrivals[-1] < self.config.silence_s

    def _silence(self, state: _InputState, now: float) -> list[Finding]:
        spec, config = state.spec, self.config
        bad_qos = self.incompatible_publishers(spec.name)
        if state.incompatible or bad_qos:
            policy = bad_qos[0][1] if bad_qos else state.incompatible_policy.lower()
            offered = ", ".join(pub.describe() for pub, _ in bad_qos) or "a publisher"
            wanted = f"{spec.reliability}, {spec.durability}"
            fix = (
                "publish reliable (a best-effort subscriber takes both)"
                if policy == "reliability"
                else "publish with transient_local durability (latched), or subscribe volatile"
            )
            return [
                Finding(
                    spec.name,
                    "incompatible_qos",
                    ERROR,
                    f"{offered} on {spec.topic} offers QoS this subscription ({wanted}) "
                    f"cannot match on {policy}: none of its messages are delivered",
                    fix,
                )
            ]
        if not spec.required:  # e.g. a budget topic: quiet until someone sets a budget
            return []
        if self._recent(state, now):
            return self._losses(state)
        quiet_since = state.arrivals[-1] if state.arrivals else self.started
        if now - quiet_since < config.silence_s:
            return []
        matched = state.matched if state.matched is not None else len(state.publishers)
        silent = now - quiet_since
        if not matched and state.received:
            return [
                Finding(
                    spec.name,
                    "publisher_left",
                    ERROR,
                    f"the publisher of {spec.topic} left (no publisher now; the last of "
                    f"{state.received} samples came {silent:.1f} s ago)",
                    "restart the driver, or see why it exited (its log)",
                )
            ]
        if not matched:
            return [
                Finding(
                    spec.name,
                    "no_publisher",
                    ERROR,
                    f"nobody publishes {spec.topic} (silent {now - quiet_since:.1f} s)",
                    "start the driver, or check the topic name and remapping, the "
                    "namespace, ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE",
                )
            ]
        if state.received and state.lost == state.lost_at_last_arrival:
            # samples flowed, then stopped with the publisher still there and nothing lost on
            # the way: the sender stopped, the transport is not the cause
            return [
                Finding(
                    spec.name,
                    "publisher_stopped",
                    ERROR,
                    f"{matched} publisher(s) still matched on {spec.topic}, but the last of "
                    f"{state.received} samples came {silent:.1f} s ago and none was reported "
                    "lost: the publisher stopped sending",
                    "check the driver: stalled, paused, or waiting for its device",
                )
            ]
        since = max(quiet_since, state.matched_since or quiet_since)
        what = "no sample arrived" if not state.received else "no sample since the last"
        lost = f", {state.lost} reported lost in transit" if state.lost else ""
        return [
            Finding(
                spec.name,
                "no_samples",
                ERROR,
                f"{matched} publisher(s) matched on {spec.topic} for {now - since:.1f} s "
                f"but {what}{lost}",
                transport.large_message_fix(),
            )
        ]

    def _losses(self, state: _InputState) -> list[Finding]:
        """Samples lost since the previous check against those delivered."""
        lost = state.lost - state.window_start[0]
        delivered = state.received - state.window_start[1]
        if lost <= self.config.lost_fraction * (lost + delivered):
            return []
        return [
            Finding(
                state.spec.name,
                "samples_lost",
                ERROR if lost > delivered else WARN,
                f"{lost} samples lost in transit on {state.spec.topic} against "
                f"{delivered} delivered",
                transport.large_message_fix(),
            )
        ]

    def _stamps(self, state: _InputState, now_ns: int, now: float) -> list[Finding]:
        spec, config = state.spec, self.config
        if spec.kind == OTHER or not self._recent(state, now):
            return []
        findings = []
        age = self.median_age_s(spec.name)
        if abs(age) > config.clock_offset_s:
            cause, fix = _clock_cause(now_ns, state.stamps[-1])
            side = "behind" if age > 0 else "ahead of"
            message = f"stamps are {abs(age):.3g} s {side} this node's clock (median): {cause}"
            findings.append(Finding(spec.name, "clock_offset", ERROR, message, fix))
        elif state.future:
            message = (
                f"{state.future} stamps ahead of this node's clock by up to "
                f"{state.most_ahead_s:.3g} s (over {config.max_future_s} s are dropped)"
            )
            fix = "synchronize the machines' clocks (chrony, PTP) or fix the driver's stamping"
            findings.append(Finding(spec.name, "stamp_future", WARN, message, fix))
        if state.backwards:
            message = (
                f"stamps went backwards {state.backwards} time(s), last by "
                f"{state.last_jump_s:.3g} s (a looping bag or a restarted driver): older "
                "messages are dropped"
            )
            fix = "play bags without --loop, or restart this node after the time jump"
            findings.append(Finding(spec.name, "stamp_backwards", WARN, message, fix))
        return findings

    def _frames(self, state: _InputState) -> list[Finding]:
        spec, frame = state.spec, state.frame_id
        if frame is None or spec.kind in (INFO, OTHER):
            return []
        findings = []
        if not frame:
            message = f"{spec.topic} has an empty header.frame_id"
            fix = "set the driver's frame_id parameter"
            findings.append(Finding(spec.name, "frame_mismatch", WARN, message, fix))
        elif spec.expected_frame and frame != spec.expected_frame:
            message = (
                f"frame_id {frame!r} is not {spec.expected_frame!r}, the frame the extrinsics "
                "are configured for"
            )
            fix = f"configure this node's frames and camera_from_lidar for {frame!r}"
            findings.append(Finding(spec.name, "frame_mismatch", WARN, message, fix))
        if spec.kind not in (IMAGE, DEPTH) or self.camera_info is None:
            return findings
        info_frame, width, height = self.camera_info
        if frame and info_frame and frame != info_frame:
            message = f"frame_id {frame!r} differs from camera_info's {info_frame!r}"
            fix = "publish the image and camera_info in one frame (depth registered to the camera)"
            findings.append(Finding(spec.name, "frame_mismatch", WARN, message, fix))
        if state.image_size is not None and state.image_size != (width, height):
            w, h = state.image_size
            message = f"image is {w}x{h} but camera_info says {width}x{height}: frames are rejected"
            fix = "publish the camera_info of this resolution (depth registered to the camera)"
            findings.append(Finding(spec.name, "size_mismatch", ERROR, message, fix))
        return findings

    def _sync(self, now: float) -> list[Finding]:
        inputs = [s for s in self.states.values() if s.spec.synchronized]
        if len(inputs) < 2 or not all(self._recent(s, now) for s in inputs):
            return []
        since = max(self.last_set or self.started, *(s.first_arrival for s in inputs))
        if now - since < self.config.no_set_s:
            return []
        offsets, gaps = self.offsets_s(), self.gaps_s()
        reference = inputs[0].spec.name
        detail = ", ".join(
            f"{name} {offsets.get(name, math.nan):+.3f} s (nearest-stamp gap {gap:.3f} s)"
            for name, gap in gaps.items()
        )
        widest = max(gaps.values(), default=0.0)
        if widest > self.config.slop_s:
            fix = (
                "stamp every sensor at capture time with one clock (driver time source, PTP); "
                f"a sync_slop above {widest:.3f} s would pair them as they are"
            )
        else:
            fix = "raise sync_queue_size (stamps are within the slop; rates may differ a lot)"
        message = (
            f"no synchronized set for {now - since:.1f} s although "
            f"{', '.join(s.spec.name for s in inputs)} arrive: median stamp offset to "
            f"{reference}: {detail}; sync_slop {self.config.slop_s} s"
        )
        return [Finding("sync", "no_sync", ERROR, message, fix)]

    # ------------------------------------------------------------ output

    def _status(self, state: _InputState, findings: list[Finding]) -> DiagnosticStatus:
        spec = state.spec
        own = [f for f in findings if f.input == spec.name]
        level = max((f.level for f in own), default=OK)
        rate = self.rate_hz(spec.name)
        message = "; ".join(f"[{f.kind}] {f.message}" for f in own) or f"ok, {rate:.1f} Hz"
        values = {
            "topic": spec.topic,
            "received": state.received,
            "rate_hz": rate,
            "size_bytes": int(np.median(state.sizes)) if state.sizes else 0,
            "publishers": "; ".join(p.describe() for p in state.publishers) or "none",
            "matched": state.matched or 0,  # the event fires on the first match only
            "lost": state.lost,
            "stamp_age_s": self.median_age_s(spec.name),
            "frame_id": "none" if state.frame_id is None else state.frame_id,
            "findings": " ".join(f.kind for f in own) or "none",
        }
        if spec.synchronized:
            values["stamp_offset_s"] = self.offsets_s().get(spec.name, math.nan)
        if own:
            values["fix"] = " | ".join(f.fix for f in own)
        name = f"{self.node_name}: input {spec.name}" if self.node_name else f"input {spec.name}"
        return status(name, spec.topic, level, message, values)

    def _sync_status(self, findings: list[Finding]) -> DiagnosticStatus:
        own = [f for f in findings if f.input == "sync"]
        values = {
            "sets": self.sets,
            "slop_s": self.config.slop_s,
            **{f"stamp_offset_s.{name}": v for name, v in self.offsets_s().items()},
            **{f"nearest_stamp_gap_s.{name}": v for name, v in self.gaps_s().items()},
        }
        if own:
            values["fix"] = own[0].fix
        message = own[0].message if own else f"{self.sets} sets"
        name = f"{self.node_name}: synchronizer" if self.node_name else "synchronizer"
        return status(name, "sync", own[0].level if own else OK, message, values)

    def _due(self, findings: list[Finding], now: float) -> list[Finding]:
        self._throttle.period_s = self.config.throttle_s
        return [f for f in findings if self._throttle.allow((f.input, f.kind), now) is not None]


def _clock_cause(now_ns: int, stamp_ns: int) -> tuple[str, str]:
    """Why stamps and the node's clock disagree, guessed from which side looks like sim time."""
    if now_ns == 0:
        return (
            "this node's clock reads 0: use_sim_time is on but no /clock is published",
            "publish /clock (ros2 bag play --clock) or set use_sim_time false",
        )
    if now_ns < SIM_TIME_BEFORE_NS <= stamp_ns:
        return (
            "this node runs on sim time (/clock) and the publisher stamps wall time",
            "set use_sim_time false here, or true in the publisher too",
        )
    if stamp_ns < SIM_TIME_BEFORE_NS <= now_ns:
        return (
            "the publisher stamps sim time and this node runs on wall time",
            "set use_sim_time true on this node (and publish /clock)",
        )
    return (
        "the publisher's clock (or a bag's recorded time) is not this node's",
        "play bags with --clock and use_sim_time true, or synchronize the clocks (chrony, PTP)",
    )


# ---------------------------------------------------------------- thin rclpy adapters


def event_callbacks(monitor: InputMonitor, name: str):
    """SubscriptionEventCallbacks that feed input `name`'s QoS events to the monitor: pass as
    `event_callbacks=` when creating the subscription."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    return SubscriptionEventCallbacks(
        incompatible_qos=lambda info: monitor.on_incompatible_qos(
            name, info.last_policy_kind.name.removeprefix("RMW_QOS_POLICY_"), info.total_count
        ),
        matched=lambda info: monitor.on_matched(name, info.current_count),
        message_lost=lambda info: monitor.on_message_lost(name, info.total_count),
    )


def publishers_on(node, topic: str) -> list[PublisherInfo]:
    """The graph's publishers on `topic` (resolved against `node`'s namespace) and their QoS."""
    infos = node.get_publishers_info_by_topic(node.resolve_topic_name(topic))
    return [
        PublisherInfo(
            node=f"{info.node_namespace.rstrip('/')}/{info.node_name}",
            reliability=info.qos_profile.reliability.name.lower(),
            durability=info.qos_profile.durability.name.lower(),
            history=info.qos_profile.history.name.lower(),
            depth=info.qos_profile.depth,
        )
        for info in infos
    ]


def refresh_graph(monitor: InputMonitor, node) -> None:
    """Feed every input's current publishers (call from a timer, e.g. before `check`)."""
    for name, state in monitor.states.items():
        monitor.on_publishers(name, publishers_on(node, state.spec.topic))


def qos_names(profile) -> tuple[str, str]:
    """(reliability, durability) of an rclpy QoSProfile, as InputSpec takes them."""
    return profile.reliability.name.lower(), profile.durability.name.lower()


# ---------------------------------------------------------------- fusion_node's inputs

FUSION_KINDS = {"camera": IMAGE, "camera_info": INFO, "depth": DEPTH, "lidar": CLOUD,
                "compute_budget": OTHER}  # fmt: skip


def fusion_inputs(
    topics: dict[str, str] | None = None, lidar_frame: str | None = None, qos: dict | None = None
):
    """fusion_node's inputs as InputSpecs (topics overridable, e.g. remapped), with the QoS
    its subscriptions use: sensor data for the sensors, latched for the budget, unless `qos`
    gives an input's profile (the node's qos.<input>.* overrides)."""
    from adaptive_fusion.ros.qos import LATCHED_QOS, SENSOR_QOS

    topics = {**INPUTS, **(topics or {})}
    profiles = {"compute_budget": LATCHED_QOS, **(qos or {})}
    specs = []
    for name, topic in topics.items():
        reliability, durability = qos_names(profiles.get(name, SENSOR_QOS))
        specs.append(
            InputSpec(
                name,
                topic,
                FUSION_KINDS[name],
                reliability,
                durability,
                required=name != "compute_budget",
                synchronized=name in ("camera", "depth", "lidar"),
                expected_frame=lidar_frame if name == "lidar" else None,
            )
        )
    return specs
