"""The training loop: cached data, LayerDrop + modality dropout + corruption schedule, AdamW with
warmup and cosine decay, an optional moving average of the weights, periodic and per-epoch
checkpoints, resume, data-parallel ranks."""

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from adaptive_fusion.lab.evaluation.runner import score_frames
from adaptive_fusion.lab.training import distributed
from adaptive_fusion.lab.training.cache import build_cache, frame_path, load_frames
from adaptive_fusion.lab.training.config import (
    OptimiserConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from adaptive_fusion.lab.training.data import FrameDataset, epoch_batches, split_batch
from adaptive_fusion.lab.training.loss import training_loss
from adaptive_fusion.lab.training.precision import use_bf16
from adaptive_fusion.lab.training.state import load_state, save_state
from adaptive_fusion.model.checkpoint import load_checkpoint, save_checkpoint
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.sim.config import WorldConfig

STATE_FILE = "last_state.json"  # with last_state.safetensors (training/state.py)


class ResumeError(ValueError):
    """--resume found no checkpoint, or one made with a different configuration."""


@dataclass
class Progress:
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    best_map: float = -1.0


def run_identity(config: dict) -> dict:
    """The settings a resumed run must share with the stopped one: all but where it stops and
    who makes the batches (the same samples either way)."""
    return {**config, "schedule": {**config["schedule"], "max_steps": None, "train_epochs": None},
            "data": {**config["data"], "workers": None, "sample_threads": None}}


def seed_range(bounds: list[int]) -> list[int]:
    start, stop = bounds
    return list(range(start, stop))


SPLITS = ("train", "val")


def world_split_cache(data) -> Callable[[Path, str, bool], tuple[dict, list[Path]]]:
    """(directory, "train" or "val", show_progress) -> that split's manifest and frame files:
    the world's scenes of the config's seeds, rendered the first time."""
    world = WorldConfig(**data.world)
    seeds = {"train": seed_range(data.train_seeds), "val": seed_range(data.val_seeds)}

    def cached(directory: Path, split: str, show_progress: bool) -> tuple[dict, list[Path]]:
        manifest = build_cache(directory, world, seeds[split], show_progress)
        return manifest, [frame_path(directory, seed) for seed in seeds[split]]

    return cached


def cached_splits(data, model_config: ModelConfig, show_progress: bool, context=None
                  ) -> tuple[dict, list, list]:
    """The config's train and validation frames, written into the cache the first time: the
    world's scenes, or with data.nuscenes a dataroot's samples at `model_config`'s input size.
    (manifests by split, train files, validation files). Under a distributed context rank 0
    writes while the other ranks wait, then every rank reads."""
    if data.nuscenes.used:
        # Imported here: nuscenes-devkit takes seconds to import, and world runs never need it.
        from adaptive_fusion.lab.nuscenes.cache import nuscenes_split_cache

        split_cache = nuscenes_split_cache(data.nuscenes, model_config)
    else:
        split_cache = world_split_cache(data)
    cache = Path(data.cache_dir)
    if context is None or context.is_main:
        for split in SPLITS:
            split_cache(cache / split, split, show_progress)
    if context is not None:
        context.barrier()
    made = {split: split_cache(cache / split, split, False) for split in SPLITS}
    return ({split: manifest for split, (manifest, _) in made.items()}, made["train"][1],
            made["val"][1])


def learning_rate_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup, then cosine decay to zero at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def make_optimiser(parameters, opt: OptimiserConfig, total_steps: int):
    """AdamW and its schedule: linear warmup, then cosine decay to zero at `total_steps`."""
    optimizer = torch.optim.AdamW(parameters, lr=opt.lr, weight_decay=opt.weight_decay,
                                  betas=tuple(opt.betas))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, opt.warmup_steps, total_steps))
    return optimizer, scheduler


def check_fresh(out: Path) -> None:
    """A new run never silently overwrites a stopped one."""
    if (out / STATE_FILE).is_file():
        raise ResumeError(f"{out} already holds a training run: pass --resume to "
                          "continue it, or choose another out_dir")


def check_resumable(out: Path) -> None:
    if not (out / STATE_FILE).is_file():
        raise ResumeError(f"nothing to resume: {out / STATE_FILE} not found")


def restore_training_state(out: Path, document: dict, config, optimizer, scheduler) -> tuple[
        Progress, dict]:
    """Optimiser and schedule of the stopped run in `out` (whose last checkpoint's JSON is
    `document`) restored; its progress, and the rest of its state (the trained weights, when the
    checkpoint holds their moving average). Refuses a run made with another config."""
    # Read back through the config class: a run saved before a key was added has that key's
    # default (a new key's default keeps the old behaviour), so it still resumes.
    saved = run_identity(config_to_dict(config_from_dict(type(config),
                                                         document["training"]["config"])))
    if saved != run_identity(config_to_dict(config)):
        raise ResumeError(f"{out} was trained with a different config; "
                          "resume only with the same file (or start a new out_dir)")
    state = load_state(out / STATE_FILE)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    return Progress(**state.pop("progress")), state


