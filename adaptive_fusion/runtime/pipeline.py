"""One fusion step without ROS: the frame at the model's size -> quality -> budget -> allocation
-> detector (only the allocated blocks run) -> boxes, with the time of every stage and of the
blocks themselves."""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.model.allocation import Allocation
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import at_model_size, prepare_inputs
from adaptive_fusion.model.streams import SideBySideStreams
from adaptive_fusion.policies.registry import AllocationPolicy
from adaptive_fusion.quality import camera_quality, depth_quality, lidar_quality
from adaptive_fusion.runtime.budget import BlockCosts, BudgetDecision, resolve_budget
from adaptive_fusion.runtime.frame import SensorFrame, check_frame, present
from adaptive_fusion.runtime.scheduling import STREAM_SCHEDULING, StreamScheduler, frame_kind

WARM_UP_FRAMES = 3


@dataclass
class FusionResult:
    boxes: Boxes3D
    allocation: Allocation
    quality: dict[str, float]  # measured score per present modality
    live: tuple[str, ...]
    budget: BudgetDecision
    timings_ms: dict[str, float] = field(default_factory=dict)
    streams: str = "one_after_another"  # how the modality streams ran (runtime/scheduling.py)

    def layers(self, modalities) -> dict[str, int]:
        return {name: len(self.allocation.get(name, ())) for name in modalities}


class BlockTimer:
    """Seconds spent inside the modality blocks of one forward pass, through forward hooks (on
    CPU every op is synchronous, so wall time between the hooks is the block's time). With the
    streams side by side two blocks run at once, each timed in its own thread: `seconds` sums
    them and `wall_seconds` divides by how many ran at a time."""

    def __init__(self, model: AdaptiveFusionDetector):
        self.seconds = 0.0
        self.calls = 0
        self._started = threading.local()
        self._lock = threading.Lock()
        self._handles = [handle for stream in model.streams.values() for block in stream.blocks
                         for handle in (block.register_forward_pre_hook(self._enter),
                                        block.register_forward_hook(self._leave))]

    def remove(self) -> None:
        """Take the hooks off the model's blocks."""
        for handle in self._handles:
            handle.remove()

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def wall_seconds(self, side_by_side: int) -> float:
        """The blocks' share of the frame's wall time when `side_by_side` streams with blocks
        shared the workers (1: one after another). An estimate: streams of unequal length
        overlap less at their end, which the cost model's deviation margin absorbs."""
        return self.seconds / max(side_by_side, 1)

    def _enter(self, *_):
        self._started.time = time.perf_counter()

    def _leave(self, *_):
        elapsed = time.perf_counter() - self._started.time
        with self._lock:
            self.seconds += elapsed
            self.calls += 1


SENSOR_QUALITY = {  # each sensor's score from a frame (a SensorFrame or a FrameSet)
    "camera": lambda frame: camera_quality(frame.image).score,
    "depth": lambda frame: depth_quality(frame.depth).score,
    "lidar": lambda frame: lidar_quality(frame.points, frame.lidar).score,
}


def measure_quality(frame) -> dict[str, float]:
    return {name: SENSOR_QUALITY[name](frame) for name in present(frame)}


