"""DynMM's gate: its menu of paths, what may be chosen (live sensors, the budget), the
straight-through path weights, the training table's losses against the detector itself, the
trainer (it learns to pick the paths with low loss within the budget), the checkpoint, and the
policy in the runtime pipeline."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from adaptive_fusion.lab.evaluation.allocators import frame_score
from adaptive_fusion.lab.evaluation.runner import evaluation_truth
from adaptive_fusion.lab.gate.config import load_gate_config
from adaptive_fusion.lab.gate.table import sample_row
from adaptive_fusion.lab.gate.trainer import (
    GateTrainer,
    dropping_labels,
    path_weights,
    temperature_at,
)
from adaptive_fusion.lab.training.config import ConfigError
from adaptive_fusion.lab.training.data import frame_targets
from adaptive_fusion.lab.training.loss import per_sample_detection_loss
from adaptive_fusion.model.allocation import first_blocks
from adaptive_fusion.model.checkpoint import (
    DEFAULT_MODEL,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.policies.checkpoint import DEFAULT_GATE, load_gate, save_gate
from adaptive_fusion.policies.costs import CostTable, flop_cost_table
from adaptive_fusion.policies.gate import (
    GateConfig,
    ModalityGate,
    feasible_paths,
    path_costs,
    path_counts,
)
from adaptive_fusion.policies.learned import GateAllocator
from adaptive_fusion.policies.registry import make_policy
from adaptive_fusion.runtime import FusionPipeline, SensorFrame
from adaptive_fusion.sim.world import World

torch.set_num_threads(1)
MODALITIES = ("camera", "depth", "lidar")
SMALL = ModelConfig(image_width=128, image_height=96, dim=32, heads=2, layers=4)
TINY = Path(__file__).resolve().parents[1] / "config" / "gate" / "tiny.yaml"
UNIFORM = CostTable("ms", {name: (1.0,) * 4 for name in MODALITIES}, fixed=2.0)


@pytest.fixture(scope="module")
def small_detector():
    torch.manual_seed(0)
    return AdaptiveFusionDetector(SMALL).eval()


@pytest.fixture(scope="module")
def frames():
    return World().render(3)


def favouring(path: tuple[int, ...]) -> ModalityGate:
    """A gate (depths 1, 2, 4) whose logits ignore the frame: `path` first, then the others by
    index order reversed (so that its second choice is known)."""
    gate = ModalityGate(GateConfig(depths=(1, 2, 4)), SMALL)
    with torch.no_grad():
        for layer in (gate.per_modality, gate.per_path):
            layer.weight.zero_()
            layer.bias.zero_()
        gate.per_path.bias.copy_(torch.linspace(0.0, 1.0, len(gate.paths)).flip(0))
        index = int(np.flatnonzero((gate.paths.numpy() == path).all(axis=1))[0])
        gate.per_path.bias[index] = 10.0
    return gate


def test_the_menu_holds_every_subset_of_modalities_at_every_depth():
    paths = path_counts(3, (1, 2, 4, 8))
    assert paths.shape == (124, 3) and len({tuple(p) for p in paths}) == 124
    assert set(paths.ravel()) == {0, 1, 2, 4, 8} and paths.any(axis=1).all()
    # each modality alone at each depth, and all three at each depth, are on the menu
    for depth in (1, 2, 4, 8):
        assert (paths == (depth, 0, 0)).all(axis=1).sum() == 1
        assert (paths == (depth,) * 3).all(axis=1).sum() == 1
    with pytest.raises(ValueError, match="exceeds"):
        ModalityGate(GateConfig(depths=(1, 8)), SMALL)
    with pytest.raises(ValueError, match="distinct"):
        GateConfig.from_dict({"depths": [2, 2]})


def test_feasible_paths_run_only_live_sensors_within_the_budget():
    paths = torch.from_numpy(path_counts(3, (1, 2, 4)))
    costs = torch.from_numpy(path_costs(paths.numpy(), UNIFORM, MODALITIES))
    assert costs.tolist() == paths.sum(dim=1).double().tolist()  # one ms per block
    live = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1]])
    allowed = feasible_paths(paths, costs, live, torch.tensor([5.0, 12.0, 0.5]))
    assert allowed[0].any() and (costs[allowed[0]] <= 5).all()
    assert (paths[allowed[1]][:, 1] == 0).all() and allowed[1].sum() == 15  # (0..3 squared) - 1
    # nothing fits half a block: the cheapest path over the live lidar, one block
    assert paths[allowed[2]].tolist() == [[0, 0, 1]]


def test_the_allocator_picks_the_gates_best_path_among_those_that_fit(small_detector, frames):
    table = flop_cost_table(small_detector)
    block = table.block["camera"][0]
    gate = GateAllocator(favouring((2, 0, 4)), table)
    inputs = prepare_inputs(frames, SMALL)
    quality = dict.fromkeys(MODALITIES, 1.0)
    assert gate.allocate(inputs, quality, MODALITIES, 6 * block) == {
        "camera": (0, 1), "lidar": (0, 1, 2, 3)}
    index = gate.choose(inputs, quality, MODALITIES, 6 * block)
    assert gate.expected_cost(index) == pytest.approx(table.fixed + 6 * block)
    # below its cost, or with the lidar dead, the favourite is not on offer
    for budget, live in ((5 * block, MODALITIES), (12 * block, ("camera", "depth"))):
        allocation = gate.allocate(inputs, quality, live, budget)
        assert allocation != {"camera": (0, 1), "lidar": (0, 1, 2, 3)}
        assert set(allocation) <= set(live)
        assert table.allocation_cost(allocation) <= budget * (1 + 1e-9)
    with pytest.raises(ValueError, match="no live"):
        gate.allocate(inputs, quality, (), block)


def test_path_weights_are_the_argmax_forward_and_the_softmax_backward():
    logits = torch.tensor([[0.3, 2.0, 1.0, -1.0]], requires_grad=True)
    allowed = torch.tensor([[True, False, True, True]])
    losses = torch.tensor([[1.0, 0.0, 2.0, 3.0]])
    hard = path_weights(logits, allowed, 0.5, hard=True)
    assert hard.tolist() == [[0.0, 0.0, 1.0, 0.0]]  # the best allowed, not the best
    (hard * losses).sum().backward()
    straight = logits.grad.clone()
    logits.grad = None
    soft = path_weights(logits, allowed, 0.5, hard=False)
    assert soft[0, 1] == 0 and soft.sum().item() == pytest.approx(1.0)
    (soft * losses).sum().backward()
    assert torch.allclose(straight, logits.grad)
    assert temperature_at(0, 5, 1.0, 0.001) == 1.0
    assert temperature_at(4, 5, 1.0, 0.001) == pytest.approx(0.001)


def test_the_tables_loss_of_a_path_is_the_detectors_loss_running_that_path(small_detector,
                                                                          frames):
    gate = ModalityGate(GateConfig(depths=(1, 2, 4)), SMALL)
    row = sample_row(small_detector, gate, frames)
    inputs = prepare_inputs(frames, SMALL)
    targets = {k: torch.from_numpy(v).unsqueeze(0)
               for k, v in frame_targets(frames, inputs, SMALL).items()}
    rasters = {k: torch.from_numpy(v).unsqueeze(0) for k, v in inputs.rasters.items()}
    paths = gate.paths.numpy()
    for path in ((4, 4, 4), (1, 0, 0), (0, 2, 4), (2, 1, 0)):
        index = int(np.flatnonzero((paths == path).all(axis=1))[0])
        allocation = {n: first_blocks(k) for n, k in zip(MODALITIES, path, strict=True) if k}
        with torch.no_grad():
            outputs = small_detector(rasters, allocation)
        expected = per_sample_detection_loss(outputs, targets, teacher_forcing=False)
        assert row["detection_loss"][index].item() == pytest.approx(expected.item(), rel=1e-4)
        boxes = decode(outputs, inputs.K, inputs.T_cam_lidar, SMALL)
        ap = frame_score(boxes, evaluation_truth(frames, inputs, SMALL), SMALL.classes)[0]
        assert row["ap_misses"][index].item() == pytest.approx(1.0 - ap, abs=1e-6)
    assert row["live"].tolist() == [1.0, 1.0, 1.0] and not row["detection_loss"].isnan().any()
    assert ((row["ap_misses"] >= 0) & (row["ap_misses"] <= 1)).all()
    # a dead lidar: no paths with it, and the gate does not see its view
    dead = World().render(3)
    dead.points = dead.points[:0]
    row = sample_row(small_detector, gate, dead)
    assert row["live"].tolist() == [1.0, 1.0, 0.0] and not row["view_lidar"].any()
    assert row["view_camera"].any() and row["view_lidar"].shape == (8, *SMALL.head_grid)
    for key in ("detection_loss", "ap_misses"):
        assert (row[key].isnan() == torch.from_numpy(paths[:, 2] > 0)).all()


def tiny_gate_config(tmp_path: Path, detector: Path) -> Path:
    values = yaml.safe_load(TINY.read_text())
    values.update(out_dir=str(tmp_path / "gate"), detector=str(detector))
    values["data"]["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def tiny_trainer(tmp_path_factory, small_detector):
    root = tmp_path_factory.mktemp("gate")
    save_checkpoint(small_detector, root / "tiny", {})
    config = load_gate_config(tiny_gate_config(root, root / "tiny"))
    return GateTrainer(config, show_progress=False)


def test_tiny_gate_training_writes_tables_costs_and_checkpoints(tiny_trainer):
    trainer = tiny_trainer
    out = trainer.out
    assert sorted(p.name for p in (out / "table" / "train").iterdir()) == [
        "0000000.safetensors", "0000004.safetensors"]
    assert len(trainer.val["live"]) == 4 and trainer.costs.unit == "ms"
    summary = trainer.train()
    assert summary["epochs"] == 3 and math.isfinite(summary["best_val_gate"])
    gate, document = load_gate(out / "best")
    assert gate.config.depths == (1, 2, 4) and document["training"]["costs"]["unit"] == "ms"
    assert len(document["training"]["history"]) >= 2  # best comes after the first hard epoch
    metrics = json.loads((out / "last.json").read_text())["metrics"]
    for fraction in ("0.25", "0.5"):
        scores = metrics[f"val_{fraction}"]
        assert scores["oracle"] <= min(scores["gate"], scores["equal_split"])
    # a second trainer on the same out_dir reuses the table and the measured costs
    again = GateTrainer(trainer.config, show_progress=False)
    assert again.costs == trainer.costs
    torch.testing.assert_close(again.train_table["detection_loss"],
                               trainer.train_table["detection_loss"],
                               rtol=0, atol=0, equal_nan=True)


def test_the_gate_trains_on_the_frames_ap_when_told(tmp_path, tiny_trainer):
    values = yaml.safe_load(TINY.read_text())
    for task, accepted in (("ap_misses", True), ("map", False)):
        values["task"] = task
        path = tmp_path / f"{task}.yaml"
        path.write_text(yaml.safe_dump(values))
        if accepted:
            assert load_gate_config(path).task == task
        else:
            with pytest.raises(ConfigError, match="task must be one of"):
                load_gate_config(path)
    trainer = tiny_trainer
    trainer.config.task = "ap_misses"
    try:
        views, _, _, values = trainer._batch(trainer.val, slice(None))
        assert torch.equal(values.nan_to_num(-1), trainer.val["ap_misses"].nan_to_num(-1))
        assert math.isfinite(trainer.validate()["val_gate"])
    finally:
        trainer.config.task = "detection_loss"


def test_gate_training_learns_which_sensor_to_trust(tiny_trainer):
    """On a table where running a sensor costs loss in proportion to how bad its quality is
    (and every block costs a little), the trained gate picks nearly the best path within the
    budget, and does better than the equal split: it reads the quality it is given."""
    trainer = tiny_trainer
    rng = np.random.default_rng(0)
    paths = trainer.gate.paths.float()

    def table(samples: int) -> dict[str, torch.Tensor]:
        quality = torch.from_numpy(rng.choice([0.1, 1.0], size=(samples, 3))).float()
        live = torch.ones(samples, 3)
        running = (paths > 0).float()
        # a bad sensor adds 1 to the loss, a good one takes 0.3 off; deeper is slightly better
        losses = 2.0 + running @ (1.3 * (1 - quality) - 0.3).T - 0.02 * paths.sum(1, keepdim=True)
        views = {key: torch.zeros(samples, *trainer.train_table[key].shape[1:],
                                  dtype=torch.float16)
                 for key in (f"view_{name}" for name in MODALITIES)}
        return {**views, "quality": quality, "live": live,
                "detection_loss": losses.T.contiguous()}

    trainer.train_table, trainer.val = table(512), table(128)
    torch.manual_seed(0)  # a fresh gate, whatever ran before on this trainer
    trainer.gate = ModalityGate(trainer.gate.config, trainer.gate.model_config)
    schedule = trainer.config.schedule
    schedule.epochs, schedule.batch_size, schedule.hard_epoch = 60, 32, 45
    trainer.config.optimiser.lr = 0.01
    summary = trainer.train()
    last = summary["last"]
    assert last["val_gate"] < last["val_equal_split"] - 0.3
    assert last["val_gate"] < last["val_oracle"] + 0.05


def test_dropping_labels_compare_the_deepest_path_with_and_without_each_sensor():
    paths = torch.from_numpy(path_counts(3, (1, 2, 4)))
    index = {tuple(p): i for i, p in enumerate(paths.tolist())}
    losses = torch.full((3, len(paths)), 2.0)
    losses[0, index[(4, 4, 0)]] = 1.5  # sample 0: leaving the lidar out helps
    losses[0, index[(0, 4, 4)]] = 2.5  # and the camera is needed
    losses[1, index[(4, 4, 2)]] = 0.5  # sample 1: a shallower path is better, not dropping
    losses[2, index[(4, 0, 0)]] = 1.0  # sample 2: only the camera is live, nothing to drop
    live = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 0]])
    helps, counted = dropping_labels(paths, live, losses)
    assert helps.tolist() == [[False, False, True], [False, False, False], [False] * 3]
    assert counted.tolist() == [[True] * 3, [True] * 3, [False] * 3]


def test_the_use_loss_teaches_the_gate_to_leave_out_a_sensor_that_misleads(tiny_trainer):
    """Running a good sensor takes 0.05 off the loss; a bad lidar (quality 0.1) adds 0.005, a
    margin of the size the real table shows, within the paths' noise. Trained with the use
    loss, the gate leaves the bad lidar out and keeps the good one."""
    trainer = tiny_trainer
    rng = np.random.default_rng(1)
    paths = trainer.gate.paths.float()

    def table(samples: int) -> dict[str, torch.Tensor]:
        bad = torch.from_numpy(rng.random(samples) < 0.5)
        quality = torch.ones(samples, 3)
        quality[bad, 2] = 0.1
        running = (paths > 0).float()  # (paths, 3)
        value = torch.full((samples, 3), -0.05)
        value[bad, 2] = 0.005
        losses = (2.0 + value @ running.T - 0.001 * paths.sum(1)
                  + 0.002 * torch.from_numpy(rng.normal(size=(samples, len(paths)))).float())
        views = {key: torch.zeros(samples, *trainer.train_table[key].shape[1:],
                                  dtype=torch.float16)
                 for key in (f"view_{name}" for name in MODALITIES)}
        return {**views, "quality": quality, "live": torch.ones(samples, 3),
                "detection_loss": losses.contiguous()}

    trainer.train_table, trainer.val = table(512), table(128)
    schedule = trainer.config.schedule
    schedule.epochs, schedule.batch_size, schedule.hard_epoch = 30, 32, 20
    trainer.config.optimiser.lr = 0.01
    trainer.config.use_weight = 4.0
    torch.manual_seed(0)
    trainer.gate = ModalityGate(trainer.gate.config, trainer.gate.model_config)
    trainer.train()
    views, quality, live, _ = trainer._batch(trainer.val, slice(None))
    budget = torch.full((len(live),), 0.25)
    with torch.no_grad():
        runs_lidar = trainer.gate.paths[trainer.gate(views, quality, live, budget).argmax(1), 2] > 0
    bad = quality[:, 2] < 0.5
    assert (~runs_lidar[bad]).float().mean() > 0.9 and runs_lidar[~bad].float().mean() > 0.9


def test_gate_checkpoint_round_trip_and_refusals(tmp_path):
    gate = favouring((1, 1, 1))
    save_gate(gate, tmp_path / "gate", {"training": {}})
    loaded, document = load_gate(tmp_path / "gate.safetensors")
    assert document["format"] == "adaptive_fusion.gate" and loaded.config == gate.config
    for key, value in gate.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    (tmp_path / "gate.json").write_text(json.dumps({**document, "format": "other"}))
    with pytest.raises(CheckpointError, match="not an adaptive_fusion.gate"):
        load_gate(tmp_path / "gate")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_gate(tmp_path / "absent")


def test_dynmm_policy_runs_only_its_path_in_the_pipeline(frames, tmp_path):
    torch.manual_seed(0)
    model = AdaptiveFusionDetector(SMALL)
    save_gate(favouring((2, 0, 1)), tmp_path / "gate", {})
    policy = make_policy("dynmm", model, str(tmp_path / "gate"))
    assert policy.name == "dynmm"
    runner = FusionPipeline(model, policy)
    frame = SensorFrame(image=frames.image, depth=frames.depth, points=frames.points,
                        calib=frames.calib, lidar=frames.lidar)
    result = runner.run(frame, 0.25)  # 3 of 12 blocks: its favourite fits
    assert result.allocation == {"camera": (0, 1), "lidar": (0,)} and runner.timer.calls == 3
    result = runner.run(frame, 0.125)  # 1 block (the floor is one per live modality: 3)
    assert runner.timer.calls == sum(map(len, result.allocation.values())) <= 3
    other = AdaptiveFusionDetector(ModelConfig(dim=32, heads=2, layers=4))
    with pytest.raises(CheckpointError, match="another detector"):
        make_policy("dynmm", other, str(tmp_path / "gate"))


def test_packaged_gate_fits_the_packaged_detector():
    """policy:=dynmm works out of the box: the shipped gate was trained for the shipped
    detector with costs measured in ms, and its choice fits the budget."""
    model, _ = load_checkpoint(DEFAULT_MODEL)
    gate, document = load_gate(DEFAULT_GATE)
    assert gate.model_config == model.config and document["training"]["costs"]["unit"] == "ms"
    policy = make_policy("dynmm", model)
    inputs = prepare_inputs(World().render(5), model.config)
    allocation = policy.allocate(dict.fromkeys(MODALITIES, 1.0), MODALITIES, 6, inputs)
    assert allocation and sum(map(len, allocation.values())) <= 6