def save_training_state(out: Path, optimizer, scheduler, progress: Progress,
                        extra: dict | None = None) -> None:
    """Optimiser, schedule, progress and `extra` next to the "last" checkpoint, written
    atomically, without pickle (training/state.py)."""
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "progress": asdict(progress), **(extra or {})}
    save_state(out / STATE_FILE, state)


class EpochLoop:
    """The loop both trainers (detector, controller) share: epochs of seeded batches that resume
    mid-epoch, a checkpoint every few minutes and after every epoch, validation every
    eval_every_epochs, and a stop after train_epochs or at max_steps. A subclass provides
    `config.schedule`, `progress`, `steps_per_epoch`, `show`, `label`, `trained` (the module
    being trained), `epoch_loader(epoch)`, `step(batch)`, `postfix(losses)`, `save(name,
    metrics)` and `_evaluate_and_keep_best()`."""

    label = "epoch"

    def train(self) -> dict:
        schedule, progress = self.config.schedule, self.progress
        last_save = time.monotonic()
        metrics: dict = {}
        losses: dict = {}
        self.trained.train()
        stop_epoch = schedule.train_epochs or schedule.epochs
        if not 1 <= stop_epoch <= schedule.epochs:
            raise ValueError(f"schedule.train_epochs must be 1 to epochs ({schedule.epochs}), "
                             f"got {schedule.train_epochs}")
        while progress.epoch < stop_epoch:
            batches = islice(self.epoch_loader(progress.epoch),
                             self.steps_per_epoch - progress.batch_in_epoch)
            bar = tqdm(batches, desc=f"{self.label} {progress.epoch}", disable=not self.show,
                       initial=progress.batch_in_epoch, total=self.steps_per_epoch)
            for batch in bar:
                losses = self.step(batch)
                bar.set_postfix(self.postfix(losses))
                if time.monotonic() - last_save > 60 * schedule.checkpoint_minutes:
                    self.save("last", metrics)
                    last_save = time.monotonic()
                if schedule.max_steps is not None and progress.step >= schedule.max_steps:
                    self.save("last", metrics)
                    return {"step": progress.step, "losses": losses, "metrics": metrics}
            progress.epoch += 1
            progress.batch_in_epoch = 0
            last_epoch = progress.epoch == stop_epoch
            if progress.epoch % schedule.eval_every_epochs == 0 or last_epoch:
                metrics = self._evaluate_and_keep_best()
            self.save("last", metrics)
            last_save = time.monotonic()
        return {"step": progress.step, "losses": losses, "metrics": metrics}


