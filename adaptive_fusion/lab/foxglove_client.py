"""A client of Foxglove's WebSocket protocol, on websockets and protobuf: it reads the channels a
server advertises, subscribes to them, and decodes each message with the schema the server
advertised (a protobuf FileDescriptorSet, or JSON). The live view's test checks what fusion_node
serves with it, as the Foxglove app would receive it."""

from __future__ import annotations

import base64
import json
import struct
import time
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from websockets.sync.client import connect

# the SDK's protocol name, then the original ws-protocol's: the server picks one
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]
MESSAGE_DATA = 0x01  # binary opcode: subscription id (u32), log time (u64 ns), payload
MESSAGE_HEADER = struct.Struct("<BIQ")


@dataclass
class Received:
    topic: str
    log_time_ns: int
    message: object  # a protobuf message, or the JSON value


class FoxgloveClient:
    def __init__(self, url: str, timeout_s: float = 10.0):
        self._ws = connect(url, subprotocols=SUBPROTOCOLS, open_timeout=timeout_s,
                           max_size=None)  # fmt: skip
        self.server_info: dict = {}
        self.channels: dict[int, dict] = {}  # advertised, by channel id
        self._decoders: dict[int, object] = {}  # by subscription id
        self._topics: dict[int, str] = {}  # by subscription id

    def __enter__(self) -> FoxgloveClient:
        self._ws.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ws.__exit__(*exc)

    def subscribe_all(self, topics: set[str], timeout_s: float) -> None:
        """Wait until every topic is advertised, then subscribe to each."""
        deadline = time.monotonic() + timeout_s
        while not topics <= {c["topic"] for c in self.channels.values()}:
            self._receive(deadline)
        subscriptions = []
        for sub_id, (channel_id, channel) in enumerate(sorted(self.channels.items())):
            if channel["topic"] in topics:
                self._decoders[sub_id] = _decoder(channel)
                self._topics[sub_id] = channel["topic"]
                subscriptions.append({"id": sub_id, "channelId": channel_id})
        self._ws.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))

    def messages(self, timeout_s: float):
        """Decoded messages of the subscribed channels as they arrive, until timeout_s passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            received = self._receive(deadline)
            if received is not None:
                yield received

    def _receive(self, deadline: float) -> Received | None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no more messages from the Foxglove server in time")
        frame = self._ws.recv(timeout=left)
        if isinstance(frame, str):
            self._on_text(json.loads(frame))
            return None
        opcode, sub_id, log_time = MESSAGE_HEADER.unpack_from(frame)
        if opcode != MESSAGE_DATA or sub_id not in self._decoders:
            return None
        payload = frame[MESSAGE_HEADER.size :]
        return Received(self._topics[sub_id], log_time, self._decoders[sub_id](payload))

    def _on_text(self, op: dict) -> None:
        if op["op"] == "serverInfo":
            self.server_info = op
        elif op["op"] == "advertise":
            self.channels.update({c["id"]: c for c in op["channels"]})
        elif op["op"] == "unadvertise":
            for channel_id in op["channelIds"]:
                self.channels.pop(channel_id, None)


def _decoder(channel: dict):
    """bytes -> message, from the schema the channel advertised."""
    encoding = channel["encoding"]
    if encoding == "json":
        return lambda payload: json.loads(payload)
    if encoding == "protobuf" and channel["schemaEncoding"] == "protobuf":
        files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
        pool = descriptor_pool.DescriptorPool()
        for file in files.file:  # dependencies come first in the set
            pool.Add(file)
        message_class = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(channel["schemaName"])
        )
        return message_class.FromString
    raise ValueError(f"{channel['topic']}: no decoder for {encoding} / {channel['schemaEncoding']}")
