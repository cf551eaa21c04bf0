"""Architecture of the detector as one dataclass: it is saved next to the weights and rebuilt from
them, so every size that shapes a tensor lives here."""

from dataclasses import asdict, dataclass, field

from ..world.frames import CLASSES, MODALITIES

# depth_references -> how many reference maps it gives per head cell
DEPTH_REFERENCES = {"nearest": 1, "nearest_and_farthest": 2, "per_sensor": 4}


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the detector. The token grid is the camera patch grid of the model's input size."""

    image_width: int = 320
    image_height: int = 240
    patch: int = 16  # pixels per token grid cell side, shared by all three modalities
    head_stride: int = 8  # pixels per detection head cell: finer than the tokens, for small objects
    stem_channels: int = 32  # channels of each modality's stem at the head stride
    head_channels: int = 64
    head_kernel: int = 1  # spatial kernel of the head's hidden layer; 1 = a per-cell MLP
    # Side, in head cells, of the window whose measured depths a box cell may choose from as its
    # depth reference (an occluded object's own surface is often a neighbour cell's); 0 = no
    # choice, the cell's own measurement (the v1-v3 models). v4 used 3, trained to keep its own
    # cell whenever that sees the box (training/loss.py): +5 points of clean mAP; v5 uses 5.
    depth_window: int = 0
    # One more head channel: the log scale of a Laplace distribution over the error of the
    # predicted log depth (the depth error the head expects at this cell; training/loss.py).
    # Decoding multiplies a box's score by a confidence from it, so that boxes placed at the
    # wrong depth (mostly partly hidden objects, at their occluder's depth) rank lower.
    depth_uncertainty: bool = False
    # Which measurements of each window cell are references: "nearest", the nearest return of
    # the cell (lidar, else the depth camera; v4, v5); "nearest_and_farthest", that and the
    # farthest (two per cell); "per_sensor", each sensor's nearest and farthest (four). An
    # occluded object's surface is mostly behind its occluder within a cell: among v5's misses of
    # objects under half visible, a "nearest" reference lies on the object for 21%, one of the
    # "nearest_and_farthest" for 64%, one of the "per_sensor" for 86% (runs/s9/cand_options.py).
    depth_references: str = "nearest"
    # Side of the square of head cells around a box's centre cell that learn its regression (a
    # training target, not a tensor shape): 1, the centre cell alone (v1-v5); 3, its
    # neighbours too, weighted by the heatmap splat there. Decoding merges the boxes of
    # neighbouring cells (coding.bev_nms), so their own estimates count.
    regression_cells: int = 1
    dim: int = 128
    heads: int = 4
    mlp_ratio: int = 2
    layers: int = 8  # transformer blocks per modality
    fusion_layers: int = 0
    lidar_raster_stride: int = 4  # lidar rasterised at image/4, then patched
    depth_raster_stride: int = 2  # depth average-pooled at image/2, then patched
    max_depth: float = 80.0  # metres; inverse-depth normalisation and decoding range
    classes: tuple[str, ...] = CLASSES
    modalities: tuple[str, ...] = field(default=MODALITIES)

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
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(data)
        for key in ("classes", "modalities"):
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
        if self.depth_window < 0 or (self.depth_window and self.depth_window % 2 == 0):
            raise ValueError(f"depth_window {self.depth_window} must be 0 or odd")
        if self.regression_cells < 1 or self.regression_cells % 2 == 0:
            raise ValueError(f"regression_cells {self.regression_cells} must be odd and >= 1")
        if self.depth_references not in DEPTH_REFERENCES:
            raise ValueError(f"depth_references {self.depth_references!r} is not one of "
                             f"{', '.join(DEPTH_REFERENCES)}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.layers < 1:
            raise ValueError("each modality needs at least one block (layer 0 always runs)")