class Trainer(EpochLoop):
    def __init__(self, config: TrainConfig, resume: bool = False, show_progress: bool = True):
        self.config = config
        self.context = distributed.setup()
        self.show = show_progress and self.context.is_main
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.out = Path(config.out_dir)
        self.model_config = config.model_config()
        self.manifests, self.train_files, self.val_files = cached_splits(
            config.data, self.model_config, self.show, self.context)
        self.model = AdaptiveFusionDetector(self.model_config).to(self.context.device)
        self.bf16 = use_bf16(config.bf16, self.context.device)
        if self.show:
            tqdm.write(f"bfloat16 autocast {'on' if self.bf16 else 'off'} (bf16: {config.bf16})")
        if config.init_from:
            self._initialise_from(config.init_from)
        schedule = config.schedule
        self.steps_per_epoch = len(self.train_files) // schedule.batch_size
        self.total_steps = self.steps_per_epoch * schedule.epochs
        self.optimizer, self.scheduler = make_optimiser(
            self.model.parameters(), config.optimiser, self.total_steps)
        self.average = None
        if config.optimiser.ema_decay > 0:
            self.average = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(config.optimiser.ema_decay))
        self.progress = Progress()
        if resume:
            self._resume()
        else:
            check_fresh(self.out)
        self.network = self.model
        if self.context.world_size > 1:
            # Skipped blocks get no gradient in that step: DDP must not wait for them.
            self.network = DistributedDataParallel(self.model, find_unused_parameters=True)

    def _initialise_from(self, path: str) -> None:
        source, _ = load_checkpoint(path)
        if source.config != self.model_config:
            raise ResumeError(f"init_from {path}: its architecture differs from this config's "
                              f"model ({source.config} vs {self.model_config})")
        self.model.load_state_dict(source.state_dict())

    @property
    def shipped(self) -> AdaptiveFusionDetector:
        """The weights validated and written to checkpoints: their average when one is kept."""
        return self.model if self.average is None else self.average.module

    def _resume(self) -> None:
        check_resumable(self.out)
        model, document = load_checkpoint(self.out / "last")
        self.progress, state = restore_training_state(
            self.out, document, self.config, self.optimizer, self.scheduler)
        self.shipped.load_state_dict(model.state_dict())
        if self.average is not None:
            self.model.load_state_dict(state["trained_weights"])
            self.average.n_averaged.fill_(state["n_averaged"])

    def metadata(self, metrics: dict | None = None) -> dict:
        return {
            "training": {
                "config": config_to_dict(self.config),
                "data_sha256": self.manifests["train"]["sha256"],
                "val_data_sha256": self.manifests["val"]["sha256"],
                "step": self.progress.step,
                "epoch": self.progress.epoch,
                "samples_seen": self.progress.step * self.config.schedule.batch_size,
            },
            "metrics": metrics or {},
        }

    def save(self, name: str, metrics: dict | None = None) -> None:
        """Rank 0 writes `<name>.safetensors/.json`; "last" also gets the optimiser state."""
        if not self.context.is_main:
            return
        save_checkpoint(self.shipped, self.out / name, self.metadata(metrics))
        if name == "last":
            extra = None
            if self.average is not None:
                extra = {"trained_weights": self.model.state_dict(),
                         "n_averaged": int(self.average.n_averaged)}
            save_training_state(self.out, self.optimizer, self.scheduler, self.progress, extra)

    def validate(self) -> dict:
        """Validation metrics of each of validation_settings, by its name."""
        self.shipped.eval()
        frames = [load_frames(f) for f in self.val_files]
        metrics = {name: self.score(frames, setting)
                   for name, setting in self.validation_settings().items()}
        self.model.train()
        return metrics

    def validation_settings(self) -> dict:
        """What validation scores, by metric name: here allocations (None: every block)."""
        layers = self.model_config.layers
        return {
            "val_full_depth": None,
            "val_quarter_depth": {m: max(1, layers // 4) for m in self.model_config.modalities},
        }

    def score(self, frames: list, allocation) -> dict:
        return score_frames(self.shipped, frames, allocation).to_dict()

    def best_score(self, metrics: dict) -> float:
        """The validation score that picks the "best" checkpoint."""
        return metrics["val_full_depth"]["mAP"] or 0.0

    @property
    def trained(self) -> torch.nn.Module:
        return self.model

    def epoch_loader(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        schedule, context = self.config.schedule, self.context
        dataset = FrameDataset(
            self.train_files, self.model_config, seed=self.config.seed,
            corruptions=self.config.data.corruptions,
            mirror_probability=self.config.data.mirror_probability,
        )
        dataset.set_epoch(epoch, corrupt=epoch >= schedule.clean_epochs)
        sampler = distributed.EpochSampler(
            len(dataset), schedule.batch_size, self.config.seed, epoch,
            context.rank, context.world_size, start_batch=self.progress.batch_in_epoch,
        )
        data = self.config.data
        return epoch_batches(dataset, sampler, schedule.batch_size // context.world_size,
                             data.workers, data.sample_threads)

    def postfix(self, losses: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{losses['loss']:.3f}", "hm": f"{losses['heatmap']:.3f}",
                "lr": f"{self.scheduler.get_last_lr()[0]:.1e}"}

    def _evaluate_and_keep_best(self) -> dict:
        if not self.context.is_main:
            return {}
        metrics = self.validate()
        val_map = self.best_score(metrics)
        tqdm.write(f"epoch {self.progress.epoch}: val mAP {val_map:.4f}")
        if val_map > self.progress.best_map:
            self.progress.best_map = val_map
            self.save("best", metrics)
        return metrics

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        config, progress = self.config, self.progress
        device = self.context.device
        rasters, targets = split_batch({k: v.to(device) for k, v in batch.items()})
        epoch = progress.epoch + progress.batch_in_epoch / max(1, self.steps_per_epoch)
        # Same block allocation on every rank (seeded by step); modality dropout per rank.
        shared = np.random.default_rng([config.seed, progress.step])
        local = np.random.default_rng([config.seed, progress.step, self.context.rank])
        present = {k: v.to(device) for k, v in config.schedule.layerdrop.present(
            len(targets["mask"]), self.model_config.modalities, local).items()}
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.backward(rasters, targets, present, epoch, shared)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.optimiser.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.average is not None:
            self.average.update_parameters(self.model)
        progress.step += 1
        progress.batch_in_epoch += 1
        return losses

    def backward(self, rasters: dict, targets: dict, present: dict, epoch: float,
                 rng: np.random.Generator) -> dict[str, float]:
        """The step's gradients, under a LayerDrop allocation drawn from rng; its losses."""
        allocation = self.config.schedule.layerdrop.allocation(
            epoch, self.model_config.modalities, self.model_config.layers, rng)
        losses = self.loss(rasters, targets, allocation, present)
        losses["loss"].backward()
        return {name: value.item() for name, value in losses.items()}

    def loss(self, rasters: dict, targets: dict, allocation: dict,
             present: dict) -> dict[str, torch.Tensor]:
        """The training losses of one forward pass of the network."""
        with torch.autocast(self.context.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outputs = self.network(rasters, allocation, present)
        return training_loss({k: v.float() for k, v in outputs.items()}, targets)

    def close(self) -> None:
        distributed.teardown(self.context)
