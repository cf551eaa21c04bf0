"""The modality streams side by side on worker threads (model/streams.py): the same outputs as
one after another, only where it applies, errors raised in the caller, thread counts kept."""

import threading

import numpy as np
import pytest
import torch
from test_model import SMALL, random_rasters

from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.flops import count_flops
from adaptive_fusion.model.streams import SideBySideStreams
from adaptive_fusion.policies.registry import EqualSplitPolicy
from adaptive_fusion.runtime.frame import SensorFrame
from adaptive_fusion.runtime.pipeline import FusionPipeline
from adaptive_fusion.sim.world import World

ALLOCATIONS = [
    None,  # every block of every modality
    {"camera": [0, 3], "depth": 4, "lidar": [1]},  # streams of unequal length
    {"camera": 2, "depth": 0, "lidar": 3},  # the depth camera absent
    {"camera": 1, "depth": 1, "lidar": 1},
]


@pytest.fixture
def detector():
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(SMALL).eval()
    yield model
    if model.side_by_side is not None:
        model.side_by_side.close()


def threads_running_blocks(model: AdaptiveFusionDetector, call) -> set[str]:
    names: set[str] = set()
    handles = [block.register_forward_hook(
        lambda *_: names.add(threading.current_thread().name))
        for stream in model.streams.values() for block in stream.blocks]
    try:
        call()
    finally:
        for handle in handles:
            handle.remove()
    return names


@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_side_by_side_gives_the_outputs_of_one_after_another(detector, allocation):
    rasters = random_rasters(SMALL, seed=3)
    with torch.inference_mode():
        expected = detector(rasters, allocation)
        detector.side_by_side = SideBySideStreams(2)
        got = detector(rasters, allocation)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_blocks_run_on_the_workers_only_at_batch_one_without_autograd(detector):
    detector.side_by_side = SideBySideStreams(2)
    one, two = random_rasters(SMALL, batch=1), random_rasters(SMALL, batch=2)
    with torch.inference_mode():
        workers = threads_running_blocks(detector, lambda: detector(one))
        batched = threads_running_blocks(detector, lambda: detector(two))
    with torch.no_grad():
        no_grad = threads_running_blocks(detector, lambda: detector(one))
    autograd = threads_running_blocks(detector, lambda: detector(one))
    main = threading.current_thread().name
    # which of the two workers takes a unit is the pool's race: a worker that finishes first
    # may take the next one too, so only "on the workers, not the caller" is certain
    for names in (workers, no_grad):
        assert names and all(name.startswith("fusion-stream") for name in names), names
    assert batched == {main} and autograd == {main}


def test_flop_counting_sees_every_block_with_the_streams_side_by_side(detector):
    rasters = random_rasters(SMALL)

    def flops() -> int:
        with torch.inference_mode():
            return count_flops(lambda: detector(rasters))

    one_after_another = flops()
    detector.side_by_side = SideBySideStreams(2)
    assert flops() == one_after_another


def test_a_stream_error_is_raised_in_the_caller_and_the_workers_go_on(detector):
    detector.side_by_side = SideBySideStreams(2)
    rasters = random_rasters(SMALL)
    broken = dict(rasters, camera=rasters["camera"][:, :2])  # 2 channels where 3 are expected
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="channels"):
            detector(broken)
        assert detector(rasters)["heatmap"].shape[0] == 1


def worker_threads():
    """A stream of one unit that returns the intra-op thread count it ran at."""
    yield
    return torch.get_num_threads()


def test_workers_run_one_intra_op_thread_and_the_caller_keeps_its_count():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    runner = SideBySideStreams(2)
    try:
        assert torch.get_num_threads() == 2
        seen: list[int] = []
        started = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        started.start()
        started.join()
        assert seen == [2]
        assert runner.run({"a": worker_threads(), "b": worker_threads()}) == {"a": 1, "b": 1}
    finally:
        runner.close()
        torch.set_num_threads(previous)
    with pytest.raises(ValueError, match="at least 2"):
        SideBySideStreams(1)


def test_a_pipeline_runs_its_streams_side_by_side_only_on_more_than_one_thread():
    previous = torch.get_num_threads()
    policy = EqualSplitPolicy(SMALL.modalities, SMALL.layers)
    try:
        torch.set_num_threads(1)
        single = FusionPipeline(AdaptiveFusionDetector(SMALL), policy, streams="side_by_side")
        torch.set_num_threads(2)
        by_default = FusionPipeline(AdaptiveFusionDetector(SMALL), policy)
        double = FusionPipeline(AdaptiveFusionDetector(SMALL), policy, streams="side_by_side")
        serial = FusionPipeline(AdaptiveFusionDetector(SMALL), policy,
                                streams="one_after_another")
        assert (single.stream_scheduling, single.runner) == ("one_after_another", None)
        assert by_default.stream_scheduling == "auto" and by_default.scheduler is not None
        assert double.runner.workers == 2 and double.scheduler is None
        assert serial.runner is None and serial.scheduler is None
        with pytest.raises(ValueError, match="streams must be one of"):
            FusionPipeline(AdaptiveFusionDetector(SMALL), policy, streams="parallel")
    finally:
        torch.set_num_threads(previous)


def test_pipelines_detect_the_same_in_every_stream_mode_and_time_their_blocks():
    frames = World().render(4)
    frame = SensorFrame(image=frames.image, depth=frames.depth, points=frames.points,
                        calib=frames.calib, lidar=frames.lidar)
    previous = torch.get_num_threads()
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(SMALL)
    policy = EqualSplitPolicy(SMALL.modalities, SMALL.layers)
    try:
        torch.set_num_threads(2)
        results = {}
        for streams in ("one_after_another", "side_by_side"):
            pipeline = FusionPipeline(model, policy, streams=streams)
            results[streams] = pipeline.run(frame, 0.5, score_threshold=0.0)
            assert results[streams].streams == streams
            assert pipeline.timer.calls == 6 == results[streams].budget.total_blocks
            timings = results[streams].timings_ms
            assert 0 < timings["blocks"] <= timings["model"]
        one_after_another, side_by_side = (results[mode].boxes for mode in results)
        assert len(side_by_side) == len(one_after_another) > 0
        np.testing.assert_allclose(side_by_side.centers, one_after_another.centers, atol=1e-5)
        np.testing.assert_allclose(side_by_side.scores, one_after_another.scores, atol=1e-6)

        auto = FusionPipeline(model, policy)
        measure = auto.scheduler.measure_frames
        modes = [auto.run(frame, 0.5, score_threshold=0.0).streams
                 for _ in range(2 * measure + 1)]
        # a new kind of frame measures each mode, then runs the one measured faster
        assert modes[:-1] == ["one_after_another"] * measure + ["side_by_side"] * measure
        estimates = auto.scheduler.estimates(3, 6)
        assert modes[-1] == min(estimates, key=estimates.get)
        last = auto.run(frame, 0.5, score_threshold=0.0)
        assert auto.stream_estimates(last) == auto.scheduler.estimates(3, 6)
        np.testing.assert_allclose(last.boxes.centers, one_after_another.centers, atol=1e-5)
        lidar_only = SensorFrame(image=None, depth=None, points=frames.points,
                                 calib=frames.calib, lidar=frames.lidar)
        assert auto.run(lidar_only, 0.5).streams == "one_after_another"  # one stream
    finally:
        torch.set_num_threads(previous)
