"""Training: config checking, augmentation geometry, LayerDrop schedule, sampler, loss, a tiny
run that resumes exactly, and two data-parallel CPU processes under torchrun."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from adaptive_fusion.lab.training.augment import CorruptionSampler, mirror
from adaptive_fusion.lab.training.cache import MANIFEST, build_cache, frame_path
from adaptive_fusion.lab.training.config import ConfigError, load_config
from adaptive_fusion.lab.training.distributed import EpochSampler
from adaptive_fusion.lab.training.layerdrop import DropSchedule
from adaptive_fusion.lab.training.loss import (
    depth_reference_choice,
    depth_scale_loss,
    detection_loss,
    focal_loss,
    per_sample_detection_loss,
    training_loss,
)
from adaptive_fusion.lab.training.precision import cpu_has_native_bf16, use_bf16
from adaptive_fusion.lab.training.trainer import ResumeError, Trainer
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.world import World

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "config" / "training" / "tiny.yaml"
MODALITIES = ("camera", "depth", "lidar")


def test_config_rejects_unknown_keys(tmp_path):
    values = yaml.safe_load(TINY.read_text())
    values["schedule"]["layerdrop"]["max_rte"] = 0.3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="schedule.layerdrop.*max_rte"):
        load_config(path)
    values = yaml.safe_load(TINY.read_text())
    values["model"]["dim"] = 30  # not divisible by 2 heads? it is; 4 heads is not
    values["model"]["heads"] = 4
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="divisible"):
        load_config(path)


def test_bf16_auto_follows_the_cpu_flags_and_bad_settings_are_refused(tmp_path):
    """bf16 autocast under "auto" only with native bfloat16 (AVX512-BF16 or AMX flags): without
    them torch emulates it, 3x slower here. true and false are kept as given; anything else is
    a config error."""
    plain, native = tmp_path / "plain", tmp_path / "native"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    native.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert not cpu_has_native_bf16(plain)
    assert cpu_has_native_bf16(native)
    assert not cpu_has_native_bf16(tmp_path / "missing")
    cpu = torch.device("cpu")
    assert use_bf16(True, cpu) and not use_bf16(False, cpu)
    assert use_bf16("auto", cpu) == cpu_has_native_bf16()
    values = yaml.safe_load(TINY.read_text())
    path = tmp_path / "bad.yaml"
    for bad in ("yes", 1, None):
        path.write_text(yaml.safe_dump({**values, "bf16": bad}))
        with pytest.raises(ConfigError, match="bf16 must be true, false or auto"):
            load_config(path)
    path.write_text(yaml.safe_dump({**values, "bf16": "auto"}))
    assert load_config(path).bf16 == "auto"


def test_mirror_is_a_consistent_frame_set():
    frames = World(WorldConfig()).render(3)
    mirrored = mirror(frames)
    uv, z = frames.calib.project(frames.objects.centers)
    uv_m, z_m = mirrored.calib.project(mirrored.objects.centers)
    np.testing.assert_allclose(uv_m[:, 0], frames.calib.width - uv[:, 0], atol=1e-6)
    np.testing.assert_allclose(uv_m[:, 1], uv[:, 1], atol=1e-6)
    np.testing.assert_allclose(z_m, z, atol=1e-9)
    pts_uv, _ = frames.calib.project(frames.points)
    pts_uv_m, _ = mirrored.calib.project(mirrored.points)
    front = np.isfinite(pts_uv[:, 0])
    np.testing.assert_allclose(pts_uv_m[front, 0], frames.calib.width - pts_uv[front, 0],
                               atol=1e-4)
    np.testing.assert_array_equal(mirrored.image, frames.image[:, ::-1])
    assert mirrored.objects.boxes2d[:, 0].tolist() == pytest.approx(
        (frames.calib.width - frames.objects.boxes2d[:, 2]).tolist())
    np.testing.assert_allclose(mirrored.objects.yaws, -frames.objects.yaws)


def test_corruption_sampler_respects_held_out_and_probability():
    sampler = CorruptionSampler(probability=0.5, fog_probability=0.0,
                                held_out=["camera:motion_blur", "lidar:dead"])
    rng = np.random.default_rng(0)
    specs = [sampler.sample(rng) for _ in range(2000)]
    camera_kinds = {s["camera"][0] for s in specs if "camera" in s}
    assert "motion_blur" not in camera_kinds and "noise" in camera_kinds
    assert all(s["lidar"][0] != "dead" for s in specs if "lidar" in s)
    share = np.mean(["depth" in s for s in specs])
    assert 0.45 < share < 0.55
    assert all(0.1 <= s[m][1] <= 1.0 for s in specs for m in s)


def test_layerdrop_schedule_ramps_and_always_keeps_block_zero():
    schedule = DropSchedule(max_rate=0.2, ramp_start_epoch=1.0, ramp_epochs=2.0,
                            budget_probability=0.3)
    assert schedule.rate(0.5) == 0.0 and schedule.rate(2.0) == pytest.approx(0.1)
    assert schedule.rate(5.0) == pytest.approx(0.2)
    rng = np.random.default_rng(0)
    before = schedule.allocation(0.0, MODALITIES, 8, rng)
    assert before == {m: tuple(range(8)) for m in MODALITIES}
    counts = []
    for _ in range(3000):
        allocation = schedule.allocation(4.0, MODALITIES, 8, rng)
        assert all(blocks[0] == 0 for blocks in allocation.values())
        counts.append(len(allocation["camera"]))
    counts = np.array(counts)
    # 70% LayerDrop batches keep 1 + 7 * 0.8 blocks on average; 30% budget batches 1 + 3.5.
    assert np.mean(counts) == pytest.approx(0.7 * 6.6 + 0.3 * 4.5, abs=0.15)
    assert (counts <= 2).mean() > 0.05  # low budgets are trained, not left to chance


def test_modality_dropout_drops_at_most_one_modality():
    present = DropSchedule(modality_dropout=0.3).present(4000, MODALITIES, np.random.default_rng(1))
    absent = sum((~p).int() for p in present.values())
    assert absent.max() == 1
    assert absent.float().mean().item() == pytest.approx(0.3, abs=0.03)


def test_epoch_sampler_shards_ranks_and_resumes():
    full = EpochSampler(10, 4, seed=0, epoch=1).indices
    ranks = [EpochSampler(10, 4, seed=0, epoch=1, rank=r, world_size=2).indices for r in (0, 1)]
    assert len(full) == 8 and sorted(ranks[0] + ranks[1]) == sorted(full)
    assert ranks[0][:2] + ranks[1][:2] == full[:4]  # global batch 0 split across the ranks
    assert EpochSampler(10, 4, seed=0, epoch=1, start_batch=1).indices == full[4:]
    assert EpochSampler(10, 4, seed=0, epoch=2).indices != full


def test_focal_loss_hand_computed():
    # One positive cell with p = 0.5 and one negative (target 0) with p = 0.5, one peak:
    # -(log 0.5 * 0.5^2) - (log 0.5 * 0.5^2 * 1^4) = 0.5 * log 2.
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert focal_loss(logits, target).item() == pytest.approx(0.5 * np.log(2), rel=1e-5)


def test_depth_reference_is_the_farthest_surface_in_front_of_the_centre():
    """Candidates of one cell: an occluder at 8 m, the object's own surface at 18 m, background at
    40 m, the free slot last. A box centre at 20 m should take its own surface; at 7.8 m (just
    in front of the occluder) the occluder; at 120 m (no measurement within a factor of 2) the
    free slot; and a missing measurement is never the answer."""
    candidates = torch.tensor(np.log([8.0, 18.0, 40.0, 1.0]), dtype=torch.float32)
    outputs = {"depth_candidates": candidates.view(1, 4, 1, 1),
               "depth_available": torch.ones(1, 4, 1, 1), "depth_own": torch.zeros(1, 4, 1, 1)}

    def choice(metres: float) -> int:
        return int(depth_reference_choice(outputs, torch.tensor(np.log(metres)).view(1, 1, 1, 1),
                                          torch.full((1, 1, 1, 1), 0.3)))  # a pedestrian

    assert [choice(20.0), choice(7.8), choice(120.0)] == [1, 0, 3]
    outputs["depth_available"][0, 1] = 0.0
    assert choice(20.0) == 2  # the occluder is too far in front: the background just behind


def test_depth_reference_is_the_own_cell_when_it_sees_the_box():
    """A 3x3 window around a car's centre cell (centre 20 m away, footprint radius 2.4 m, so its
    nearest point can be 2.4 m in front). Its own cell measuring the car's near side at 18 m is
    the reference, though a neighbour measures the car 19.5 m away, nearer the centre; its own
    cell measuring an occluder at 8 m, the neighbour on the car is; a measurement 3 m in front
    (more than the car's radius) is not the car's: the neighbour again."""
    metres = np.full(9, 60.0)
    metres[4], metres[7] = 18.0, 19.5  # the centre cell and the one below it
    candidates = torch.tensor(np.log([*metres, 1.0]), dtype=torch.float32).view(1, 10, 1, 1)
    outputs = {"depth_candidates": candidates, "depth_available": torch.ones(1, 10, 1, 1),
               "depth_own": torch.zeros(1, 10, 1, 1)}
    outputs["depth_own"][0, 4] = 1.0
    log_depth, radius = torch.tensor(np.log(20.0)).view(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.4)

    def choice() -> int:
        return int(depth_reference_choice(outputs, log_depth, radius))

    assert choice() == 4
    for own in (8.0, 17.0):
        outputs["depth_candidates"][0, 4] = float(np.log(own))
        assert choice() == 7, own
    outputs["depth_available"][0, 4] = 0.0
    outputs["depth_candidates"][0, 4] = float(np.log(18.0))
    assert choice() == 7  # no measurement in its own cell


def test_depth_reference_among_several_own_measurements_is_the_one_nearest_the_centre():
    """Two reference maps (a cell's nearest and farthest return), 3x3 windows: the own cell is
    index 4 of the first and 13 of the second. A car centred at 20 m whose own cell sees an
    occluder at 8 m nearest and the car's side at 18.5 m farthest takes the farthest; when the
    farthest is the background at 60 m, a neighbour's measurement on the car (19 m) wins."""
    metres = np.full(18, 60.0)
    metres[4], metres[13], metres[7] = 8.0, 18.5, 19.0
    candidates = torch.tensor(np.log([*metres, 1.0]), dtype=torch.float32).view(1, 19, 1, 1)
    own = torch.zeros(1, 19, 1, 1)
    own[0, [4, 13]] = 1.0
    outputs = {"depth_candidates": candidates, "depth_available": torch.ones(1, 19, 1, 1),
               "depth_own": own}
    log_depth, radius = torch.tensor(np.log(20.0)).view(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.4)
    assert int(depth_reference_choice(outputs, log_depth, radius)) == 13
    outputs["depth_candidates"][0, 13] = float(np.log(60.0))
    assert int(depth_reference_choice(outputs, log_depth, radius)) == 7
    # a car 4 m away: its side 1.8 m away is on it (r = 2.4 m) though over a factor 2 nearer
    outputs["depth_candidates"][0, 13] = float(np.log(1.8))
    assert int(depth_reference_choice(outputs, torch.tensor(np.log(4.0)).view(1, 1, 1, 1),
                                      radius)) == 13


def test_depth_choice_loss_teaches_the_residual_against_the_right_reference():
    """With a head that picked the wrong candidate, the depth L1 is the residual's error against
    the candidate it should have chosen, and the choice pays -log of the probability of the
    candidates on that surface (18 m, and 18.2 m from the next cell). Without teacher forcing
    (the loss a controller's decisions are judged by) the wrong depth itself is scored."""
    log_depth = np.log(20.0)
    outputs = {
        "heatmap": torch.zeros(1, 3, 1, 1),
        "offset": torch.zeros(1, 2, 1, 1), "log_size": torch.zeros(1, 3, 1, 1),
        "yaw": torch.zeros(1, 2, 1, 1),
        "depth_candidates": torch.tensor(np.log([8.0, 18.0, 18.2, 1.0]), dtype=torch.float32
                                         ).view(1, 4, 1, 1),
        "depth_available": torch.ones(1, 4, 1, 1), "depth_own": torch.zeros(1, 4, 1, 1),
        "depth_choice": torch.tensor([5.0, 0.0, 0.0, 0.0]).view(1, 4, 1, 1),
        "depth_residual": torch.full((1, 1, 1, 1), 0.05),
    }
    outputs["log_depth"] = outputs["depth_residual"] + np.log(8.0)
    regression = torch.zeros(1, 8, 1, 1)
    regression[0, 2] = log_depth
    targets = {"heatmap": torch.zeros(1, 3, 1, 1), "regression": regression,
               "mask": torch.ones(1, 1, 1)}
    parts = detection_loss(outputs, targets)
    expected_l1 = 2.0 * abs(0.05 + np.log(18.2) - log_depth)  # log_depth weight 2
    assert parts["log_depth"].item() == pytest.approx(expected_l1, rel=1e-5)
    expected = -np.log(2.0 / (np.exp(5.0) + 3.0))  # softmax mass of the two good slots
    assert parts["depth_choice"].item() == pytest.approx(0.5 * expected, rel=1e-5)
    # as deployed: the depth it output (8 m + residual) is scored, and there is no choice term
    deployed = detection_loss(outputs, targets, teacher_forcing=False)
    assert "depth_choice" not in deployed
    expected_l1 = 2.0 * abs(0.05 + np.log(8.0) - log_depth)
    assert deployed["log_depth"].item() == pytest.approx(expected_l1, rel=1e-5)


def test_depth_scale_loss_is_least_at_the_log_of_the_inference_error():
    """The confidence channel's Laplace NLL is minimised where exp(s) equals the error of the
    depth the head outputs, and it does not pull that depth: the error is detached. The
    per-sample loss that scores allocations leaves it out."""
    regression = torch.zeros(1, 8, 1, 1)
    regression[0, 2] = float(np.log(20.0))
    targets = {"heatmap": torch.zeros(1, 3, 1, 1), "regression": regression,
               "mask": torch.ones(1, 1, 1)}
    error = 0.2
    log_depth = torch.full((1, 1, 1, 1), float(np.log(20.0)) + error, requires_grad=True)

    def loss_at(log_scale: float) -> float:
        outputs = {"log_depth": log_depth, "depth_log_scale": torch.full((1, 1, 1, 1), log_scale)}
        return depth_scale_loss(outputs, targets).item()

    best = np.log(error)
    assert loss_at(best) == pytest.approx(1.0 + best, rel=1e-5)
    assert loss_at(best) < min(loss_at(best - 0.5), loss_at(best + 0.5))
    scale = torch.zeros(1, 1, 1, 1, requires_grad=True)
    depth_scale_loss({"log_depth": log_depth, "depth_log_scale": scale}, targets).backward()
    assert log_depth.grad is None and scale.grad.item() == pytest.approx(1 - error, rel=1e-5)

    outputs = {"heatmap": torch.zeros(1, 3, 1, 1), "offset": torch.zeros(1, 2, 1, 1),
               "log_depth": log_depth.detach(), "log_size": torch.zeros(1, 3, 1, 1),
               "yaw": torch.zeros(1, 2, 1, 1), "depth_log_scale": torch.zeros(1, 1, 1, 1)}
    parts = training_loss(outputs, targets)
    assert parts["depth_scale"].item() == pytest.approx(0.5 * error, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(
        detection_loss(outputs, targets)["loss"].item() + 0.5 * error, rel=1e-5)
    assert per_sample_detection_loss(outputs, targets).item() == pytest.approx(
        detection_loss(outputs, targets)["loss"].item(), rel=1e-5)


def test_cache_hash_is_of_the_scenes_not_of_the_file_bytes(tmp_path):
    world = WorldConfig()
    seeds = [3, 4]
    first = build_cache(tmp_path, world, seeds, show_progress=False)
    # The same arrays in other bytes (compressed: as a re-render's new zip timestamps would be).
    path = frame_path(tmp_path, 4)
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    np.savez_compressed(path.with_suffix(".tmp.npz"), **arrays)
    path.with_suffix(".tmp.npz").rename(path)
    (tmp_path / MANIFEST).unlink()
    assert build_cache(tmp_path, world, seeds, show_progress=False)["sha256"] == first["sha256"]

    arrays["objects_yaws"] = arrays["objects_yaws"] + 0.1
    np.savez(path.with_suffix(".tmp.npz"), **arrays)
    path.with_suffix(".tmp.npz").rename(path)
    legacy = json.loads((tmp_path / MANIFEST).read_text())
    del legacy["sha256_of"]  # a manifest written before content hashing is hashed again
    (tmp_path / MANIFEST).write_text(json.dumps(legacy))
    again = build_cache(tmp_path, world, seeds, show_progress=False)
    assert again["sha256"] != first["sha256"] and again["sha256_of"] == "arrays"


def tiny_config(tmp_path: Path, out: str, steps: int, ema_decay: float = 0.0) -> Path:
    values = yaml.safe_load(TINY.read_text())
    values["optimiser"]["ema_decay"] = ema_decay
    values["out_dir"] = str(tmp_path / out)
    values["data"]["cache_dir"] = str(tmp_path / "cache")
    values["schedule"]["max_steps"] = steps
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def run_trainer(path: Path, resume: bool = False) -> dict:
    trainer = Trainer(load_config(path), resume=resume, show_progress=False)
    try:
        return trainer.train()
    finally:
        trainer.close()


def test_train_epochs_stops_validated_part_way_through_the_schedule(tmp_path):
    path = tiny_config(tmp_path, "part", None)
    values = yaml.safe_load(path.read_text())
    values["schedule"]["train_epochs"] = 1  # of tiny.yaml's 2: 8 scenes at batch 4
    path.write_text(yaml.safe_dump(values))
    trainer = Trainer(load_config(path), show_progress=False)
    try:
        result = trainer.train()
        learning_rate = trainer.scheduler.get_last_lr()[0]
    finally:
        trainer.close()
    assert result["step"] == 2 and result["metrics"]["val_full_depth"]["mAP"] is not None
    assert learning_rate > 0  # still on the 2-epoch cosine, which ends at zero
    last = json.loads((tmp_path / "part" / "last.json").read_text())
    assert last["training"]["step"] == 2 and last["training"]["epoch"] == 1
    assert last["metrics"] == result["metrics"]  # the stop's own validation, not an earlier one
    assert (tmp_path / "part" / "best.safetensors").exists()
    values["schedule"]["train_epochs"] = 3
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="train_epochs must be 1 to epochs"):
        run_trainer(path, resume=True)


def test_tiny_training_learns_checkpoints_and_resumes_exactly(tmp_path):
    straight = tiny_config(tmp_path, "straight", 3)
    first = run_trainer(straight)
    assert first["step"] == 3 and first["losses"]["loss"] > 0
    stopped = tiny_config(tmp_path, "stopped", 2)
    run_trainer(stopped)
    with pytest.raises(ResumeError, match="--resume"):
        run_trainer(stopped)  # never silently overwrite a run
    values = yaml.safe_load(stopped.read_text())
    stopped.write_text(yaml.safe_dump({**values, "seed": 1}))
    with pytest.raises(ResumeError, match="different config"):
        run_trainer(stopped, resume=True)
    values["schedule"]["max_steps"] = 3  # a longer run of the same config may resume,
    values["data"]["sample_threads"] = 1  # its batches made otherwise
    stopped.write_text(yaml.safe_dump(values))
    # a run saved before a config key existed (data.nuscenes) reads as having its default
    last = tmp_path / "stopped" / "last.json"
    document = json.loads(last.read_text())
    del document["training"]["config"]["data"]["nuscenes"]
    last.write_text(json.dumps(document))
    resumed = run_trainer(stopped, resume=True)
    assert resumed["step"] == 3
    a = load_file(str(tmp_path / "straight" / "last.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "last.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    document = json.loads((tmp_path / "straight" / "last.json").read_text())
    assert len(document["training"]["data_sha256"]) == 64
    assert document["training"]["step"] == 3

    finetune = tiny_config(tmp_path, "finetune", 1)
    values = yaml.safe_load(finetune.read_text())
    finetune.write_text(yaml.safe_dump({**values, "init_from": str(tmp_path / "straight/last")}))
    trainer = Trainer(load_config(finetune), show_progress=False)
    for name, tensor in trainer.model.state_dict().items():
        torch.testing.assert_close(tensor, a[name], rtol=0, atol=0, msg=name)
    trainer.close()
    values["model"]["layers"] = 3
    finetune.write_text(yaml.safe_dump({**values, "init_from": str(tmp_path / "straight/last")}))
    with pytest.raises(ResumeError, match="architecture differs"):
        Trainer(load_config(finetune), show_progress=False)


def test_batches_made_between_steps_are_the_loader_processes_batches(tmp_path):
    config = load_config(tiny_config(tmp_path, "batches", 2))
    trainer = Trainer(config, show_progress=False)
    threaded = list(trainer.epoch_loader(1))  # corrupted epoch: every sample seeded by its index
    trainer.config = replace(config, data=replace(config.data, workers=1))
    loaded = list(trainer.epoch_loader(1))
    trainer.close()
    assert len(threaded) == len(loaded) == trainer.steps_per_epoch
    for ours, theirs in zip(threaded, loaded, strict=True):
        assert ours.keys() == theirs.keys()
        for key in ours:
            torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)


def test_moving_average_is_what_checkpoints_hold_and_resumes_exactly(tmp_path):
    decay = 0.5
    straight = tiny_config(tmp_path, "straight", 3, ema_decay=decay)
    trainer = Trainer(load_config(straight), show_progress=False)
    history = []
    batch = next(iter(trainer.epoch_loader(0)))
    for _ in range(3):
        trainer.step(batch)
        history.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    trainer.save("last")
    trainer.close()
    saved = load_file(str(tmp_path / "straight" / "last.safetensors"))
    name = "head.out.weight"
    # The first update copies, each later one moves the average half way to the new weights.
    expected = decay * (decay * history[0][name] + (1 - decay) * history[1][name]) + (
        1 - decay) * history[2][name]
    torch.testing.assert_close(saved[name], expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(saved[name], history[2][name])

    whole = tiny_config(tmp_path, "whole", 3, ema_decay=decay)
    run_trainer(whole)
    stopped = tiny_config(tmp_path, "stopped", 2, ema_decay=decay)
    run_trainer(stopped)
    values = yaml.safe_load(stopped.read_text())
    values["schedule"]["max_steps"] = 3
    stopped.write_text(yaml.safe_dump(values))
    run_trainer(stopped, resume=True)
    a = load_file(str(tmp_path / "whole" / "last.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "last.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_two_process_data_parallel_training(tmp_path):
    config = tiny_config(tmp_path, "ddp", 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "adaptive_fusion.cli.main", "train", "--config", str(config), "--json",
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp_path / "ddp" / "last.json").read_text())
    assert document["training"]["step"] == 2
    assert document["training"]["samples_seen"] == 8  # global batch 4 = 2 ranks x 2
