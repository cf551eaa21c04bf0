"""The adaptive-depth fusion detector.

Per modality: a convolutional stem -> stack of `layers` blocks, of which an allocation picks the
ones to run (the others are not computed at all). A modality that is missing contributes a learned
"absent" token per cell instead. The three token maps are concatenated per grid cell (optionally
after attending to each other there, CellAttention), projected, passed through the fusion blocks,
and a CenterNet-style head at twice the token resolution (with skip connections from the stems)
predicts per head cell: class heatmap, sub-cell offset of the projected box centre, log camera
depth of the centre, log size and yaw (sin, cos).

The log depth is predicted as a residual to a measured depth (nearest lidar return, else the depth
camera): reading a metric value back out of deep token features is what the model learned slowest,
and the measurement is already there. The head also chooses which measurement: the nearest or the
farthest of any cell in the config.depth_window window around it, or none (a free regression).
The cell's own nearest return is the occluder for most partly hidden objects, whose own surface
shows in a neighbouring cell or just behind the occluder's edge. One more channel,
"depth_log_scale", is the log of the depth error the head expects (a Laplace scale on log depth),
which decoding turns into a confidence.

The model runs one subnet of its weights, its `architecture` (model/architecture.py: each
modality's depth, MLP width, heads and token grid, and the fusion operator); by default the full
one, today's detector.
"""

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from adaptive_fusion.model.allocation import first_blocks, normalise_allocation
from adaptive_fusion.model.architecture import Architecture, SearchSpace, StreamArchitecture
from adaptive_fusion.model.blocks import Block, SelfAttention
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.inputs import MIN_RANGE
from adaptive_fusion.model.streams import SideBySideStreams, Units, drain
from adaptive_fusion.model.tokenizers import build_tokenizers, raster_stride

REGRESSION_CHANNELS = {"offset": 2, "log_depth": 1, "log_size": 3, "yaw": 2}
HEATMAP_PRIOR = 0.1  # initial foreground probability, as CenterNet initialises its heatmap bias
REFERENCE_MAPS = 2  # per head cell: its nearest and its farthest measured depth
NO_MEASUREMENT = 2.0  # above any normalised depth (<= 1): marks raster pixels without one


