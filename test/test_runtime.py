"""The ROS-free fusion step: allocation policies, budgets and costs, the pipeline running only the
allocated blocks, the moving simulated world and scenario files."""

import numpy as np
import pytest
import torch

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.core.errors import BudgetError
from adaptive_fusion.core.frames import MODALITIES
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL, CheckpointError, load_checkpoint
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import at_model_size, prepare_inputs
from adaptive_fusion.policies.checkpoint import save_controller
from adaptive_fusion.policies.network import ControllerConfig, LayerController
from adaptive_fusion.policies.registry import EqualSplitPolicy, QualityWeightedPolicy, make_policy
from adaptive_fusion.runtime import (
    BlockCosts,
    FusionPipeline,
    InputError,
    SensorFrame,
    blank_frame,
    resolve_budget,
)
from adaptive_fusion.runtime.overlay import draw_overlay
from adaptive_fusion.runtime.pipeline import measure_quality
from adaptive_fusion.sim import World, WorldConfig
from adaptive_fusion.sim.corruptions import corrupt
from adaptive_fusion.sim.moving_world import MovingWorld
from adaptive_fusion.sim.scenario import Scenario, ScenarioError

SMALL = ModelConfig(dim=32, heads=2, layers=4)


def counts(allocation):
    return {name: len(blocks) for name, blocks in allocation.items()}


def test_equal_split_gives_every_live_modality_the_same_share():
    policy = EqualSplitPolicy(MODALITIES, 4)
    quality = {"camera": 0.1, "depth": 1.0, "lidar": 1.0}
    assert counts(policy.allocate(quality, MODALITIES, 6)) == dict.fromkeys(MODALITIES, 2)
    assert counts(policy.allocate(quality, ("camera", "depth"), 6)) == {"camera": 2, "depth": 2}
    assert counts(policy.allocate(quality, MODALITIES, 1)) == dict.fromkeys(MODALITIES, 1)
    assert policy.allocate(quality, MODALITIES, 12)["lidar"] == (0, 1, 2, 3)


def test_quality_weighted_moves_layers_to_the_good_modalities():
    policy = QualityWeightedPolicy(MODALITIES, 4)
    noisy_camera = {"camera": 0.1, "depth": 1.0, "lidar": 0.9}
    allocation = counts(policy.allocate(noisy_camera, MODALITIES, 6))
    assert allocation == {"camera": 1, "depth": 3, "lidar": 2}
    # the cap: good modalities full, the rest goes to the poor one
    assert counts(policy.allocate(noisy_camera, MODALITIES, 11)) == {
        "camera": 3, "depth": 4, "lidar": 4,
    }  # fmt: skip
    # a dead modality gets nothing, its share goes to the live ones
    assert counts(policy.allocate(noisy_camera, ("camera", "depth"), 6)) == {
        "camera": 2, "depth": 4,
    }  # fmt: skip
    # no usable quality anywhere: layer 0 only
    assert counts(policy.allocate(dict.fromkeys(MODALITIES, 0.0), MODALITIES, 12)) == (
        dict.fromkeys(MODALITIES, 1)
    )
    for total in range(3, 13):
        allocation = policy.allocate({"camera": 0.3, "depth": 0.7, "lidar": 1.0}, MODALITIES, total)
        assert sum(map(len, allocation.values())) == total
        assert all(blocks[0] == 0 for blocks in allocation.values())


