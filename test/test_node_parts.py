"""fusion_node's ROS-free parts: the one-slot mailbox and its worker, liveness, the latency
statistics, the log throttle and the content of /diagnostics."""

import threading
import time
from collections import Counter

import numpy as np
import pytest

from adaptive_fusion.runtime.latency import LatencyStats
from adaptive_fusion.runtime.liveness import Liveness, LivenessChange
from adaptive_fusion.runtime.mailbox import Mailbox
from adaptive_fusion.runtime.status import (
    ERROR,
    OK,
    WARN,
    Counters,
    fusion_status,
    modality_status,
    prefixed,
)
from adaptive_fusion.runtime.throttle import Throttle

# ---------------------------------------------------------------- mailbox


def test_mailbox_keeps_the_newest_job_and_counts_the_replaced():
    release, handled = threading.Event(), []

    def handle(job):
        handled.append(job)
        release.wait(5)

    box = Mailbox(handle)
    box.start()
    box.put(1)
    deadline = time.monotonic() + 5
    while not handled and time.monotonic() < deadline:  # the worker holds job 1
        time.sleep(0.01)
    for job in (2, 3, 4):  # 2 and 3 are replaced while the worker is busy
        box.put(job)
    release.set()
    deadline = time.monotonic() + 5
    while len(handled) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    box.stop()
    assert handled == [1, 4]
    assert box.dropped == 2


def test_mailbox_stop_forgets_the_waiting_job_and_can_start_again():
    handled = []
    box = Mailbox(handled.append)
    box.put("before start")  # waits: no worker yet
    box.stop()
    box.start()
    box.put("after restart")
    deadline = time.monotonic() + 5
    while not handled and time.monotonic() < deadline:
        time.sleep(0.01)
    box.stop()
    assert handled == ["after restart"]


def test_mailbox_clear_drops_without_counting():
    box = Mailbox(lambda job: None)
    box.put(1)
    box.clear()
    box.put(2)
    assert box.dropped == 0


# ---------------------------------------------------------------- liveness


def test_liveness_counts_silence_from_start_then_from_each_message():
    liveness = Liveness(("camera", "depth", "lidar"), timeout_s=0.5)
    liveness.start(10.0)
    assert liveness.update(10.0) == LivenessChange(("camera", "depth", "lidar"), (),
                                                   ("camera", "depth", "lidar"))  # fmt: skip
    assert liveness.update(10.3) is None  # no change, no news
    liveness.arrived("camera", 10.4)
    liveness.arrived("lidar", 10.4)
    assert liveness.update(10.6) == LivenessChange(("camera", "lidar"), ("depth",), ())
    liveness.arrived("depth", 10.7)
    assert liveness.update(10.7) == LivenessChange(("camera", "depth", "lidar"), (), ("depth",))
    assert liveness.update(11.3).live == ()  # all silent past the timeout


def test_liveness_timeout_change_applies_at_the_next_update():
    liveness = Liveness(("camera",), timeout_s=0.5)
    liveness.start(0.0)
    liveness.update(0.0)
    liveness.timeout_s = 2.0
    assert liveness.update(1.0) is None
    assert liveness.update(2.5).lost == ("camera",)


# ---------------------------------------------------------------- latency, throttle


def test_latency_summary_over_the_window():
    stats = LatencyStats(window=4)
    assert all(np.isnan(v) for v in stats.summary().values())  # before the first frame
    for ms in (100.0, 1.0, 2.0, 3.0, 4.0):  # the first falls out of the window
        stats.add(ms, ms / 10, 10 * ms)
    summary = stats.summary()
    assert summary["latency_ms_last"] == 4.0
    assert summary["latency_ms_mean"] == pytest.approx(2.5)
    assert summary["latency_ms_p95"] == pytest.approx(np.percentile([1, 2, 3, 4], 95))
    assert summary["node_overhead_ms_mean"] == pytest.approx(0.25)
    assert summary["stamp_to_output_ms_mean"] == pytest.approx(25.0)


def test_throttle_lets_one_event_per_key_and_period_through_and_counts_the_rest():
    throttle = Throttle(5.0)
    assert throttle.allow(("camera", "malformed"), 0.0) == 0
    assert throttle.allow(("camera", "malformed"), 1.0) is None
    assert throttle.allow(("camera", "malformed"), 4.9) is None
    assert throttle.allow(("lidar", "malformed"), 4.9) == 0  # another key: its own period
    assert throttle.allow(("camera", "malformed"), 5.0) == 2  # held back since the last
    assert throttle.allow(("camera", "malformed"), 10.0) == 0
    throttle.period_s = 0.0
    assert throttle.allow(("camera", "malformed"), 10.0) == 0