class FusionPipeline:
    """Runs one frame at a time (batch size 1: the only size at which skipping saves time)."""

    def __init__(
        self, model: AdaptiveFusionDetector, policy: AllocationPolicy, device: str = "cpu",
        streams: str = "auto", quality_stride: int = 1,
    ):
        """streams: how the modality streams run on a CPU with more than one torch thread:
        "one_after_another" (each at all threads), "side_by_side" (one per thread,
        model/streams.py: faster where other processes share the cores, slower on a quiet
        host), or "auto", whichever the frames measure faster (runtime/scheduling.py). With
        one thread or on a GPU they always run one after another.

        quality_stride (settable later): each sensor's quality is measured on one frame in
        quality_stride, the sensors in turn (with 3: the camera on frames 0, 3, 6, ..., the
        depth camera on 1, 4, ..., the lidar on 2, 5, ...), and its last score serves in
        between. Sensor faults develop over seconds while frames come every 30-100 ms, and
        quality is the largest fixed cost of a frame. A sensor without a score yet (just come
        alive) is measured at once; a dead one's score is forgotten. 1 measures every sensor on
        every frame."""
        if streams not in STREAM_SCHEDULING:
            raise ValueError(f"streams must be one of {STREAM_SCHEDULING}, got {streams!r}")
        self.model = model.eval().to(device)
        self.config = model.config
        self.device = torch.device(device)
        self.policy = policy
        self.costs = BlockCosts()
        self.timer = BlockTimer(self.model)
        # The model outlives a pipeline where several are made on it in turn (the lab's
        # measurements): its blocks would go on calling every old pipeline's timer.
        weakref.finalize(self, self.timer.remove)
        workers = min(torch.get_num_threads(), len(self.config.modalities))
        can_run_side_by_side = workers > 1 and self.device.type == "cpu"
        self.stream_scheduling = streams if can_run_side_by_side else "one_after_another"
        self.runner = (SideBySideStreams(workers)
                       if self.stream_scheduling != "one_after_another" else None)
        self.scheduler = StreamScheduler() if self.stream_scheduling == "auto" else None
        self.model.side_by_side = None
        self.quality_stride = quality_stride  # checked by the setter
        self._frame_index = 0
        self._scores: dict[str, float] = {}  # each live sensor's last measured quality

    @property
    def quality_stride(self) -> int:
        return self._quality_stride

    @quality_stride.setter
    def quality_stride(self, stride: int) -> None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"quality_stride must be an integer >= 1, got {stride!r}")
        self._quality_stride = stride

    @property
    def full_blocks(self) -> int:
        """The blocks of the subnet the model runs (model.use_architecture): what a compute
        budget of 1 grants, and what its fractions are of."""
        return sum(self.model.depths.values())

    def warm_up(self, frame: SensorFrame, frames: int = WARM_UP_FRAMES) -> None:
        """Run the full model a few times so the first real frame is not the slow one and the
        block costs start from a measurement."""
        for _ in range(frames):
            self.run(frame, fraction=1.0, latency_ms=0.0)

    def run(
        self,
        frame: SensorFrame,
        fraction: float = 1.0,
        latency_ms: float = 0.0,
        score_threshold: float = 0.3,
        max_detections: int = 50,
    ) -> FusionResult:
        """Detect in one frame; modalities whose array is None are dead and get no blocks."""
        start = time.perf_counter()
        check_frame(frame)
        live = frame.present()
        view = at_model_size(frame, self.config)
        resized = time.perf_counter()
        quality = self._quality(view, live)
        after_quality = time.perf_counter()
        inputs = prepare_inputs(view, self.config)
        after_inputs = time.perf_counter()
        budget = resolve_budget(fraction, latency_ms, self.costs, self.full_blocks, len(live))
        allocation = self.policy.allocate(quality, live, budget.total_blocks, inputs)
        rasters = {
            name: torch.from_numpy(raster)[None].to(self.device)
            for name, raster in inputs.rasters.items()
            if name in allocation
        }
        running, blocks = frame_kind(allocation)
        mode = self._mode(running, blocks)
        self.model.side_by_side = self.runner if mode == "side_by_side" else None
        after_allocate = time.perf_counter()
        self.timer.reset()
        with torch.inference_mode():
            outputs = self.model(rasters, allocation) if rasters else None
        after_model = time.perf_counter()
        if self.scheduler is not None and running > 1:
            self.scheduler.record(running, blocks, mode, after_model - after_allocate)
        boxes = (
            decode(outputs, inputs.K, inputs.T_cam_lidar, self.config, max_detections,
                   score_threshold)
            if outputs is not None
            else Boxes3D.empty()
        )
        end = time.perf_counter()
        block_seconds = self.timer.wall_seconds(
            min(self.runner.workers, running) if mode == "side_by_side" else 1)
        self.costs.update(block_seconds, self.timer.calls, end - start)
        timings = {
            "quality": after_quality - resized,
            "prepare": (resized - start) + (after_inputs - after_quality),
            "allocate": after_allocate - after_inputs,
            "model": after_model - after_allocate,
            "blocks": block_seconds,
            "decode": end - after_model,
            "total": end - start,
        }
        return FusionResult(
            boxes=boxes,
            allocation=allocation,
            quality=quality,
            live=live,
            budget=budget,
            timings_ms={name: 1000.0 * seconds for name, seconds in timings.items()},
            streams=mode,
        )

    def _quality(self, view: SensorFrame, live: tuple[str, ...]) -> dict[str, float]:
        """This frame's quality per live sensor: measured where it is the sensor's turn (see
        quality_stride) or the sensor has no score yet, its last score otherwise."""
        stride = self._quality_stride
        turn = self._frame_index % stride
        self._frame_index += 1
        scores = {}
        for index, name in enumerate(SENSOR_QUALITY):
            if name not in live:
                continue
            if index % stride == turn or name not in self._scores:
                scores[name] = SENSOR_QUALITY[name](view)
            else:
                scores[name] = self._scores[name]
        self._scores = scores
        return dict(scores)

    def stream_estimates(self, result: FusionResult) -> dict[str, float]:
        """With "auto": the model's seconds in each mode measured for frames like `result`'s
        (the evidence of the choice); otherwise nothing."""
        if self.scheduler is None:
            return {}
        return self.scheduler.estimates(*frame_kind(result.allocation))

    def _mode(self, running: int, blocks: int) -> str:
        """How this frame's streams run: side by side needs two streams with blocks."""
        if running < 2 or self.stream_scheduling == "one_after_another":
            return "one_after_another"
        if self.scheduler is not None:
            return self.scheduler.choose(running, blocks)
        return self.stream_scheduling


def blank_frame(frame_like: SensorFrame) -> SensorFrame:
    """A frame of the same geometry with every modality present and empty-looking data, for
    warming up before the first real frame arrives."""
    calib = frame_like.calib
    return SensorFrame(
        image=np.zeros((calib.height, calib.width, 3), np.uint8),
        depth=np.full((calib.height, calib.width), 5.0, np.float32),
        points=np.array([[5.0, 0.0, 0.0, 0.5]], np.float32),
        calib=calib,
        lidar=frame_like.lidar,
    )
