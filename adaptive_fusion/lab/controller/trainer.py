"""Training the layer controller through the frozen detector: per sample a random budget and
random live sensors, Gumbel top-k slot selection with straight-through gates, detection loss of
the gated detector plus the corruption-prediction loss; AdamW with warmup and cosine decay,
periodic checkpoints, resume, and per epoch the mAP of the learned allocator on corrupted
validation scenes. The data, schedule and checkpoint plumbing are the detector trainer's.

A controller that may switch live sensors off (may_skip_live) also samples, per live modality,
whether it runs (Gumbel-sigmoid on its use logit, straight-through presence weights into the
detector), and learns the use logit from the frozen detector's "dropping it helps" (usage.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adaptive_fusion.lab.controller.config import ControllerTrainConfig
from adaptive_fusion.lab.controller.data import ControllerDataset, split_controller_batch
from adaptive_fusion.lab.controller.labels import corruption_loss
from adaptive_fusion.lab.controller.usage import absent_losses, dropping_helps, use_loss
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.runner import detect, evaluation_truth
from adaptive_fusion.lab.training.cache import load_frames
from adaptive_fusion.lab.training.config import config_to_dict
from adaptive_fusion.lab.training.data import epoch_batches
from adaptive_fusion.lab.training.distributed import EpochSampler
from adaptive_fusion.lab.training.layerdrop import DropSchedule
from adaptive_fusion.lab.training.loss import detection_loss
from adaptive_fusion.lab.training.precision import use_bf16
from adaptive_fusion.lab.training.trainer import (
    EpochLoop,
    Progress,
    cached_splits,
    check_fresh,
    check_resumable,
    make_optimiser,
    restore_training_state,
    save_training_state,
)
from adaptive_fusion.model.allocation import first_blocks
from adaptive_fusion.model.checkpoint import load_checkpoint
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.policies.checkpoint import load_controller, save_controller
from adaptive_fusion.policies.costs import block_budget, flop_cost_table
from adaptive_fusion.policies.learned import LearnedAllocator
from adaptive_fusion.policies.network import LayerController, slot_spread
from adaptive_fusion.policies.selection import straight_through_gates, straight_through_use
from adaptive_fusion.quality import measure

VALIDATION_STREAM = 7  # seeds validation corruptions apart from training's (seed, epoch, index)


class ControllerTrainer(EpochLoop):
    label = "controller epoch"

    def __init__(self, config: ControllerTrainConfig, resume: bool = False,
                 show_progress: bool = True):
        self.config = config
        self.show = show_progress
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.out = Path(config.out_dir)
        self.detector, self.detector_document = load_checkpoint(config.detector)
        self.detector.requires_grad_(False)  # frozen, in eval mode: only the gates learn
        self.bf16 = use_bf16(config.bf16, torch.device("cpu"))
        if self.show:
            tqdm.write(f"bfloat16 autocast {'on' if self.bf16 else 'off'} (bf16: {config.bf16})")
        self.model_config = self.detector.config
        self.modalities = self.model_config.modalities
        self.table = flop_cost_table(self.detector)
        self.manifests, self.train_files, self.val_files = cached_splits(
            config.data, self.model_config, self.show)
        self.controller = LayerController(config.controller_config(), self.model_config)
        schedule = config.schedule
        self.steps_per_epoch = len(self.train_files) // schedule.batch_size
        if schedule.epoch_steps is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, schedule.epoch_steps)
        self.optimizer, self.scheduler = make_optimiser(
            self.controller.parameters(), config.optimiser, self.steps_per_epoch * schedule.epochs)
        self.absent = DropSchedule(modality_dropout=config.selection.absent_probability)
        self.progress = Progress()
        if resume:
            self._resume()
        else:
            check_fresh(self.out)

    def _resume(self) -> None:
        check_resumable(self.out)
        controller, document = load_controller(self.out / "last")
        self.progress, _ = restore_training_state(self.out, document, self.config,
                                                  self.optimizer, self.scheduler)
        self.controller.load_state_dict(controller.state_dict())

    def metadata(self, metrics: dict | None = None) -> dict:
        return {
            "training": {
                "config": config_to_dict(self.config),
                "detector": self.config.detector,
                "detector_step": self.detector_document.get("training", {}).get("step"),
                "data_sha256": self.manifests["train"]["sha256"],
                "step": self.progress.step,
                "epoch": self.progress.epoch,
                "samples_seen": self.progress.step * self.config.schedule.batch_size,
            },
            "metrics": metrics or {},
        }

    def save(self, name: str, metrics: dict | None = None) -> None:
        """`<name>.safetensors/.json`; "last" also gets the optimiser state."""
        save_controller(self.controller, self.out / name, self.metadata(metrics))
        if name == "last":
            save_training_state(self.out, self.optimizer, self.scheduler, self.progress)

    @property
    def trained(self) -> torch.nn.Module:
        return self.controller

    def epoch_loader(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        dataset = ControllerDataset(
            self.train_files, self.model_config, seed=self.config.seed,
            corruptions=self.config.data.corruptions,
            mirror_probability=self.config.data.mirror_probability,
        )
        dataset.set_epoch(epoch, corrupt=True)
        schedule = self.config.schedule
        sampler = EpochSampler(len(dataset), schedule.batch_size, self.config.seed, epoch,
                               start_batch=self.progress.batch_in_epoch)
        return epoch_batches(dataset, sampler, schedule.batch_size, self.config.data.workers,
                             self.config.data.sample_threads)

    @staticmethod
    def postfix(losses: dict[str, float]) -> dict[str, str]:
        shown = {"loss": f"{losses['loss']:.3f}", "det": f"{losses['detection']:.3f}",
                 "cor": f"{losses['corruption']:.3f}"}
        if "use" in losses:
            shown.update(use=f"{losses['use']:.3f}", off=f"{losses['switched_off']:.2f}")
        return shown

    def sample_use(self, outputs: dict, live: torch.Tensor, rng: np.random.Generator,
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Which modalities run, (B, modalities) bool, and the detector's `present`: the live
        flags under the strict rule; with may_skip_live the straight-through use weights of a
        Gumbel-sigmoid sample (logistic noise on the use logits)."""
        if "use" not in outputs:
            return live, {name: live[:, m] for m, name in enumerate(self.modalities)}
        selection = self.config.selection
        noise = torch.from_numpy(rng.logistic(size=tuple(outputs["use"].shape))).float()
        run, weights = straight_through_use(outputs["use"] + selection.gumbel_scale * noise,
                                            live, temperature=selection.temperature)
        return run, {name: weights[:, m] for m, name in enumerate(self.modalities)}

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        config, progress = self.config, self.progress
        rasters, targets, labels = split_controller_batch(batch)
        size = len(targets["mask"])
        rng = np.random.default_rng([config.seed, progress.step])
        available = self.absent.present(size, self.modalities, rng)
        live = torch.stack([available[name] for name in self.modalities], dim=1)
        fractions = 1.0 - rng.random(size)  # uniform on (0, 1]
        outputs = self.controller(rasters, labels["quality"], live,
                                  torch.from_numpy(fractions).float())
        noise = torch.from_numpy(rng.gumbel(size=tuple(outputs["slots"].shape))).float()
        run, present = self.sample_use(outputs, live, rng)
        gates = straight_through_gates(
            outputs["slots"] + config.selection.gumbel_scale * noise, self.table,
            torch.from_numpy(fractions * self.table.block_total()), run, self.modalities,
            temperature=config.selection.temperature,
        )
        # A live modality switched off still computes its block 0, under presence weight 0:
        # the forward pass is unchanged, and the gradient of its weight is that of running it
        # as it would run (block 0 first), not of a stem without blocks.
        gates = {name: torch.cat([live[:, m : m + 1].to(gate.dtype), gate[:, 1:]], dim=1)
                 for m, (name, gate) in enumerate(gates.items())}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            detections = self.detector(rasters, present=present, gates=gates)
        # as deployed, not teacher-forced: see usage.py
        detection = detection_loss({k: v.float() for k, v in detections.items()}, targets,
                                   teacher_forcing=False)
        corruption = corruption_loss(outputs, labels, live, self.modalities)
        loss = detection["loss"] + config.corruption_weight * corruption["total"]
        extra = {}
        if config.spread_weight:
            spread = slot_spread(outputs["network_slots"], live)
            loss = loss + config.spread_weight * spread
            extra["spread"] = spread.item()
        if "use" in outputs:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                losses = absent_losses(self.detector, rasters, targets, live, self.modalities)
            helps, counted = dropping_helps(*losses, live)
            usage = use_loss(outputs["use"], helps, counted)
            loss = loss + config.use_weight * usage
            extra.update(use=usage.item(),
                         drop_helps=float(helps.sum() / counted.sum().clamp(min=1)),
                         switched_off=float((live & ~run).sum() / live.sum().clamp(min=1)))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.controller.parameters(), config.optimiser.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        progress.step += 1
        progress.batch_in_epoch += 1
        return {"loss": loss.item(), "detection": detection["loss"].item(),
                "corruption": corruption["total"].item(),
                "layers": float(sum((g * run[:, m : m + 1]).sum().item()
                                    for m, g in enumerate(gates.values())) / size),
                **extra}

    def _evaluate_and_keep_best(self) -> dict:
        metrics = self.validate()
        tqdm.write(f"epoch {self.progress.epoch}: controller val mAP "
                   f"{metrics['val_controller_map']:.4f} (equal split "
                   f"{metrics['val_equal_split_map']:.4f})")
        if metrics["val_controller_map"] > self.progress.best_map:
            self.progress.best_map = metrics["val_controller_map"]
            self.save("best", metrics)
        return metrics

    def validate(self) -> dict:
        """mAP of the learned allocator and of an equal split at the validation budget, on the
        first validation scenes, each corrupted by the training sampler (seeded per scene)."""
        self.controller.eval()
        allocator = LearnedAllocator(self.controller, self.table)
        fraction = self.config.validation.budget
        budget = block_budget(self.table, fraction=fraction)
        layers = self.model_config.layers
        equal = {name: first_blocks(max(1, int(fraction * layers))) for name in self.modalities}
        results: dict[str, tuple[list, list]] = {"controller": ([], []), "equal_split": ([], [])}
        truths = []
        blocks, runs = dict.fromkeys(self.modalities, 0), dict.fromkeys(self.modalities, 0)
        files = self.val_files[: self.config.validation.scenes]
        for index, path in enumerate(files):
            rng = np.random.default_rng([self.config.seed, VALIDATION_STREAM, index])
            frames, _ = self.config.data.corruptions.apply_with_spec(load_frames(path), rng)
            inputs = prepare_inputs(frames, self.model_config)
            quality = {name: q.score for name, q in measure(frames).items()}
            allocation = allocator.allocate(inputs, quality, self.modalities, budget)
            for name in self.modalities:
                blocks[name] += len(allocation.get(name, ()))
                runs[name] += name in allocation
            results["controller"][0].append(detect(self.detector, inputs, allocation))
            results["equal_split"][0].append(detect(self.detector, inputs, equal))
            truths.append(evaluation_truth(frames, inputs, self.model_config))
        self.controller.train()
        metrics = {f"val_{name}_map": evaluate_detections(
            predictions, truths, self.model_config.classes).to_dict()["mAP"] or 0.0
            for name, (predictions, _) in results.items()}
        metrics["val_budget"] = fraction
        metrics["val_mean_blocks"] = {name: count / max(1, len(files))
                                      for name, count in blocks.items()}
        metrics["val_run_fraction"] = {name: count / max(1, len(files))
                                       for name, count in runs.items()}
        return metrics
