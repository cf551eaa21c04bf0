"""Training DynMM's gate over the frozen detector, DynMM's way, on the table of path losses.

Per sample a random budget fraction f; the gate's logits over the paths that run only live
modalities become path weights: a softmax at temperature tau (decaying exponentially over the
epochs, DynMM's ExpDecay), soft before schedule.hard_epoch and from then on the straight-through
one-hot of the argmax (the path that would run, with the softmax's gradient). The loss is DynMM's:

    task + lambda * max(0, E[ms] - B) / T

task the weighted task value of the paths (table.py; DynMM's is the detection loss, config.task
may take 1 - the frame's AP instead), E[ms] the weighted cost of their blocks
in the cost table measured on this machine, B = f T, T the cost of all blocks. DynMM's lambda is
per GFLOP; divided by T it is per full model, the same on a fast host and a slow one. DynMM's
random-path warm-up is not needed: it trains the branches, which here are the frozen detector.

To DynMM's loss this adds use_weight times the layer controller's use loss on the gate's
modality level (ModalityGate.use_logits against dropping_labels): where a sensor misleads the
detector, its paths' losses differ too little for DynMM's loss alone to teach the gate to leave
it out.

Every epoch scores the gate on the validation table as it runs (only the paths that fit the
budget, policies/learned.GateAllocator): the mean detection loss of its paths at each validation
budget, next to the equal split's and the best path's (the oracle's); the epoch with the lowest
mean keeps best.*. Each stage resumes: the table chunk by chunk, the cost table from its file;
the gate itself trains in about a minute and restarts. The cost table is measured on this machine
(policies/costs.measure_cost_table), each modality's blocks at their median (uniform_blocks),
and saved as <out_dir>/costs.json: `evaluate --costs` prices a sweep with it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from adaptive_fusion.lab.controller.usage import dropping_helps, use_loss
from adaptive_fusion.lab.gate.config import GateTrainConfig
from adaptive_fusion.lab.gate.table import build_table
from adaptive_fusion.lab.training.config import ConfigError, config_to_dict
from adaptive_fusion.lab.training.trainer import cached_splits, make_optimiser
from adaptive_fusion.model.checkpoint import load_checkpoint
from adaptive_fusion.policies.checkpoint import save_gate
from adaptive_fusion.policies.costs import CostTable, measure_cost_table, uniform_blocks
from adaptive_fusion.policies.gate import ModalityGate, feasible_paths, path_costs

TRAIN_STREAM, VALIDATION_STREAM = 0, 1  # corruption seeds (seed, stream, sample)


def path_weights(logits: torch.Tensor, allowed: torch.Tensor, temperature: float,
                 hard: bool) -> torch.Tensor:
    """DynMM's DiffSoftmax over the allowed paths: softmax(logits / temperature), or with `hard`
    the one-hot of its argmax carrying the softmax's gradient (straight-through)."""
    soft = F.softmax(logits.masked_fill(~allowed, -math.inf) / temperature, dim=1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(dim=1), soft.shape[1]).to(soft.dtype)
    return one_hot - soft.detach() + soft


def temperature_at(epoch: int, epochs: int, start: float, end: float) -> float:
    """Exponential decay from `start` at the first epoch to `end` at the last."""
    return start * (end / start) ** (epoch / max(1, epochs - 1))


