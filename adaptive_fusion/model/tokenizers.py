"""One tokenizer per modality, each producing a token per cell of the shared camera patch grid.

Inputs are dense rasters in the model's image geometry (see `inputs.py`), so a strided convolution
is the whole tokenizer: cheap next to the transformer blocks, which keeps the saving from skipping
blocks close to proportional.
"""

import torch
from torch import nn

from .config import ModelConfig

# Input channels of each raster; `inputs.py` builds rasters with exactly these channels.
CAMERA_CHANNELS = 3  # RGB scaled to [0, 1] then normalised
DEPTH_CHANNELS = 2  # normalised inverse depth, validity
LIDAR_CHANNELS = 4  # normalised inverse range, height, intensity, occupancy


class PatchTokenizer(nn.Module):
    """Raster (B, C, H/s, W/s) -> tokens (B, rows*cols, dim) with one patch per grid cell."""

    def __init__(self, channels: int, cell: int, dim: int):
        super().__init__()
        self.embed = nn.Conv2d(channels, dim, kernel_size=cell, stride=cell)
        self.norm = nn.LayerNorm(dim)

    def forward(self, raster: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(raster).flatten(2).transpose(1, 2))


def build_tokenizers(config: ModelConfig) -> nn.ModuleDict:
    return nn.ModuleDict(
        {
            "camera": PatchTokenizer(CAMERA_CHANNELS, config.patch, config.dim),
            "depth": PatchTokenizer(
                DEPTH_CHANNELS, config.patch // config.depth_raster_stride, config.dim
            ),
            "lidar": PatchTokenizer(
                LIDAR_CHANNELS, config.patch // config.lidar_raster_stride, config.dim
            ),
        }
    )
