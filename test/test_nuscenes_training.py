"""Training on a nuScenes-layout dataroot (data.nuscenes): the world written in nuScenes' schema
by `adaptive-fusion nuscenes export-world` with training and validation splits is read with the
devkit into the trainer's cache, the tiny model trains on it through the real trainer and its
loss falls, and config/training/nuscenes_mini.yaml starts from the shipped weights."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from nuscenes.nuscenes import NuScenes
from safetensors.torch import load_file
from torch.utils.data import default_collate

from adaptive_fusion.cli.main import main
from adaptive_fusion.lab.nuscenes.reader import NuScenesFrames
from adaptive_fusion.lab.training.augment import CorruptionSampler, mirror
from adaptive_fusion.lab.training.cache import load_frames
from adaptive_fusion.lab.training.config import ConfigError, load_config
from adaptive_fusion.lab.training.data import FrameDataset, split_batch
from adaptive_fusion.lab.training.trainer import Trainer, cached_splits
from adaptive_fusion.model.checkpoint import DEFAULT_MODEL
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.world import World

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "config" / "training" / "tiny.yaml"
NUSCENES_MINI = ROOT / "config" / "training" / "nuscenes_mini.yaml"
VERSION = "v1.0-world"
TRAIN_SCENES, VAL_SCENES = 8, 2
# tiny.yaml's corruptions without fog, which nuScenes' frames cannot have (no dense depth)
NO_FOG = {"probability": 0.5, "fog_probability": 0.0, "held_out": ["camera:fog"]}


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    """The world's training and validation scenes written as a nuScenes dataroot."""
    root = tmp_path_factory.mktemp("nuscenes")
    assert main(["nuscenes", "export-world", str(root), "--scenes", "1",
                 "--train-scenes", str(TRAIN_SCENES), "--val-scenes", str(VAL_SCENES)]) == 0
    return root