class ModalityStream(nn.Module):
    """Stem and block stack of one modality; runs only the blocks it is told to run, each in
    the subnet `shape` gives (model/architecture.py)."""

    def __init__(self, config: ModelConfig, stem: nn.Module):
        super().__init__()
        self.stem = stem
        self.grid = config.grid
        self.embed = nn.Parameter(torch.zeros(1, config.tokens, config.dim))
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.mlp_ratio) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.absent = nn.Parameter(torch.zeros(1, 1, config.dim))
        nn.init.normal_(self.embed, std=0.02)
        nn.init.normal_(self.absent, std=0.02)

    def forward(
        self, raster: torch.Tensor, blocks: Sequence[int], shape: StreamArchitecture,
        gates: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (stem features at the head grid, tokens). With `gates` (B, layers), every
        block of the shape's depth is computed and its update scaled per sample (for training a
        controller through the frozen model); without, only `blocks` run."""
        if gates is None:
            return drain(self.units(raster, blocks, shape))
        features, grid_tokens = self.stem(raster)
        grid_tokens = grid_tokens + self.embed
        x = start = pool_tokens(grid_tokens, self.grid, shape.token_pool)
        for index, block in enumerate(self.blocks[: shape.depth]):
            x = x + gates[:, index].view(-1, 1, 1) * (block(x, shape.heads, shape.mlp_hidden) - x)
        return features, self.norm(unpool_tokens(grid_tokens, start, x, self.grid,
                                                 shape.token_pool))

    def units(self, raster: torch.Tensor, blocks: Sequence[int],
              shape: StreamArchitecture) -> Units:
        """forward without gates one unit at a time: the stem, then each block (a yield
        between them), returning (stem features, tokens); streams.py runs several side by
        side."""
        features, grid_tokens = self.stem(raster)
        grid_tokens = grid_tokens + self.embed
        x = start = pool_tokens(grid_tokens, self.grid, shape.token_pool)
        for index in blocks:
            yield
            x = self.blocks[index](x, shape.heads, shape.mlp_hidden)
        return features, self.norm(unpool_tokens(grid_tokens, start, x, self.grid,
                                                 shape.token_pool))


def pool_tokens(x: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """Tokens (B, rows * cols, dim) averaged over factor x factor cells (a partial window at an
    odd edge averages the cells it has): (B, ceil(rows/f) * ceil(cols/f), dim). The blocks'
    attention then costs about 1/f**4 and the rest 1/f**2."""
    if factor == 1:
        return x
    batch, _, dim = x.shape
    pooled = F.avg_pool2d(x.transpose(1, 2).reshape(batch, dim, *grid), factor,
                          ceil_mode=True)
    return pooled.flatten(2).transpose(1, 2)


def unpool_tokens(grid_tokens: torch.Tensor, start: torch.Tensor, x: torch.Tensor,
                  grid: tuple[int, int], factor: int) -> torch.Tensor:
    """The blocks' result back on the full grid: what they added to the pooled tokens (x -
    start), repeated over each pooled cell's factor x factor cells, added to the unpooled
    tokens. Only the update is coarse: each cell keeps its own stem token, which a far
    object a few pixels tall needs."""
    if factor == 1:
        return x
    rows, cols = grid
    batch, _, dim = x.shape
    pooled_rows, pooled_cols = -(-rows // factor), -(-cols // factor)
    update = ((x - start).view(batch, pooled_rows, 1, pooled_cols, 1, dim)
              .expand(batch, pooled_rows, factor, pooled_cols, factor, dim)
              .reshape(batch, pooled_rows * factor, pooled_cols * factor, dim))
    return grid_tokens + update[:, :rows, :cols].reshape(batch, rows * cols, dim)


class CellAttention(nn.Module):
    """The "cross_attention" fusion: at each token grid cell, the modalities' tokens attend to
    each other (one pre-norm attention over M tokens, the cell's batch of sequences), then
    concat + linear as in "concat". Per cell, not queries of one modality over another's whole
    grid: the modalities are registered on the same image plane, so what a cell needs from the
    others is at the same cell, and M x M attention per cell costs a small fraction of one
    block (no attention over hundreds of tokens). What concat + linear cannot do and this can:
    weigh a modality by its content at that cell (a fogged camera cell, a lidar sector with
    no returns), not with fixed weights. The output projection starts at zero, so a supernet
    initialised from a concat model starts from the same outputs."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """Modality tokens, each (B, cells, dim) -> (B, cells, M * dim), concatenated per cell
        in the given order."""
        batch, cells, dim = tokens[0].shape
        x = torch.stack(tokens, 2).view(batch * cells, len(tokens), dim)
        x = x + self.attn(self.norm(x))
        return x.view(batch, cells, len(tokens) * dim)


class DetectionHead(nn.Module):
    """Fused tokens -> per head cell maps: the tokens, projected and upsampled, plus the stems'
    features and the measured depth of the cell, through two small convolutions. The hidden one
    is head_kernel wide: a 3x3 lets a cell see its neighbours, which places a peak between the
    two head cells a token spans (about 0.25 ms at batch 1); the others are 1x1, because at batch
    1 on a CPU each extra operation costs more in overhead than in arithmetic, and the head runs
    at every budget."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        channels = config.head_channels
        self.upsample = config.patch // config.head_stride
        self.grid = config.grid
        self.project = nn.Conv2d(config.dim, channels, 1)
        # The stems' features side by side (zeros for an absent modality) + measured depth, has.
        self.skip = nn.Conv2d(len(config.modalities) * config.stem_channels + 2, channels, 1)
        kernel = config.head_kernel
        self.mix = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.window = config.depth_window
        choices = REFERENCE_MAPS * self.window**2 + 1
        # 1 at the candidates that are the head cell's own measurements (the window's centre of
        # each reference map): the loss prefers them when they lie on the box.
        own = torch.zeros(1, choices, 1, 1)
        own[0, [k * self.window**2 + self.window**2 // 2 for k in range(REFERENCE_MAPS)]] = 1.0
        self.register_buffer("own_cells", own, persistent=False)
        # + 1: the log scale of the expected depth error
        outputs = len(config.classes) + sum(REGRESSION_CHANNELS.values()) + choices + 1
        self.out = nn.Conv2d(channels, outputs, 1)
        self.classes = len(config.classes)
        with torch.no_grad():
            self.out.bias[: self.classes] = -math.log(1 / HEATMAP_PRIOR - 1)
        self.log_range = (math.log(MIN_RANGE), math.log(config.max_depth / MIN_RANGE))

    def forward(
        self, tokens: torch.Tensor, features: Sequence[torch.Tensor],
        measured: torch.Tensor, has_measured: torch.Tensor,
        references: torch.Tensor, has_reference: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """measured, has_measured: each cell's nearest measurement (B, 1, rows, cols), an input;
        references, has_reference: the nearest and farthest measurement of each cell
        (B, REFERENCE_MAPS, rows, cols), where the window's candidates come from."""
        # Channels-last throughout, the 1x1 convolutions as linear maps over a cell's channels
        # (the same weights): at batch 1 on a CPU a 1x1 convolution over a concatenation of
        # channels-last maps went through copies and torch's slow convolution path.
        rows, cols = self.grid
        batch, up = tokens.shape[0], self.upsample
        projected = F.linear(tokens, self.project.weight.flatten(1), self.project.bias)
        channels = projected.shape[-1]
        x = (projected.view(batch, rows, 1, cols, 1, channels)
             .expand(batch, rows, up, cols, up, channels)
             .reshape(batch, rows * up, cols * up, channels))  # nearest-neighbour upsampling
        skip = torch.cat([m.permute(0, 2, 3, 1) for m in
                          (*features, measured * has_measured, has_measured)], -1)
        x = x + F.linear(skip, self.skip.weight.flatten(1), self.skip.bias)
        x = F.gelu(self.mix(F.gelu(x).permute(0, 3, 1, 2)))
        maps = F.linear(x.permute(0, 2, 3, 1), self.out.weight.flatten(1), self.out.bias)
        maps = maps.permute(0, 3, 1, 2)
        outputs = {"heatmap": maps[:, : self.classes]}
        regression = sum(REGRESSION_CHANNELS.values())
        parts = maps[:, self.classes : self.classes + regression].split(
            list(REGRESSION_CHANNELS.values()), dim=1)
        outputs.update(zip(REGRESSION_CHANNELS, parts, strict=True))
        outputs["depth_log_scale"] = maps[:, -1:]
        maps = maps[:, :-1]
        offset, scale = self.log_range
        candidates, available = depth_candidates(offset + scale * references, has_reference,
                                                 self.window)
        # log(availability): 0 for an available candidate, about -14 for a missing one, and
        # smooth in between for a modality blended in by a float presence weight.
        choice = maps[:, self.classes + regression :] + available.clamp(min=1e-6).log()
        # max(...).indices: torch's argmax over the channel dim is ten times slower on a CPU.
        chosen = candidates.gather(1, choice.max(dim=1, keepdim=True).indices)
        outputs.update(depth_choice=choice, depth_candidates=candidates,
                       depth_available=available, depth_own=self.own_cells,
                       depth_residual=outputs["log_depth"],
                       log_depth=outputs["log_depth"] + chosen)
        return outputs


def depth_candidates(
    log_depth: torch.Tensor, available: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The depth references a head cell may choose from: for each of the R maps of measured log
    depth (metres) in `log_depth` (B, R, rows, cols), that of every cell in the window x window
    neighbourhood around it (map by map, row-major), then 0 for the free slot (the residual
    alone is the depth). Returns (candidates, availability), each (B, R * window**2 + 1, rows,
    cols); the free slot is always available, cells off the map never."""
    batch, maps, rows, cols = log_depth.shape
    pad, cells = window // 2, maps * window * window
    # Every window of both stacks as one strided view of the zero-padded maps, copied once:
    # F.unfold's im2col took about ten times as long at these sizes (batch 1, 30x40 cells).
    padded = F.pad(torch.cat([log_depth, available.to(log_depth.dtype)], 1), (pad,) * 4)
    stride = padded.stride()
    windows = padded.as_strided((batch, 2 * maps, window, window, rows, cols),
                                (stride[0], stride[1], stride[2], stride[3], stride[2], stride[3]))
    out = log_depth.new_empty(batch, 2, cells + 1, rows, cols)
    out[:, :, :cells].view(batch, 2, maps, window, window, rows, cols).copy_(
        windows.view(batch, 2, maps, window, window, rows, cols))
    out[:, 0, cells], out[:, 1, cells] = 0.0, 1.0  # the free slot
    return out[:, 0], out[:, 1]


def cell_depths(
    raster: torch.Tensor, value: int, valid: int, stride: int, config: ModelConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over each head cell of a depth or lidar raster: the smallest normalised log depth, whether
    the cell has any, and the largest; (B, 1, rows, cols) each. The
    nearest surface because an object in front of background is what a box centre sits behind;
    the farthest is the surface behind an occluder's edge, often a partly hidden object's own.
    Both from one pooling of the negated and the plain depth side by side."""
    depth = raster[:, value : value + 1]
    stack = torch.cat([-depth, depth], 1)
    pooled = F.max_pool2d(torch.where(raster[:, valid : valid + 1] > 0, stack, -NO_MEASUREMENT),
                          config.head_stride // stride)
    nearest = -pooled[:, :1]
    return nearest, (nearest < NO_MEASUREMENT).to(raster.dtype), pooled[:, 1:]


def apply_presence(
    keep: torch.Tensor, tokens: torch.Tensor, feature: torch.Tensor, absent: torch.Tensor,
    name: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One modality's tokens and stem features under its per-sample presence `keep` (B,): bool
    selects its tokens or the absent token; a float weight in [0, 1] blends them."""
    if keep.dtype == torch.bool:
        return (torch.where(keep.view(-1, 1, 1), tokens, absent),
                feature * keep.view(-1, 1, 1, 1).to(feature.dtype))
    if not keep.is_floating_point() or not bool(((keep >= 0) & (keep <= 1)).all()):
        raise ValueError(f"present[{name!r}] must be bool or a float weight in [0, 1]")
    weight = keep.view(-1, 1, 1)
    return (weight * tokens + (1 - weight) * absent,
            feature * weight.view(-1, 1, 1, 1).to(feature.dtype))


class AdaptiveFusionDetector(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        stems = build_tokenizers(config)
        self.streams = nn.ModuleDict(
            {name: ModalityStream(config, stems[name]) for name in config.modalities}
        )
        # Only a model whose config offers the cross-attention fusion has its weights.
        self.cell_attention = (CellAttention(config.dim, config.heads)
                               if "cross_attention" in config.fusion_ops else None)
        self.fuse = nn.Linear(len(config.modalities) * config.dim, config.dim)
        self.norm = nn.LayerNorm(config.dim)
        self.head = DetectionHead(config)
        # Set to a runner (streams.py) to run the modality streams side by side where that
        # applies (_side_by_side_applies); FusionPipeline sets it frame by frame.
        self.side_by_side: SideBySideStreams | None = None
        self.architecture = SearchSpace.of(config).full()

    def use_architecture(self, architecture: Architecture) -> None:
        """Run the subnet `architecture` from now on (model/architecture.py); an allocation
        then picks among the first `depth` blocks of each modality."""
        SearchSpace.of(self.config).validate(architecture)
        self.architecture = architecture

    @property
    def depths(self) -> dict[str, int]:
        """Blocks each modality has in the architecture in use."""
        return {name: stream.depth for name, stream in self.architecture.streams.items()}

    def forward(
        self,
        rasters: Mapping[str, torch.Tensor],
        allocation: Mapping[str, int | Sequence[int]] | None = None,
        present: Mapping[str, torch.Tensor] | None = None,
        gates: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run the detector on rasters (modality -> (B, C, h, w)); missing keys are absent.

        allocation: modality -> block indices or count (default: every block of every modality
            in the architecture in use, use_architecture);
            a modality left out of it or given no blocks is treated as absent.
        present: optional modality -> (B,) bool or float weight in [0, 1]. False replaces that
            sample's modality by the absent token (per-sample modality dropout in training; costs
            no extra compute); a weight w blends them, w * its tokens + (1 - w) * the absent
            token, with its stem features and measured depth scaled by w (at 0 and 1 exactly
            the bool's result): the differentiable path of a controller's decision to run it.
        gates: optional modality -> (B, layers) weights in [0, 1] that scale each block's update
            per sample instead of skipping blocks (all blocks are computed): the differentiable
            path a layer controller is trained through. A modality's allocation still decides
            whether it is present.
        Returns per head cell maps: "heatmap" logits (B, classes, rows, cols) and the regression
        maps of REGRESSION_CHANNELS, each (B, channels, rows, cols).
        """
        return self.fuse_streams(self.run_streams(rasters, allocation, gates), rasters, present)

    def run_streams(
        self,
        rasters: Mapping[str, torch.Tensor],
        allocation: Mapping[str, int | Sequence[int]] | None = None,
        gates: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The first half of `forward`: modality -> (stem features, tokens) of every modality
        that has a raster and blocks. Public so that several presence patterns can be fused
        from one run of the streams (fuse_streams)."""
        depths, shapes = self.depths, self.architecture.streams
        if allocation is None:
            allocation = {name: first_blocks(depth) for name, depth in depths.items()}
        allocation = normalise_allocation(allocation, self.config.modalities, depths)
        running = [name for name in self.streams if name in rasters and name in allocation]
        if self._side_by_side_applies(rasters, running, gates):
            return self.side_by_side.run({
                name: self.streams[name].units(rasters[name], allocation[name], shapes[name])
                for name in running})
        return {name: self.streams[name](rasters[name], allocation[name], shapes[name],
                                         None if gates is None else gates.get(name))
                for name in running}

    def _side_by_side_applies(
        self, rasters: Mapping[str, torch.Tensor], running: Sequence[str],
        gates: Mapping[str, torch.Tensor] | None,
    ) -> bool:
        """Only at batch 1 without autograd (where one intra-op thread per stream pays), on a
        CPU, and outside a torch dispatch mode such as FlopCounterMode, which is per thread
        and would not see the workers' operations."""
        return (self.side_by_side is not None and gates is None and len(running) > 1
                and not torch.is_grad_enabled() and not is_in_torch_dispatch_mode()
                and all(rasters[name].shape[0] == 1 and rasters[name].device.type == "cpu"
                        for name in running))

    def fuse_streams(
        self,
        streams: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        rasters: Mapping[str, torch.Tensor],
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The second half of `forward`: run_streams' outputs, each modality's presence applied
        (see forward), fused, and the head."""
        config = self.config
        batch = self._batch_size(rasters)
        tokens, features, live = [], [], {}
        for name, stream in self.streams.items():
            absent = stream.absent.expand(batch, config.tokens, config.dim)
            if name not in streams:
                tokens.append(absent)
                features.append(None)
                continue
            feature, x = streams[name]
            keep = None if present is None else present.get(name)
            if keep is not None:
                x, feature = apply_presence(keep, x, feature, absent, name)
            tokens.append(x)
            features.append(feature)
            live[name] = keep
        if self.architecture.fusion == "cross_attention":
            cells = self.cell_attention(tokens)
        else:
            cells = torch.cat(tokens, dim=-1)
        return self.head_from_fused(self.fuse(cells), features, rasters, live)

    def head_from_fused(
        self, x: torch.Tensor, features: Sequence[torch.Tensor | None],
        rasters: Mapping[str, torch.Tensor], live: Mapping[str, torch.Tensor | None],
    ) -> dict[str, torch.Tensor]:
        """The tail of `forward` from the fused tokens (B, cells, dim) on: fusion blocks and the
        head. features: each modality's stem features in model order, None when absent; live:
        the modalities whose rasters count, each with its per-sample presence mask or None.
        Public so that a search over allocations can fuse precomputed stream outputs."""
        config = self.config
        batch = x.shape[0]
        x = self.norm(x)
        measured, has_measured, references, has_reference = self._measured_depth(
            rasters, live, batch)
        if any(feature is None for feature in features):  # only then: this is the hot path
            zeros = torch.zeros(batch, config.stem_channels, *config.head_grid, device=x.device,
                                dtype=x.dtype)
            features = [zeros if feature is None else feature for feature in features]
        return self.head(x, features, measured, has_measured, references, has_reference)

    def _measured_depth(
        self, rasters: Mapping[str, torch.Tensor], live: Mapping[str, torch.Tensor | None],
        batch: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per head cell, of the modalities that are live for each sample: the nearest lidar
        depth, else the nearest depth-camera depth, and whether there is one (B, 1, rows, cols);
        then each cell's nearest and farthest measurement and their availability
        (B, REFERENCE_MAPS, rows, cols)."""
        config = self.config
        rows, cols = config.head_grid
        device = next(self.parameters()).device
        measured = torch.zeros(batch, 1, rows, cols, device=device)
        has = torch.zeros_like(measured)
        farthest = has_far = measured  # all zeros; replaced below, never written in place
        # (raster channel of the normalised log depth, of its validity); lidar last so it wins
        channels = {"depth": (0, 1), "lidar": (0, 3)}
        for name, (value, valid) in channels.items():
            if name not in live:
                continue
            raster = rasters[name].float()
            nearest, found, far = cell_depths(raster, value, valid, raster_stride(name, config),
                                              config)
            if live[name] is not None:
                found = found * live[name].view(-1, 1, 1, 1).to(found.dtype)
            measured = torch.where(found > 0, nearest, measured)
            has = torch.maximum(has, found)
            farthest = torch.where(found > 0, far, farthest)
            has_far = torch.maximum(has_far, found)
        return measured, has, torch.cat([measured, farthest], 1), torch.cat([has, has_far], 1)

    @staticmethod
    def _batch_size(rasters: Mapping[str, torch.Tensor]) -> int:
        if not rasters:
            raise ValueError("no modality given: at least one raster is needed for the batch size")
        sizes = {raster.shape[0] for raster in rasters.values()}
        if len(sizes) != 1:
            raise ValueError(f"rasters disagree on the batch size: {sorted(sizes)}")
        return sizes.pop()
