"""The adaptive-depth fusion detector.

Per modality: tokenizer -> stack of `layers` blocks, of which an allocation picks the ones to run
(the others are not computed at all). A modality that is missing contributes a learned "absent"
token per cell instead. The three token maps are concatenated per grid cell, projected, passed
through the fusion blocks, and a CenterNet-style head predicts per cell: class heatmap, sub-cell
offset of the projected box centre, log camera depth of the centre, log size and yaw (sin, cos).
"""

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .allocation import full_allocation, normalise_allocation
from .blocks import Block
from .config import ModelConfig
from .tokenizers import build_tokenizers

REGRESSION_CHANNELS = {"offset": 2, "log_depth": 1, "log_size": 3, "yaw": 2}
HEATMAP_PRIOR = 0.1  # initial foreground probability, as CenterNet initialises its heatmap bias


class ModalityStream(nn.Module):
    """Tokenizer and block stack of one modality; runs only the blocks it is told to run."""

    def __init__(self, config: ModelConfig, tokenizer: nn.Module):
        super().__init__()
        self.tokenizer = tokenizer
        self.embed = nn.Parameter(torch.zeros(1, config.tokens, config.dim))
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.mlp_ratio) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.absent = nn.Parameter(torch.zeros(1, 1, config.dim))
        nn.init.normal_(self.embed, std=0.02)
        nn.init.normal_(self.absent, std=0.02)

    def forward(self, raster: torch.Tensor, blocks: Sequence[int]) -> torch.Tensor:
        x = self.tokenizer(raster) + self.embed
        for index in blocks:
            x = self.blocks[index](x)
        return self.norm(x)


class AdaptiveFusionDetector(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        tokenizers = build_tokenizers(config)
        self.streams = nn.ModuleDict(
            {name: ModalityStream(config, tokenizers[name]) for name in config.modalities}
        )
        self.fuse = nn.Linear(len(config.modalities) * config.dim, config.dim)
        self.fusion_blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.mlp_ratio) for _ in range(config.fusion_layers)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.heatmap = nn.Linear(config.dim, len(config.classes))
        self.regression = nn.Linear(config.dim, sum(REGRESSION_CHANNELS.values()))
        nn.init.constant_(self.heatmap.bias, -torch.log(torch.tensor(1 / HEATMAP_PRIOR - 1)).item())

    def forward(
        self,
        rasters: Mapping[str, torch.Tensor],
        allocation: Mapping[str, int | Sequence[int]] | None = None,
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run the detector on rasters (modality -> (B, C, h, w)); missing keys are absent.

        allocation: modality -> block indices or count (default: all blocks of every modality);
            a modality left out of it or given no blocks is treated as absent.
        present: optional modality -> (B,) bool; False replaces that sample's modality tokens by
            the absent token (per-sample modality dropout in training; costs no extra compute).
        Returns per-cell maps: "heatmap" logits (B, classes, rows, cols) and the regression maps
        of REGRESSION_CHANNELS, each (B, channels, rows, cols).
        """
        config = self.config
        if allocation is None:
            allocation = full_allocation(config.modalities, config.layers)
        allocation = normalise_allocation(allocation, config.modalities, config.layers)
        batch = self._batch_size(rasters)
        tokens = []
        for name, stream in self.streams.items():
            absent = stream.absent.expand(batch, config.tokens, config.dim)
            if name not in rasters or name not in allocation:
                tokens.append(absent)
                continue
            x = stream(rasters[name], allocation[name])
            if present is not None and name in present:
                x = torch.where(present[name].view(-1, 1, 1), x, absent)
            tokens.append(x)
        x = self.fuse(torch.cat(tokens, dim=-1))
        for block in self.fusion_blocks:
            x = block(x)
        x = self.norm(x)
        return self._maps(x)

    def _maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        rows, cols = self.config.grid
        to_map = lambda t: t.transpose(1, 2).reshape(t.shape[0], -1, rows, cols)  # noqa: E731
        outputs = {"heatmap": to_map(self.heatmap(x))}
        regression = to_map(self.regression(x))
        for name, part in zip(
            REGRESSION_CHANNELS,
            regression.split(list(REGRESSION_CHANNELS.values()), dim=1),
            strict=True,
        ):
            outputs[name] = part
        return outputs

    @staticmethod
    def _batch_size(rasters: Mapping[str, torch.Tensor]) -> int:
        if not rasters:
            raise ValueError("no modality given: at least one raster is needed for the batch size")
        sizes = {raster.shape[0] for raster in rasters.values()}
        if len(sizes) != 1:
            raise ValueError(f"rasters disagree on the batch size: {sorted(sizes)}")
        return sizes.pop()