def nuscenes_config(tmp_path: Path, dataroot: Path, base: Path, **overrides) -> Path:
    """`base` with its data read from the dataroot's world_train and world_val splits, its run
    and cache under tmp_path, and `overrides` (section -> values) merged in."""
    values = yaml.safe_load(base.read_text())
    values["out_dir"] = str(tmp_path / "run")
    values["data"]["cache_dir"] = str(tmp_path / "cache")
    values["data"]["nuscenes"] = {"dataroot": str(dataroot), "version": VERSION,
                                  "train_split": "world_train", "val_split": "world_val"}
    for section, changes in overrides.items():
        values[section] = {**values.get(section, {}), **changes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def clean_training_loss(trainer: Trainer) -> float:
    """The loss of the trainer's model on all its training frames, unaugmented, every block."""
    dataset = FrameDataset(trainer.train_files, trainer.model_config)
    rasters, targets = split_batch(default_collate([dataset[i] for i in range(len(dataset))]))
    every_block = {m: tuple(range(trainer.model_config.layers))
                   for m in trainer.model_config.modalities}
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.loss(rasters, targets, every_block, None)["loss"].item()
    trainer.model.train()
    return loss


def test_tiny_model_trains_on_the_devkits_samples_and_its_loss_falls(tmp_path, dataroot):
    """8 training samples at batch 4 for 15 epochs: 30 steps, corruptions from the second
    epoch, validated on the 2 validation samples at the end."""
    path = nuscenes_config(
        tmp_path, dataroot, TINY,
        data={"corruptions": NO_FOG},
        optimiser={"lr": 0.003, "warmup_steps": 2},
        schedule={"epochs": 15, "batch_size": 4, "clean_epochs": 1, "eval_every_epochs": 15})
    config = load_config(path)
    trainer = Trainer(config, show_progress=False)
    try:
        nusc = NuScenes(VERSION, str(dataroot), verbose=False)
        for split, count in (("train", TRAIN_SCENES), ("val", VAL_SCENES)):
            read = NuScenesFrames(nusc, f"world_{split}")
            files = trainer.train_files if split == "train" else trainer.val_files
            assert len(read) == len(files) == count
            assert trainer.manifests[split]["sample_tokens"] == read.sample_tokens
            for original, file in zip(read, files, strict=True):
                cached = load_frames(file)
                assert cached.depth is None  # depth "absent": nuScenes has no depth camera
                assert cached.image.shape == (96, 128, 3)  # tiny.yaml's model input size
                np.testing.assert_array_equal(cached.objects.labels, original.objects.labels)
                np.testing.assert_array_equal(cached.objects.centers, original.objects.centers)
                np.testing.assert_array_equal(cached.points, original.points)
        before = clean_training_loss(trainer)
        result = trainer.train()
        after = clean_training_loss(trainer)
    finally:
        trainer.close()
    assert result["step"] == 30
    assert after < 0.6 * before, (before, after)
    assert result["metrics"]["val_full_depth"]["mAP"] is not None
    saved = yaml.safe_load((tmp_path / "run" / "last.json").read_text())
    assert saved["training"]["data_sha256"] == trainer.manifests["train"]["sha256"]
    assert saved["training"]["config"]["data"]["nuscenes"]["train_split"] == "world_train"
    # A complete cache is read without the devkit, wherever the dataroot has gone.
    moved = replace(config.data.nuscenes, dataroot=str(tmp_path / "moved"))
    manifests, train_files, val_files = cached_splits(
        replace(config.data, nuscenes=moved), config.model_config(), show_progress=False)
    assert (train_files, val_files) == (trainer.train_files, trainer.val_files)
    assert manifests == trainer.manifests


def test_nuscenes_mini_config_fine_tunes_the_shipped_weights(tmp_path, dataroot):
    """The user's config, pointed at the world's dataroot: it starts from the shipped weights
    (the architecture matches) and trains a step of them."""
    path = nuscenes_config(tmp_path, dataroot, NUSCENES_MINI,
                           schedule={"batch_size": 4, "max_steps": 1})
    config = load_config(path)
    assert config.data.nuscenes.version == VERSION and config.init_from
    trainer = Trainer(replace(config, init_from=str(DEFAULT_MODEL)), show_progress=False)
    try:
        shipped = load_file(str(DEFAULT_MODEL))
        for name, tensor in trainer.model.state_dict().items():
            torch.testing.assert_close(tensor, shipped[name], rtol=0, atol=0, msg=name)
        assert trainer.train()["step"] == 1
    finally:
        trainer.close()
    assert (ROOT / config.init_from).with_suffix(".safetensors") == DEFAULT_MODEL


def test_nuscenes_data_refuses_fog_and_unknown_depth_sources(tmp_path, dataroot):
    values = yaml.safe_load(NUSCENES_MINI.read_text())
    path = tmp_path / "bad.yaml"
    for corruptions in ({"fog_probability": 0.05}, {"held_out": ["camera:motion_blur"]}):
        bad = {**values, "data": {**values["data"],
                                  "corruptions": {**values["data"]["corruptions"], **corruptions}}}
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match="fog needs a dense depth camera"):
            load_config(path)
    bad = {**values, "data": {**values["data"],
                              "nuscenes": {**values["data"]["nuscenes"], "depth": "stereo"}}}
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="depth must be one of"):
        load_config(path)


def test_train_reports_a_missing_version_folder_or_an_empty_split(tmp_path, dataroot, capsys):
    """What a user gets wrong first: the dataroot, or nuScenes' split names on other tables."""
    source = {"dataroot": str(dataroot), "version": VERSION, "train_split": "world_train",
              "val_split": "world_val"}
    for wrong, message in (({"version": "v1.0-mini"}, "v1.0-mini: no such folder"),
                           ({"val_split": "mini_val"}, "split mini_val has no samples")):
        path = nuscenes_config(tmp_path, dataroot, TINY, data={
            "corruptions": NO_FOG, "nuscenes": {**source, **wrong}})
        assert main(["train", "--config", str(path)]) == 2
        assert message in capsys.readouterr().out


def test_augmentation_of_a_frame_set_without_depth_keeps_it_without():
    """nuScenes' frame sets have no depth image: the mirror keeps none, and the corruption
    sampler drops a depth corruption it drew, the other draws those of a full frame set."""
    full = World(WorldConfig()).render(5)
    frames = replace(full, depth=None)
    assert mirror(frames).depth is None
    sampler = CorruptionSampler(probability=1.0, fog_probability=0.0, held_out=["camera:fog"])
    corrupted, spec = sampler.apply_with_spec(frames, np.random.default_rng(3))
    _, full_spec = sampler.apply_with_spec(full, np.random.default_rng(3))
    assert corrupted.depth is None and "depth" in full_spec
    assert spec == {k: v for k, v in full_spec.items() if k != "depth"}
