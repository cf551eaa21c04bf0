"""One convolutional stem per modality: raster -> a feature map at the head's grid (kept for the
head's skip connection) -> one token per cell of the shared camera patch grid.

Small convolutions with a nonlinearity instead of one big patchify convolution: early convolutions
make a ViT converge much faster (Xiao et al., "Early Convolutions Help Transformers See Better"),
and ours trains on two CPU cores. The stems stay small next to the transformer blocks, which keeps
the saving from skipping blocks close to proportional.
"""

import torch
from torch import nn

from adaptive_fusion.model.config import ModelConfig

# Input channels of each raster; `inputs.py` builds rasters with exactly these channels.
RASTER_CHANNELS = {
    "camera": 3,  # RGB scaled to [0, 1] then normalised
    "depth": 2,  # normalised log depth, validity
    "lidar": 4,  # normalised log depth, height, intensity, occupancy
}


def raster_stride(name: str, config: ModelConfig) -> int:
    """Pixels of the model image per raster pixel."""
    return {"camera": 1, "depth": config.depth_raster_stride,
            "lidar": config.lidar_raster_stride}[name]


class ConvStem(nn.Module):
    """Raster (B, C, H/s, W/s) -> (head-grid features (B, skip, H/h, W/h), tokens (B, cells, dim)).

    A patchify convolution to half the head stride h (none when the raster is already there),
    then one overlapping 3x3 stride-2 convolution with GELU to h; one more convolution with
    kernel = stride = patch/h makes the tokens. Few large feature maps, because on a CPU their
    memory traffic, not their FLOPs, sets the time. No batch norm: batches are small and whole
    modalities are dropped per sample.
    """

    def __init__(self, channels: int, stride: int, config: ModelConfig):
        super().__init__()
        patchify = config.head_stride // (2 * stride)
        if patchify < 1 or config.head_stride % (2 * stride):
            raise ValueError(f"raster stride {stride} cannot reach the head stride "
                             f"{config.head_stride} with a patchify and a stride-2 convolution")
        layers: list[nn.Module] = []
        if patchify > 1:
            layers += [nn.Conv2d(channels, config.stem_channels, patchify, stride=patchify),
                       nn.GELU()]
            channels = config.stem_channels
        layers += [nn.Conv2d(channels, config.stem_channels, 3, stride=2, padding=1), nn.GELU()]
        self.features = nn.Sequential(*layers)
        step = config.patch // config.head_stride
        self.embed = nn.Conv2d(config.stem_channels, config.dim, kernel_size=step, stride=step)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, raster: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(raster)
        tokens = self.norm(self.embed(features).flatten(2).transpose(1, 2))
        return features, tokens


def build_tokenizers(config: ModelConfig) -> nn.ModuleDict:
    return nn.ModuleDict({
        name: ConvStem(RASTER_CHANNELS[name], raster_stride(name, config), config)
        for name in config.modalities
    })
