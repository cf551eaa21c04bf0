"""Sandwich training of the supernet: each step, on one batch, the largest subnet, the smallest
and `random_subnets` random ones (model/architecture.py), each under its own LayerDrop
allocation within its depth, their losses averaged into one optimiser step. Everything else
(data, corruptions, modality dropout, schedule, checkpoints, resume, validation) is the
detector's trainer's."""

from collections.abc import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from adaptive_fusion.lab.evaluation.runner import score_frames
from adaptive_fusion.lab.supernet.config import SupernetConfig
from adaptive_fusion.lab.training.trainer import Trainer
from adaptive_fusion.model.architecture import Architecture, SearchSpace
from adaptive_fusion.model.checkpoint import load_checkpoint
from adaptive_fusion.model.detector import AdaptiveFusionDetector


def initialise_where_fits(model: AdaptiveFusionDetector,
                          source: AdaptiveFusionDetector) -> list[str]:
    """Copies every tensor of `source` whose name and shape `model` shares; returns the names
    of `model`'s tensors left as initialised (the modules only the supernet has)."""
    theirs = source.state_dict()
    state = model.state_dict()
    fresh = [name for name, tensor in state.items()
             if name not in theirs or theirs[name].shape != tensor.shape]
    model.load_state_dict({**state, **{name: theirs[name] for name in state
                                       if name not in fresh}})
    return fresh


def within_depths(allocation: Mapping[str, Sequence[int]],
                  architecture: Architecture) -> dict[str, tuple[int, ...]]:
    """A LayerDrop allocation over all blocks, cut to each modality's depth in `architecture`
    (block 0, always drawn, always stays)."""
    return {name: tuple(b for b in blocks if b < architecture.streams[name].depth)
            for name, blocks in allocation.items()}


class SupernetTrainer(Trainer):
    def __init__(self, config: SupernetConfig, resume: bool = False, show_progress: bool = True):
        self.space = SearchSpace.of(config.model_config())
        super().__init__(config, resume, show_progress)
        if self.context.world_size > 1:
            raise ValueError("sandwich training runs in one process: several backward passes "
                             "per step do not fit DistributedDataParallel's one reduction")

    def _initialise_from(self, path: str) -> None:
        source, _ = load_checkpoint(path)
        fresh = initialise_where_fits(self.model, source)
        if self.show:
            tqdm.write(f"initialised from {path}; new: {fresh or 'none'}")

    def subnets(self, rng: np.random.Generator) -> dict[str, Architecture]:
        """This step's sandwich, by name."""
        randoms = {f"random{i}": self.space.sample(rng)
                   for i in range(self.config.sandwich.random_subnets)}
        return {"largest": self.space.largest(), "smallest": self.space.smallest(), **randoms}

    def backward(self, rasters: dict, targets: dict, present: dict, epoch: float,
                 rng: np.random.Generator) -> dict[str, float]:
        """Gradients of the sandwich's mean loss, one subnet's backward at a time (only one
        graph held); the mean losses, and each subnet's total loss by its name."""
        drop, config = self.config.schedule.layerdrop, self.model_config
        subnets = self.subnets(rng)
        totals: dict[str, float] = {}
        means: dict[str, float] = {}
        for name, architecture in subnets.items():
            self.model.use_architecture(architecture)
            allocation = within_depths(
                drop.allocation(epoch, config.modalities, config.layers, rng), architecture)
            losses = self.loss(rasters, targets, allocation, present)
            (losses["loss"] / len(subnets)).backward()
            totals[name] = losses["loss"].item()
            for key, value in losses.items():
                means[key] = means.get(key, 0.0) + value.item() / len(subnets)
        return {**means, **totals}

    def postfix(self, losses: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{losses['loss']:.3f}", "big": f"{losses['largest']:.3f}",
                "small": f"{losses['smallest']:.3f}",
                "lr": f"{self.scheduler.get_last_lr()[0]:.1e}"}

    def validation_settings(self) -> dict[str, Architecture]:
        return {"val_largest": self.space.largest(), "val_smallest": self.space.smallest(),
                "val_today": self.space.full()}

    def score(self, frames: list, architecture: Architecture) -> dict:
        self.shipped.use_architecture(architecture)
        return score_frames(self.shipped, frames).to_dict()

    def best_score(self, metrics: dict) -> float:
        """The mean validation mAP of the largest, the smallest and today's subnet: a supernet
        is for its whole range."""
        return float(np.mean([metrics[name]["mAP"] or 0.0 for name in metrics]))