def test_budget_stricter_of_compute_and_latency_wins():
    costs = BlockCosts()
    assert resolve_budget(0.25, 100.0, costs, 12, 3).total_blocks == 3  # no costs measured yet
    costs.update(block_time_s=0.040, blocks=4, frame_time_s=0.060)  # 10 ms a block, 20 ms rest
    decision = resolve_budget(1.0, 65.0, costs, 12, 3)
    assert (decision.total_blocks, decision.binding) == (4, "latency")
    assert resolve_budget(0.25, 65.0, costs, 12, 3).binding == "compute"
    assert resolve_budget(1.0, 5.0, costs, 12, 3).total_blocks == 3  # floor: layer 0 each
    # the machine gets slower (another process takes the core): the same deadline buys less
    for _ in range(30):
        costs.update(block_time_s=0.080, blocks=4, frame_time_s=0.120)
    assert costs.deviation_s < 0.002  # steady again: the margin has shrunk
    assert resolve_budget(1.0, 65.0, costs, 12, 1).total_blocks == 1  # (65 - 40) // 20
    # scattered frame times widen the margin: fewer blocks for the same deadline
    steady = costs.blocks_within(0.125)
    for k in range(30):
        frame = 0.120 + (0.03 if k % 2 else -0.03)
        costs.update(block_time_s=0.080, blocks=4, frame_time_s=frame)
    assert costs.blocks_within(0.125) < steady
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(BudgetError):
            resolve_budget(bad, 0.0, costs, 12, 3)


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(SMALL)
    return FusionPipeline(model, QualityWeightedPolicy(SMALL.modalities, SMALL.layers))


@pytest.fixture(scope="module")
def frames():
    return World().render(4)


def sensor_frame(frames, **overrides) -> SensorFrame:
    arrays = dict(image=frames.image, depth=frames.depth, points=frames.points)
    arrays.update(overrides)
    return SensorFrame(**arrays, calib=frames.calib, lidar=frames.lidar)


def test_pipeline_runs_only_the_allocated_blocks(pipeline, frames):
    pipeline.warm_up(blank_frame(sensor_frame(frames)), frames=1)
    for fraction, expected in ((1.0, 12), (0.5, 6), (0.25, 3)):
        result = pipeline.run(sensor_frame(frames), fraction, score_threshold=0.0)
        assert pipeline.timer.calls == expected == result.budget.total_blocks
        assert sum(result.layers(MODALITIES).values()) == expected
        assert set(result.quality) == set(MODALITIES)
        assert result.timings_ms["total"] >= result.timings_ms["model"] > 0
    dead_lidar = pipeline.run(sensor_frame(frames, points=None), 1.0)
    assert dead_lidar.live == ("camera", "depth") and "lidar" not in dead_lidar.allocation
    assert pipeline.timer.calls == 8
    assert pipeline.costs.block_s > 0 and pipeline.costs.overhead_s > 0


def test_a_sensor_sized_frame_is_resized_once_and_measured_as_the_model_sees_it(pipeline):
    """At 1280x720 the rasters are the same as resizing inside each raster, bit for bit, and the
    quality is that of the model-size images."""
    big = World(WorldConfig(camera_width=1280, camera_height=720)).render(4)
    view = at_model_size(big, SMALL)
    assert view.image.shape == (SMALL.image_height, SMALL.image_width, 3)
    assert view.depth.shape == (SMALL.image_height, SMALL.image_width)
    assert view.points is big.points and (view.calib.width, view.calib.height) == (320, 240)
    direct, resized = prepare_inputs(big, SMALL), prepare_inputs(view, SMALL)
    assert np.array_equal(direct.K, resized.K)
    for name, raster in direct.rasters.items():
        assert np.array_equal(raster, resized.rasters[name]), name
    assert at_model_size(view, SMALL) is view  # already at the model's size: untouched
    result = pipeline.run(sensor_frame(big), 1.0)
    assert result.quality == measure_quality(view)


def test_corrupted_camera_loses_layers(pipeline, frames):
    noisy = corrupt(frames, {"camera": ("noise", 1.0)}, seed=1)
    clean = pipeline.run(sensor_frame(frames), 0.5)
    corrupted = pipeline.run(sensor_frame(noisy), 0.5)
    assert corrupted.quality["camera"] < 0.5 < clean.quality["camera"]
    assert corrupted.layers(MODALITIES)["camera"] < clean.layers(MODALITIES)["camera"]
    assert corrupted.layers(MODALITIES)["camera"] == 1


