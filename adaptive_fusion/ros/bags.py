"""rosbag2 recordings (MCAP or sqlite3) of ROS topics, written and read with rosbags (pure
Python; `ros2 bag` and Foxglove read the files), and played back over ROS with their timing.

Messages stay the CDR bytes DDS delivered (raw subscriptions) and are published back as bytes,
so nothing is converted on the way. Type definitions come from rosbags' Kilted store; packages it
lacks (vision_msgs) are read from their installed .msg files (share/<package>/msg under
AMENT_PREFIX_PATH, or this Python's prefix, where the PyPI set-up installs them)."""

from __future__ import annotations

import importlib
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosgraph_msgs.msg import Clock

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 9  # rosbag2's metadata version since Jazzy
CLOCK_TOPIC = "/clock"


class BagError(ValueError):
    """A bag that cannot be written or read, or a type whose definition is not installed."""


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the Python message class."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return [Path(p) / "share" for p in (*prefixes, sys.prefix)]


def typestore_for(msgtypes: Iterable[str]):
    """rosbags' Kilted type store, plus every message of each package in `msgtypes` that it
    lacks, from the package's installed .msg files."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    missing = {t.split("/")[0] for t in msgtypes if t not in typestore.fielddefs}
    for package in sorted(missing):
        folder = next((d / package / "msg" for d in _share_dirs()
                       if (d / package / "msg").is_dir()), None)  # fmt: skip
        if folder is None:
            raise BagError(f"no .msg files of {package} under {[str(d) for d in _share_dirs()]}")
        types = {}
        for path in sorted(folder.glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
        typestore.register(types)
    return typestore


class Recorder:
    """Writes every message of `topics` that `node` receives to a rosbag2 at `path`, stamped
    with its arrival on the node's clock (as `ros2 bag record` does). Each topic's type is taken
    from the graph when its first publisher appears. One thread owns the bag writer (sqlite3
    connections may only be used by the thread that made them), fed through a queue, so the
    subscriptions never wait for the disk."""

    def __init__(self, node, topics: Sequence[str], path: str | Path, storage: str = "mcap"):
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.node = node
        self.pending = [node.resolve_topic_name(t) for t in topics]
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()  # the timer's thread and the constructor's both subscribe
        self._queue: queue.Queue = queue.Queue()
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._write_all, args=(Path(path), storage),
                                        name="bag_writer", daemon=True)  # fmt: skip
        self._thread.start()
        self._subscriptions = []
        self._timer = node.create_timer(0.1, self._subscribe_known)
        self._subscribe_known()

    def _subscribe_known(self) -> None:
        with self._lock:
            types = dict(self.node.get_topic_names_and_types())
            for topic in [t for t in self.pending if types.get(t)]:
                msgtype = types[topic][0]
                self._queue.put(("connect", topic, msgtype))
                qos = QoSProfile(depth=100, reliability=qos_profile_sensor_data.reliability)
                self._subscriptions.append(self.node.create_subscription(
                    message_class(msgtype), topic,
                    lambda data, t=topic: self._received(t, data), qos, raw=True))  # fmt: skip
                self.counts[topic] = 0
                self.pending.remove(topic)

    def _received(self, topic: str, data: bytes) -> None:
        self._queue.put(("write", topic, self.node.get_clock().now().nanoseconds, data))
        self.counts[topic] += 1

    def _write_all(self, path: Path, storage: str) -> None:
        connections = {}
        try:
            with Writer(path, version=BAG_VERSION, storage_plugin=STORAGES[storage]) as writer:
                while (item := self._queue.get())[0] != "close":
                    if item[0] == "connect":
                        _, topic, msgtype = item
                        connections[topic] = writer.add_connection(
                            topic, msgtype, typestore=typestore_for([msgtype]))
                    else:
                        _, topic, stamp, data = item
                        writer.write(connections[topic], stamp, data)
        except BaseException as error:  # noqa: BLE001 - handed to close(), which raises it
            self._failure.append(error)

    def close(self) -> None:
        """Stop recording and finish the bag (raises BagError if writing failed)."""
        self.node.destroy_timer(self._timer)
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._queue.put(("close",))
        self._thread.join()
        if self._failure:
            raise BagError(f"writing the bag failed: {self._failure[0]}") from self._failure[0]


def read_messages(path: str | Path) -> Iterable[tuple[str, str, int, bytes]]:
    """(topic, msgtype, bag time ns, CDR bytes) of every message, in time order."""
    try:
        with Reader(Path(path)) as reader:
            for connection, timestamp, data in reader.messages():
                yield connection.topic, connection.msgtype, timestamp, bytes(data)
    except Exception as error:  # noqa: BLE001 - rosbags raises its own types per storage
        if isinstance(error, BagError):
            raise
        raise BagError(f"cannot read {path}: {error}") from error


def play(node, path: str | Path, rate: float = 1.0, loop: bool = False,
         remap: dict[str, str] | None = None, clock: bool = False,
         stop: threading.Event | None = None) -> int:
    """Publish the bag's messages from `node` with their recorded spacing divided by `rate`
    (loop: again from the start until `stop`), topics renamed by `remap`, and with `clock` a
    /clock carrying the bag's time (for use_sim_time). Returns the messages published."""
    if rate <= 0:
        raise BagError(f"rate must be positive, got {rate}")
    remap, stop = remap or {}, stop or threading.Event()
    publishers, clock_pub, published = {}, None, 0
    if clock:
        clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, 10)
    while not stop.is_set():
        start_wall, first = time.monotonic(), None
        for topic, msgtype, stamp, data in read_messages(path):
            first = stamp if first is None else first
            delay = (stamp - first) / 1e9 / rate - (time.monotonic() - start_wall)
            if delay > 0 and stop.wait(delay):
                return published
            name = remap.get(topic, topic)
            if name not in publishers:  # reliable: matches reliable and best-effort subscribers
                publishers[name] = node.create_publisher(message_class(msgtype), name, 100)
            if clock_pub is not None:
                bag_time = Clock()
                bag_time.clock.sec, bag_time.clock.nanosec = divmod(stamp, 1_000_000_000)
                clock_pub.publish(bag_time)
            publishers[name].publish(data)
            published += 1
        if not loop or first is None:
            break
    return published