# ---------------------------------------------------------------- diagnostics content


class FakeCosts:
    block_s, overhead_s = 0.004, None


class FakePipeline:
    """What the status reads of a FusionPipeline."""

    class config:  # noqa: N801
        modalities = ("camera", "depth", "lidar")

    class policy:  # noqa: N801
        name = "controller"

    costs = FakeCosts()
    full_blocks = 24
    stream_scheduling = "auto"

    def stream_estimates(self, result):
        return {"one_after_another": 0.030}


class FakeResult:
    quality = {"camera": 0.9, "depth": 0.3, "lidar": 0.8}
    streams = "side_by_side"
    boxes = [object()] * 5

    class budget:  # noqa: N801
        binding = "compute"

    def layers(self, modalities):
        return {"camera": 3, "depth": 0, "lidar": 5}


def test_fusion_status_before_and_after_the_first_frame():
    counters = Counters()
    budget = {"budget_in_force": 0.5, "compute_budget_param": 1.0, "compute_budget_topic": 0.5,
              "latency_budget_ms": 0.0}  # fmt: skip
    latency = LatencyStats().summary()
    before = fusion_status(FakePipeline(), None, counters, latency, active=True, live=(),
                           budget=budget, stale_sets=0)  # fmt: skip
    assert before.level == WARN and before.values["blocks_in_use"] == 0
    assert before.values["live"] == "none" and before.values["streams_last"] == "none"
    counters.frames = 7
    counters.errors["set"]["inference_error"] += 2
    counters.errors["camera"]["malformed"] += 1  # per modality: in the modality's status
    after = fusion_status(FakePipeline(), FakeResult(), counters, latency, active=True,
                          live=("camera", "lidar"), budget=budget, stale_sets=3)  # fmt: skip
    assert after.level == OK and after.message == "7 frames, 8 blocks"
    values = after.values
    assert values["budget_in_force"] == 0.5 and values["policy"] == "controller"
    assert values["live"] == "camera lidar" and values["stale_sets_dropped"] == 3
    assert values["block_cost_ms"] == pytest.approx(4.0) and np.isnan(values["frame_overhead_ms"])
    assert values["model_ms.one_after_another"] == pytest.approx(30.0)
    assert values["errors.set.inference_error"] == 2 and "errors.camera.malformed" not in values
    assert values["detections_last"] == 5 and values["budget_binding"] == "compute"


@pytest.mark.parametrize("modality, live, level, message", [
    ("camera", True, OK, "3 layers, quality 0.90"),
    ("depth", True, WARN, "switched off by the policy, quality 0.30"),
    ("lidar", False, ERROR, "timed out"),
])  # fmt: skip
def test_modality_status_levels(modality, live, level, message):
    counters = Counters()
    counters.sync_drops[modality]["stale"] += 4
    status = modality_status(modality, FakePipeline(), FakeResult(), counters, live=live,
                             received=11)  # fmt: skip
    assert (status.level, status.message) == (level, message)
    assert status.values["received"] == 11 and status.values["sync_drops.stale"] == 4


def test_modality_status_waits_for_the_first_result():
    status = modality_status("camera", FakePipeline(), None, Counters(), live=True, received=0)
    assert (status.level, status.message, status.values["quality"]) == (OK, "waiting", "none")


def test_prefixed_sorts_kinds():
    assert prefixed("errors.", Counter(b=1, a=2)) == {"errors.a": 2, "errors.b": 1}


def test_modality_status_counts_points_dropped_as_nan():
    counters = Counters()
    status = modality_status("lidar", FakePipeline(), FakeResult(), counters, live=True, received=1)
    assert "nan_points_dropped" not in status.values  # none seen: no key
    counters.dropped_points["lidar"] += 100
    counters.dropped_share_last["lidar"] = 1 / 3
    status = modality_status("lidar", FakePipeline(), FakeResult(), counters, live=True, received=2)
    assert status.values["nan_points_dropped"] == 100
    assert status.values["nan_points_share_last"] == pytest.approx(1 / 3)