def test_quality_stride_measures_each_sensor_in_turn_and_serves_its_last_score(frames):
    """With a stride of 3 a noisy camera from frame 1 on is seen on frame 3, the camera's turn;
    a lidar that comes back is measured at once; with a stride of 1 every frame is measured."""
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(SMALL).eval()
    pipeline = FusionPipeline(model, EqualSplitPolicy(SMALL.modalities, SMALL.layers),
                              quality_stride=3)
    noisy = corrupt(frames, {"camera": ("noise", 1.0)}, seed=1)
    clean = measure_quality(sensor_frame(frames))
    seen = [pipeline.run(sensor_frame(f), 0.25).quality
            for f in (frames, noisy, noisy, noisy)]
    assert [q["camera"] for q in seen] == [clean["camera"]] * 3 + [measure_quality(
        sensor_frame(noisy))["camera"]]
    assert seen[3]["camera"] < 0.5 < clean["camera"]
    assert all(q["depth"] == clean["depth"] and q["lidar"] == clean["lidar"] for q in seen)
    without_lidar = pipeline.run(sensor_frame(noisy, points=None), 0.25)  # frame 4
    assert set(without_lidar.quality) == {"camera", "depth"}
    back = pipeline.run(sensor_frame(noisy), 0.25)  # frame 5, the lidar's turn anyway
    again = pipeline.run(sensor_frame(noisy, points=None), 0.25)  # frame 6
    returned = pipeline.run(sensor_frame(noisy), 0.25)  # frame 7: not its turn, no score kept
    assert back.quality["lidar"] == returned.quality["lidar"] == clean["lidar"]
    assert "lidar" not in again.quality
    pipeline.quality_stride = 1
    assert pipeline.run(sensor_frame(frames), 0.25).quality == clean
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="quality_stride"):
            pipeline.quality_stride = bad
    assert pipeline.quality_stride == 1


def test_bad_arrays_are_refused_with_a_kind(pipeline, frames):
    cases = {
        "size_mismatch": dict(image=frames.image[:100]),
        "empty_cloud": dict(points=np.zeros((0, 4), np.float32)),
        "non_finite": dict(points=np.full((5, 4), np.nan, np.float32)),
    }
    for kind, override in cases.items():
        with pytest.raises(InputError) as error:
            pipeline.run(sensor_frame(frames, **override))
        assert error.value.kind == kind


def test_moving_world_moves_smoothly_and_repeats():
    world = MovingWorld(World(), seed=3)
    a, b = world.scene_at(1.0), world.scene_at(1.1)
    step = np.linalg.norm(b.centers - a.centers, axis=1)
    assert step.max() > 0.01 and step.max() < 0.5  # < 5 m/s
    np.testing.assert_array_equal(MovingWorld(World(), seed=3).scene_at(1.0).centers, a.centers)
    owned = a.prims.owner >= 0
    np.testing.assert_array_equal(a.prims.center[~owned], b.prims.center[~owned])  # scenery
    capture = world.camera(1.0, 1, {"camera": ("dead", 1.0)})
    assert capture.image.max() == 0 and np.isfinite(capture.depth).any()
    assert len(world.lidar(1.0, 1, {"lidar": ("dropout", 0.5)})) < len(world.lidar(1.0, 1, {}))


def test_scenario_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "events:\n"
        "  - {at: 2.0, budget: 0.25}\n"
        "  - {at: 1.0, corrupt: {camera: [fog, 0.8], depth: [none, 0]}}\n"
        "  - {at: 3.0, kill: lidar}\n"
        "  - {at: 4.0, revive: lidar}\n"
        "  - {at: 5.0, latency_budget: 45}\n"
        "  - {at: 6.0, busy_cores: 1}\n"
        "  - {at: 7.0, busy_cores: 0}\n"
    )
    scenario = Scenario.load(path)
    assert [e.action for e in scenario.due(1.5)] == ["corrupt", "corrupt"]
    assert scenario.due(1.5) == []
    assert [(e.action, e.value) for e in scenario.due(2.0)] == [("budget", 0.25)]
    assert [e.modality for e in scenario.due(4)] == ["lidar", "lidar"]
    assert [(e.action, e.value) for e in scenario.due(10)] == [
        ("latency_budget", 45.0), ("busy_cores", 1.0), ("busy_cores", 0.0)]
    assert scenario.finished
    assert [e.label for e in scenario.events] == [
        "camera fog 0.8", "depth clear", "budget 0.25", "kill lidar", "revive lidar",
        "deadline 45 ms", "1 core(s) busy", "cores free"]
    for bad in (
        "events:\n  - {at: 1, corrupt: {camera: [banana, 0.5]}}\n",
        "events:\n  - {at: 1, corrupt: {camera: [fog, 2]}}\n",
        "events:\n  - {at: 1, budget: 0}\n",
        "events:\n  - {at: 1, kill: radar}\n",
        "events:\n  - {at: 1, budget: 0.5, kill: lidar}\n",
        "events:\n  - {at: 1, latency_budget: -5}\n",
        "events:\n  - {at: 1, busy_cores: 1.5}\n",
        "events:\n  - {at: 1, busy_cores: true}\n",
        "nothing: here\n",
    ):
        path.write_text(bad)
        with pytest.raises(ScenarioError):
            Scenario.load(path)


