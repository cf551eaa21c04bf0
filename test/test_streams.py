"""The modality streams side by side on worker threads (model/streams.py): the same outputs as
one after another, only where it applies, errors raised in the caller, thread counts kept."""

import threading

import numpy as np
import pytest
import torch
from test_model import SMALL, random_rasters
from torch.utils.flop_counter import FlopCounterMode

from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.streams import SideBySideStreams
from adaptive_fusion.runtime.frame import SensorFrame
from adaptive_fusion.runtime.pipeline import FusionPipeline
from adaptive_fusion.runtime.policy import EqualSplitPolicy
from adaptive_fusion.world.world import World

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
    model.run_streams_side_by_side(0)


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
        detector.run_streams_side_by_side(2)
        got = detector(rasters, allocation)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_blocks_run_on_the_workers_only_at_batch_one_without_autograd(detector):
    detector.run_streams_side_by_side(2)
    one, two = random_rasters(SMALL, batch=1), random_rasters(SMALL, batch=2)
    with torch.inference_mode():
        workers = threads_running_blocks(detector, lambda: detector(one))
        batched = threads_running_blocks(detector, lambda: detector(two))
    with torch.no_grad():
        no_grad = threads_running_blocks(detector, lambda: detector(one))
    autograd = threads_running_blocks(detector, lambda: detector(one))
    main = threading.current_thread().name
    assert len(workers) == 2 and all(name.startswith("fusion-stream") for name in workers)
    assert len(no_grad) == 2 and main not in no_grad
    assert batched == {main} and autograd == {main}


def test_flop_counting_sees_every_block_with_the_streams_side_by_side(detector):
    rasters = random_rasters(SMALL)

    def flops() -> int:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            detector(rasters)
        return counter.get_total_flops()

    one_after_another = flops()
    detector.run_streams_side_by_side(2)
    assert flops() == one_after_another


def test_a_stream_error_is_raised_in_the_caller_and_the_workers_go_on(detector):
    detector.run_streams_side_by_side(2)
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


def test_a_pipeline_asked_to_run_its_streams_side_by_side_on_two_threads():
    previous = torch.get_num_threads()
    policy = EqualSplitPolicy(SMALL.modalities, SMALL.layers)
    try:
        torch.set_num_threads(1)
        single = FusionPipeline(AdaptiveFusionDetector(SMALL), policy, side_by_side=True)
        torch.set_num_threads(2)
        by_default = FusionPipeline(AdaptiveFusionDetector(SMALL), policy)
        double = FusionPipeline(AdaptiveFusionDetector(SMALL), policy, side_by_side=True)
        assert single.model.side_by_side is None and by_default.model.side_by_side is None
        assert double.model.side_by_side.workers == 2
        double.model.run_streams_side_by_side(0)
    finally:
        torch.set_num_threads(previous)


def test_a_pipeline_side_by_side_detects_the_same_and_times_its_blocks():
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
        for side_by_side in (False, True):
            pipeline = FusionPipeline(model, policy, side_by_side=side_by_side)
            results[side_by_side] = pipeline.run(frame, 0.5, score_threshold=0.0)
            assert pipeline.timer.calls == 6 == results[side_by_side].budget.total_blocks
            timings = results[side_by_side].timings_ms
            assert 0 < timings["blocks"] <= timings["model"]
        one_after_another, side_by_side = results[False].boxes, results[True].boxes
        assert len(side_by_side) == len(one_after_another) > 0
        np.testing.assert_allclose(side_by_side.centers, one_after_another.centers, atol=1e-5)
        np.testing.assert_allclose(side_by_side.scores, one_after_another.scores, atol=1e-6)
    finally:
        model.run_streams_side_by_side(0)
        torch.set_num_threads(previous)
