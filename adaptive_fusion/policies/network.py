"""The layer controller network: cheap views of the inputs + measured quality + which sensors are
live + the budget -> a log value per (modality, block) slot, a prediction of each sensor's
corruption and, when it may switch live sensors off, a "use" logit per modality.

Views: each modality's model raster pooled to the head grid (8 px cells at the default size),
as the mean and the standard deviation of every channel per cell; the deviation keeps what
averaging would erase (pixel noise, range noise, speckled depth holes). A small convolutional
encoder per modality (ADMN uses one per modality too) turns its view into a feature vector;
a shared MLP reads the three of them with the quality scores, the live flags and the budget, and
has two heads (three with may_skip_live). The corruption head is trained on the labels of the
corruption the training augmentation applied: ADMN found that the detection loss alone does not
teach a controller to track quality. One network serves every budget, since the budget is one of
its inputs.

The use head decides per frame whether a live sensor runs at all (logit > 0): a sensor whose data
misleads the detector (a lidar full of fake returns) is better treated as absent, and its budget
is better spent on the others. Without may_skip_live (ADMN's rule, and every controller saved
before the head existed) every live sensor runs, at least its block 0.

With quality_prior = g the log value of every block past the first of a sensor is lowered by
g * log(measured quality): a sensor at quality q has its extra blocks valued q**g times what the
network says, before the budget is filled, in training as at run time. That is the product's
premise stated as a prior ("as many layers as its measured quality deserves"); the network learns
on top of it and can pay a weak sensor's blocks back where the detector still gains from them.
A LayerDrop-trained detector loses little with any split of a budget, so the detection loss
alone gives the controller almost no reason to move blocks away from a degraded sensor.

slot_range R squashes the network's log values into (-R, R) before the prior is added. Unbounded,
training with Gumbel noise of scale 1 drives them apart until the noise no longer matters: the
session-3 controller's values of one frame span 100-180 nats, so a prior of a few nats reorders
nothing, at training or at run time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adaptive_fusion.core.frames import CORRUPTIONS
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.tokenizers import RASTER_CHANNELS, raster_stride

CLEAN = "clean"
MIN_BUDGET = 1e-3  # budget fraction fed to the network is clipped to [MIN_BUDGET, 1]
DEPTH_PRIOR = 0.25  # initial log value lost per block index: untrained, deeper blocks come later
# Initial use logit: a live sensor runs (88%), about the rate at which dropping it does not help
# the shipped detector on the controller's corrupted training mix.
USE_PRIOR = 2.0
QUALITY_FLOOR = 0.01  # quality_prior: scores below count as this (a finite log)


def corruption_kinds(modality: str) -> tuple[str, ...]:
    """Classes of the kind head of one modality: clean first, then the world's corruptions."""
    return (CLEAN, *CORRUPTIONS[modality])