def test_overlay_draws_boxes_and_layer_bars(frames):
    boxes = Boxes3D(
        frames.objects.labels, frames.objects.centers, frames.objects.sizes,
        frames.objects.yaws, np.ones(len(frames.objects), np.float32),
    )  # fmt: skip
    layers = {"camera": 1, "depth": 4, "lidar": 2}
    picture = draw_overlay(frames.image, boxes, frames.calib, layers, {}, 4, ("a", "b", "c"))
    assert picture.shape == frames.image.shape and not np.shares_memory(picture, frames.image)
    changed = np.any(picture != frames.image, axis=2)
    x1, y1, x2, y2 = frames.objects.boxes2d[np.argmax(frames.objects.visibility)].astype(int)
    assert changed[max(y1 - 5, 0) : y2 + 5, max(x1 - 5, 0) : x2 + 5].any()  # box edges
    assert changed[-8:].mean() > 0.5  # the bars along the bottom
    bar_row = picture[-3]
    slot = picture.shape[1] // 3
    filled = [np.mean(np.all(bar_row[i * slot : (i + 1) * slot] == (250, 200, 40), axis=1))
              for i in range(3)]  # fmt: skip
    assert filled[0] < filled[2] < filled[1]


def test_controller_policy_runs_in_the_pipeline_within_the_budget(frames, tmp_path):
    """The learned controller behind the runtime budget: it gets the frame's inputs, keeps
    block 0 of every live modality, gives a dead one nothing and never exceeds the blocks the
    budget allows; a missing or mismatched checkpoint is refused by name."""
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(SMALL)
    save_controller(LayerController(ControllerConfig(channels=(8, 8), hidden=16), SMALL),
                    tmp_path / "controller", {})
    policy = make_policy("controller", model, str(tmp_path / "controller"))
    assert policy.name == "controller"
    runner = FusionPipeline(model, policy)
    for fraction, limit in ((1.0, 12), (0.5, 6), (0.25, 3)):
        result = runner.run(sensor_frame(frames), fraction)
        assert runner.timer.calls == sum(result.layers(MODALITIES).values()) <= limit
        assert all(blocks[0] == 0 for blocks in result.allocation.values())
    result = runner.run(sensor_frame(frames, depth=None), 0.5)
    assert set(result.allocation) == {"camera", "lidar"} and runner.timer.calls <= 6
    assert result.timings_ms["allocate"] > 0
    with pytest.raises(CheckpointError):
        make_policy("controller", model, str(tmp_path / "missing"))
    other = AdaptiveFusionDetector(ModelConfig(dim=32, heads=2, layers=2))
    with pytest.raises((CheckpointError, ValueError)):
        make_policy("controller", other, str(tmp_path / "controller"))
    with pytest.raises(ValueError, match="unknown allocation policy"):
        make_policy("greedy", model)


def test_packaged_controller_fits_the_packaged_detector():
    """policy:=controller works out of the box: the shipped controller was trained for the
    shipped detector and gives every live modality its block 0 within the budget."""
    model, _ = load_checkpoint(DEFAULT_MODEL)
    policy = make_policy("controller", model)
    inputs = prepare_inputs(World().render(5), model.config)
    allocation = policy.allocate({"camera": 1.0, "depth": 1.0, "lidar": 1.0}, MODALITIES, 6,
                                 inputs)
    assert set(allocation) == set(MODALITIES) and sum(map(len, allocation.values())) <= 6