def dropping_labels(paths: torch.Tensor, live: torch.Tensor,
                    losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer controller's use-head labels (controller/usage.py), read off the table: per
    sample and live modality, whether the detection loss (as deployed) of the deepest path over
    every live modality falls when that modality is left out. (helps, counted), (B, modalities)
    bool; counted where the modality is live next to another live one."""
    deepest = int(paths.max())
    index = {tuple(path): i for i, path in enumerate(paths.tolist())}
    live = live.bool()
    full = deepest * live.long()
    with_all = losses[torch.arange(len(live)), [index[tuple(row)] for row in full.tolist()]]
    dropped = with_all[:, None].repeat(1, live.shape[1])
    for m in range(live.shape[1]):
        rows = torch.nonzero(live[:, m] & (live.sum(dim=1) >= 2)).flatten()
        if len(rows):
            without = full[rows].clone()
            without[:, m] = 0
            dropped[rows, m] = losses[rows, [index[tuple(row)] for row in without.tolist()]]
    return dropping_helps(with_all, dropped, live)


class GateTrainer:
    def __init__(self, config: GateTrainConfig, show_progress: bool = True):
        self.config = config
        self.show = show_progress
        torch.set_num_threads(config.threads)
        self.out = Path(config.out_dir)
        self.detector, self.detector_document = load_checkpoint(config.detector)
        self.detector.eval().requires_grad_(False)
        self.modalities = tuple(self.detector.config.modalities)
        torch.manual_seed(config.seed)
        self.gate = ModalityGate(config.gate_config(), self.detector.config)
        self.manifests, train_files, val_files = cached_splits(
            config.data, self.detector.config, show_progress)
        tables = self.out / "table"
        self.val = self._usable(build_table(
            self.detector, self.gate, val_files, config.data.corruptions,
            (config.seed, VALIDATION_STREAM), tables / "val", config.table_chunk, show_progress))
        self.train_table = self._usable(build_table(
            self.detector, self.gate, train_files, config.data.corruptions,
            (config.seed, TRAIN_STREAM), tables / "train", config.table_chunk, show_progress))
        self.costs = self._cost_table()
        self.path_ms = torch.from_numpy(
            path_costs(self.gate.paths.numpy(), self.costs, self.modalities)).float()

    def _usable(self, table: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The samples with at least one live sensor (with all dead there is no path)."""
        if self.config.task not in table:
            raise ConfigError(f"the table under {self.out / 'table'} has no {self.config.task!r}: "
                              "it was built before that task existed; remove it to rebuild")
        keep = table["live"].sum(dim=1) > 0
        return {key: value[keep] for key, value in table.items()}

    def _cost_table(self) -> CostTable:
        path = self.out / "costs.json"
        if path.exists():
            return CostTable.load(path)
        table = uniform_blocks(measure_cost_table(
            self.detector, runs=self.config.cost_runs, threads=self.config.threads,
            progress=self.show))
        table.save(path)
        return table

    def _batch(self, table: dict[str, torch.Tensor], index: torch.Tensor) -> tuple:
        views = {name: table[f"view_{name}"][index].float() for name in self.modalities}
        return views, table["quality"][index], table["live"][index], table[self.config.task][index]

    def train(self) -> dict:
        config, schedule = self.config, self.config.schedule
        samples = len(self.train_table["live"])
        steps_per_epoch = max(1, samples // schedule.batch_size)
        optimizer, scheduler = make_optimiser(self.gate.parameters(), config.optimiser,
                                              steps_per_epoch * schedule.epochs)
        rng = np.random.default_rng(config.seed)
        block_total = self.costs.block_total()
        all_helps, all_counted = dropping_labels(
            self.gate.paths, self.train_table["live"], self.train_table["detection_loss"])
        best, history = math.inf, []
        epochs = tqdm(range(schedule.epochs), desc="gate epoch", disable=not self.show)
        for epoch in epochs:
            temperature = temperature_at(epoch, schedule.epochs, schedule.temperature_start,
                                         schedule.temperature_end)
            hard = epoch >= schedule.hard_epoch
            self.gate.train()
            order = torch.from_numpy(rng.permutation(samples))
            sums = {"loss": 0.0, "task": 0.0, "resource": 0.0, "use": 0.0}
            for step in range(steps_per_epoch):
                index = order[step * schedule.batch_size : (step + 1) * schedule.batch_size]
                views, quality, live, losses = self._batch(self.train_table, index)
                fraction = torch.from_numpy(
                    rng.uniform(schedule.min_budget, 1.0, len(index))).float()
                per_modality, per_path = self.gate.logits(views, quality, live, fraction)
                logits = self.gate.path_logits(per_modality, per_path)
                on_live = feasible_paths(self.gate.paths, self.path_ms, live,
                                         torch.full((len(index),), math.inf))
                weights = path_weights(logits, on_live, temperature, hard)
                task = (weights * losses.nan_to_num(0.0)).sum(dim=1)
                expected_ms = (weights * self.path_ms).sum(dim=1)
                resource = config.resource_weight * F.relu(
                    expected_ms - fraction * block_total) / block_total
                usage = use_loss(self.gate.use_logits(per_modality), all_helps[index],
                                 all_counted[index])
                loss = (task + resource).mean() + config.use_weight * usage
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.gate.parameters(), config.optimiser.grad_clip)
                optimizer.step()
                scheduler.step()
                sums["loss"] += loss.item()
                sums["task"] += task.mean().item()
                sums["resource"] += resource.mean().item()
                sums["use"] += usage.item()
            metrics = {"epoch": epoch, "temperature": temperature, "hard": hard,
                       **{key: value / steps_per_epoch for key, value in sums.items()},
                       **self.validate()}
            history.append(metrics)
            epochs.set_postfix_str(f"loss {metrics['loss']:.3f} val {metrics['val_gate']:.3f}")
            self.save("last", metrics, history)
            # Only hard epochs compete: their choices are the ones the gate is trained to make.
            if hard and metrics["val_gate"] < best:
                best = metrics["val_gate"]
                self.save("best", metrics, history)
        return {"epochs": schedule.epochs, "best_val_gate": best, "last": history[-1]}

    @torch.no_grad()
    def validate(self) -> dict:
        """Per validation budget: the mean task value (config.task) of the gate's path (among
        those that fit, as deployed), of the equal split (the deepest common depth of the menu
        that fits, on every live modality) and of the best path that fits; "val_gate" etc.
        average them over the budgets."""
        self.gate.eval()
        views, quality, live, losses = self._batch(self.val, slice(None))
        block_total = self.costs.block_total()
        paths = self.gate.paths
        metrics: dict = {}
        for fraction in self.config.validation_budgets:
            budget = torch.full((len(live),), fraction * block_total)
            allowed = feasible_paths(paths, self.path_ms, live, budget)
            logits = self.gate(views, quality, live, torch.full((len(live),), fraction))
            chosen = logits.masked_fill(~allowed, -math.inf).argmax(dim=1)
            rows = torch.arange(len(live))
            equal = self._equal_split(live, budget)
            best = losses.masked_fill(~allowed | losses.isnan(), math.inf).amin(dim=1)
            metrics[f"val_{fraction:g}"] = {
                "gate": float(losses[rows, chosen].mean()),
                "equal_split": float(losses[rows, equal].mean()),
                "oracle": float(best.mean()),
                "gate_ms": float(self.path_ms[chosen].mean()),
                "budget_ms": fraction * block_total,
            }
        self.gate.train()
        for name in ("gate", "equal_split", "oracle"):
            metrics[f"val_{name}"] = float(np.mean(
                [metrics[f"val_{f:g}"][name] for f in self.config.validation_budgets]))
        return metrics

    def _equal_split(self, live: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
        """Per sample the index of the path giving every live modality the same depth, the
        deepest that fits the budget (feasible_paths: the shallowest always does)."""
        paths = self.gate.paths
        uniform = (paths == paths.max(dim=1, keepdim=True).values) | (paths == 0)
        every_live = (uniform & (paths > 0).eq(live.bool().unsqueeze(1))).all(dim=2)
        fits = every_live & feasible_paths(paths, self.path_ms, live, budget)
        return self.path_ms.unsqueeze(0).masked_fill(~fits, -math.inf).argmax(dim=1)

    def save(self, name: str, metrics: dict, history: list[dict]) -> None:
        save_gate(self.gate, self.out / name, {
            "training": {
                "config": config_to_dict(self.config),
                "detector": self.config.detector,
                "detector_step": self.detector_document.get("training", {}).get("step"),
                "data_sha256": self.manifests["train"]["sha256"],
                "samples": len(self.train_table["live"]),
                "costs": self.costs.to_dict(),
                "history": history,
            },
            "metrics": metrics,
        })
