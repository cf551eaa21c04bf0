"""Architecture of the detector as one dataclass: it is saved next to the weights and rebuilt from
them, so every size that shapes a tensor lives here."""

from dataclasses import asdict, dataclass, field

from adaptive_fusion.core.frames import CLASSES, MODALITIES

# The fusion operators (model/detector.py): "concat" concatenates a cell's modality tokens and
# projects them linearly; "cross_attention" first lets them attend to each other (CellAttention).
FUSIONS = ("concat", "cross_attention")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the detector; the defaults are the shipped model (adaptive_fusion/models/default).
    The token grid is the camera patch grid of the model's input size."""

    image_width: int = 320
    image_height: int = 240
    patch: int = 16  # pixels per token grid cell side, shared by all three modalities
    head_stride: int = 8  # pixels per detection head cell: finer than the tokens, for small objects
    stem_channels: int = 32  # channels of each modality's stem at the head stride
    head_channels: int = 64
    head_kernel: int = 3  # spatial kernel of the head's hidden layer; 1 = a per-cell MLP
    # Side, in head cells (odd), of the window whose measured depths a box cell may choose from
    # as its depth reference: an occluded object's own surface is often a neighbour cell's. Each
    # window cell offers its nearest and its farthest measurement (an occluded object's surface
    # mostly lies behind its occluder within a cell), plus a free regression. The head also
    # predicts the error it expects of its log depth (a Laplace scale), which decoding turns
    # into a confidence, so that boxes placed at the wrong depth rank lower (docs/model.md).
    depth_window: int = 5
    # Side of the square of head cells around a box's centre cell that learn its regression (a
    # training target, not a tensor shape), weighted by the heatmap splat there. Decoding merges
    # the boxes of neighbouring cells (coding.bev_nms), so their own estimates count.
    regression_cells: int = 3
    dim: int = 128
    heads: int = 4
    mlp_ratio: int = 2
    layers: int = 8  # transformer blocks per modality
    lidar_raster_stride: int = 4  # lidar rasterised at image/4, then patched
    depth_raster_stride: int = 2  # depth average-pooled at image/2, then patched
    max_depth: float = 80.0  # metres; inverse-depth normalisation and decoding range
    classes: tuple[str, ...] = CLASSES
    modalities: tuple[str, ...] = field(default=MODALITIES)
    # The fusion operators the model can run (architecture.FUSIONS); a supernet adds
    # "cross_attention", whose weights exist only then, so that a checkpoint without it loads
    # strictly.
    fusion_ops: tuple[str, ...] = ("concat",)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid as (rows, cols)."""
        return self.image_height // self.patch, self.image_width // self.patch

    @property
    def head_grid(self) -> tuple[int, int]:
        """Detection head grid as (rows, cols)."""
        return self.image_height // self.head_stride, self.image_width // self.head_stride

    @property
    def tokens(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def to_dict(self) -> dict:
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["modalities"] = list(self.modalities)
        data["fusion_ops"] = list(self.fusion_ops)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(data)
        for key in ("classes", "modalities", "fusion_ops"):
            if key in values:
                values[key] = tuple(values[key])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.image_width % self.patch or self.image_height % self.patch:
            raise ValueError(
                f"image size {self.image_width}x{self.image_height} is not a multiple of the "
                f"patch size {self.patch}"
            )
        if self.patch % self.head_stride:
            raise ValueError(f"head stride {self.head_stride} does not divide patch {self.patch}")
        for stride in (self.lidar_raster_stride, self.depth_raster_stride):
            if self.head_stride % (2 * stride):
                raise ValueError(f"raster stride {stride} is not at most half the head stride "
                                 f"{self.head_stride}, as a multiple")
        if self.head_kernel < 1 or self.head_kernel % 2 == 0:
            raise ValueError(f"head_kernel {self.head_kernel} must be odd and >= 1")
        if self.depth_window < 1 or self.depth_window % 2 == 0:
            raise ValueError(f"depth_window {self.depth_window} must be odd and >= 1")
        if self.regression_cells < 1 or self.regression_cells % 2 == 0:
            raise ValueError(f"regression_cells {self.regression_cells} must be odd and >= 1")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.layers < 1:
            raise ValueError("each modality needs at least one block (layer 0 always runs)")
        if not self.fusion_ops or len(set(self.fusion_ops)) != len(self.fusion_ops) or not set(
                self.fusion_ops) <= set(FUSIONS):
            raise ValueError(f"fusion_ops {list(self.fusion_ops)} must be distinct operators "
                             f"of {list(FUSIONS)}, at least one")