@dataclass(frozen=True)
class ControllerConfig:
    """Sizes of the controller; the detector's ModelConfig supplies modalities, blocks and the
    raster geometry."""

    channels: tuple[int, ...] = (16, 32, 32)  # encoder convolutions (first at the view grid)
    hidden: int = 128
    may_skip_live: bool = False  # a use logit per modality may switch a live sensor off
    quality_prior: float = 0.0  # g: blocks past the first valued quality**g times (0 = off)
    slot_range: float = 0.0  # R: slot log values squashed into (-R, R) (0 = unbounded)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ControllerConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown controller config keys: {sorted(unknown)}")
        values = dict(data)
        if "channels" in values:
            values["channels"] = tuple(int(c) for c in values["channels"])
        if not isinstance(values.get("may_skip_live", False), bool):
            raise ValueError(f"may_skip_live must be true or false: {values['may_skip_live']!r}")
        config = cls(**values)
        if not config.channels or min(config.channels) < 1 or config.hidden < 1:
            raise ValueError(f"controller sizes must be positive: {config}")
        for key in ("quality_prior", "slot_range"):
            value = getattr(config, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value:
                raise ValueError(f"{key} must be a number >= 0: {value!r}")
        return config


def pooled_view(raster: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, 2C, h/factor, w/factor): per-cell mean and standard deviation."""
    mean = F.avg_pool2d(raster, factor)
    square = F.avg_pool2d(raster * raster, factor)
    std = torch.sqrt(torch.clamp(square - mean * mean, min=0.0) + 1e-6)
    return torch.cat([mean, std], dim=1)


def budget_features(budget: torch.Tensor) -> torch.Tensor:
    """(B,) budget fractions -> (B, 3): the fraction, its square root and its log scaled to
    [0, 1] over [MIN_BUDGET, 1], so that small budgets are told apart as well as large ones."""
    budget = budget.float().clamp(MIN_BUDGET, 1.0).view(-1, 1)
    return torch.cat([budget, budget.sqrt(), budget.log() / math.log(MIN_BUDGET)], 1)


class ViewEncoder(nn.Module):
    """Pooled view -> feature vector: convolutions (the first at `first_stride`, the others at
    stride 2), each followed by `activation`, then the mean over the image. The controller's:
    3x3, the first at the view grid, GELU; the DynMM gate's (gate.py): DynMM's 5x5 stride 2,
    tanh."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], kernel: int = 3,
                 first_stride: int = 1, activation: type[nn.Module] = nn.GELU):
        super().__init__()
        layers: list[nn.Module] = []
        for index, out in enumerate(channels):
            layers += [nn.Conv2d(in_channels, out, kernel, stride=first_stride if index == 0
                                 else 2, padding=kernel // 2), activation()]
            in_channels = out
        self.net = nn.Sequential(*layers)

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        return self.net(view).mean(dim=(2, 3))


class LayerController(nn.Module):
    def __init__(self, config: ControllerConfig, model: ModelConfig):
        super().__init__()
        self.config = config
        self.model_config = model
        self.modalities = tuple(model.modalities)
        self.layers = model.layers
        self.pool = {name: model.head_stride // raster_stride(name, model)
                     for name in self.modalities}
        self.encoders = nn.ModuleDict({
            name: ViewEncoder(2 * RASTER_CHANNELS[name], config.channels)
            for name in self.modalities
        })
        count = len(self.modalities)
        features = count * config.channels[-1] + 2 * count + 3
        self.trunk = nn.Sequential(
            nn.Linear(features, config.hidden), nn.GELU(),
            nn.Linear(config.hidden, config.hidden), nn.GELU(),
        )
        self.slots = nn.Linear(config.hidden, count * self.layers)
        with torch.no_grad():  # start from "earlier blocks first", the order LayerDrop favours
            self.slots.bias.copy_(-DEPTH_PRIOR * torch.arange(self.layers).repeat(count))
        # Per modality: corrupted (logit), severity (logit), kind (logits); plus scene fog.
        self.kind_counts = [len(corruption_kinds(name)) for name in self.modalities]
        self.corruption = nn.Linear(config.hidden, 2 * count + sum(self.kind_counts) + 1)
        # Only with may_skip_live, so that controllers saved without it load strictly.
        self.use = nn.Linear(config.hidden, count) if config.may_skip_live else None
        if self.use is not None:
            with torch.no_grad():
                self.use.bias.fill_(USE_PRIOR)

    def forward(
        self, rasters: dict[str, torch.Tensor], quality: torch.Tensor, live: torch.Tensor,
        budget: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """rasters: modality -> (B, C, h, w) (a missing one is treated as not live); quality and
        live (B, modalities) in [0, 1]; budget (B,) fraction of the blocks' compute.

        Returns "slots" (B, modalities, layers) log values ("network_slots": the same before
        the quality prior), "corrupted" and "severity" logits
        (B, modalities), "kind" modality -> (B, kinds) logits, "fog" (B,) logit; with
        may_skip_live also "use" (B, modalities) logits (run the modality iff > 0)."""
        live = live.float()
        features = []
        for m, name in enumerate(self.modalities):
            encoder = self.encoders[name]
            if name in rasters:
                feature = encoder(pooled_view(rasters[name].float(), self.pool[name]))
                features.append(feature * live[:, m : m + 1])
            else:
                features.append(live.new_zeros(len(live), self.config.channels[-1]))
        x = self.trunk(torch.cat([*features, quality.float() * live, live,
                                  budget_features(budget)], dim=1))
        count = len(self.modalities)
        outputs = {"slots": self.slots(x).view(-1, count, self.layers)}
        if self.config.slot_range:
            bound = self.config.slot_range
            outputs["slots"] = bound * torch.tanh(outputs["slots"] / bound)
        outputs["network_slots"] = outputs["slots"]  # before the prior: what slot_spread reads
        if self.config.quality_prior:
            weight = self.config.quality_prior * torch.log(
                quality.float().clamp(QUALITY_FLOOR, 1.0))
            past_first = torch.ones(self.layers, device=x.device)
            past_first[0] = 0.0
            outputs["slots"] = outputs["slots"] + weight.unsqueeze(2) * past_first
        corrupted, severity, kinds, fog = self.corruption(x).split(
            [count, count, sum(self.kind_counts), 1], dim=1)
        outputs.update(corrupted=corrupted, severity=severity, fog=fog.squeeze(1))
        outputs["kind"] = dict(zip(self.modalities, kinds.split(self.kind_counts, dim=1),
                                   strict=True))
        if self.use is not None:
            outputs["use"] = self.use(x)
        return outputs


def slot_spread(network_slots: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """The mean over samples and blocks past the first of the variance of the network's slot
    log values across the live modalities (samples with one live modality count 0).

    The penalty of ControllerTrainConfig.spread_weight: it pulls the values of one block index
    together across sensors, i.e. towards the equal split, so that the detection loss moves a
    block from one sensor to another only where it gains enough to pay for it, and measured
    quality (the prior, added after) moves it where it does not. The detection loss of a
    LayerDrop-trained detector changes little with the split, so without the pull it can settle
    on one sensor's blocks for reasons that do not carry to new scenes (v6's first controller:
    the clean camera at block 0 alone, below the equal split on validation)."""
    weight = live.float().unsqueeze(2)  # (B, modalities, 1)
    count = weight.sum(dim=1, keepdim=True).clamp(min=1.0)
    values = network_slots[:, :, 1:]
    mean = (values * weight).sum(dim=1, keepdim=True) / count
    variance = (((values - mean) ** 2) * weight).sum(dim=1) / count.squeeze(1)
    return variance.mean()
