"""What each block of each modality costs, in GFLOPs (counted) or milliseconds (measured on this
machine), and what is left of a budget for the blocks once the fixed part of a frame is paid.

A cost table splits a frame into the blocks an allocation can skip and the fixed rest (stems,
fusion, head, decode) that runs at every budget. Compute budgets are fractions of the blocks'
compute, as runtime/budget.py defines them; a latency budget in milliseconds pays the fixed part
first and leaves the remainder to the blocks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adaptive_fusion.core.errors import check_fraction
from adaptive_fusion.model.checkpoint import read_json, write_json
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.flops import count_flops
from adaptive_fusion.model.inputs import ModelInputs
from adaptive_fusion.model.tokenizers import RASTER_CHANNELS, raster_stride

UNITS = ("gflops", "ms")
FORMAT = "adaptive_fusion.cost_table"
FORMAT_VERSION = 1


class CostTableError(ValueError):
    """A cost table (or its file) that is malformed, or an allocation it cannot price."""



@dataclass(frozen=True)
class CostTable:
    unit: str  # "gflops" or "ms"
    block: dict[str, tuple[float, ...]]  # modality -> cost of each of its blocks
    fixed: float  # per-frame cost outside the blocks (stems, fuse, head, decode)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise CostTableError(f"cost unit must be one of {UNITS}, got {self.unit!r}")
        if not isinstance(self.block, Mapping) or not self.block:
            raise CostTableError("a cost table needs the block costs of at least one modality")
        for name, costs in self.block.items():
            if not isinstance(name, str) or isinstance(costs, str | bytes):
                raise CostTableError(f"block costs of {name!r} must be a list of numbers")
            if not costs or not all(_non_negative(c) for c in costs):
                raise CostTableError(
                    f"block costs of {name!r} must be finite non-negative numbers, got {costs!r}"
                )
        if not _non_negative(self.fixed):
            raise CostTableError(f"fixed cost must be a finite non-negative number, "
                                 f"got {self.fixed!r}")
        # Canonical types (frozen: set through object.__setattr__), so equality is by value.
        block = {name: tuple(float(c) for c in costs) for name, costs in self.block.items()}
        object.__setattr__(self, "block", block)
        object.__setattr__(self, "fixed", float(self.fixed))

    def block_total(self) -> float:
        """Cost of all blocks of all modalities."""
        return float(sum(sum(costs) for costs in self.block.values()))

    def allocation_cost(self, allocation: Mapping[str, Sequence[int]]) -> float:
        """Cost of the blocks an allocation runs (the fixed part not included)."""
        total = 0.0
        for name, blocks in allocation.items():
            if name not in self.block:
                raise CostTableError(f"no block costs for modality {name!r}; "
                                     f"the table has {sorted(self.block)}")
            costs = self.block[name]
            for index in blocks:
                if not 0 <= index < len(costs):
                    raise CostTableError(f"{name}: block {index} outside 0..{len(costs) - 1}")
                total += costs[index]
        return total

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "unit": self.unit,
                "block": {name: list(costs) for name, costs in self.block.items()},
                "fixed": self.fixed}

    @classmethod
    def from_dict(cls, d: Mapping) -> CostTable:
        if not isinstance(d, Mapping):
            raise CostTableError(f"a cost table must be a mapping, got {type(d).__name__}")
        if d.get("format", FORMAT) != FORMAT or d.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise CostTableError(f"not an {FORMAT} v{FORMAT_VERSION} document "
                                 f"(format={d.get('format')!r}, version={d.get('version')!r})")
        missing = {"unit", "block", "fixed"} - set(d)
        if missing:
            raise CostTableError(f"cost table lacks {sorted(missing)}")
        unknown = set(d) - {"format", "version", "unit", "block", "fixed"}
        if unknown:
            raise CostTableError(f"cost table has unknown keys {sorted(unknown)}")
        return cls(unit=d["unit"], block=d["block"], fixed=d["fixed"])

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CostTable:
        path = Path(path)
        document = read_json(path, CostTableError, "cost table")
        try:
            return cls.from_dict(document)
        except CostTableError as error:
            raise CostTableError(f"{path}: {error}") from error


def _non_negative(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def blank_inputs(config) -> ModelInputs:
    """Zero rasters of every modality at the model's size and a plausible pinhole geometry: what
    costs are counted and timed on (the arithmetic of the network does not depend on values)."""
    rasters = {
        name: np.zeros((RASTER_CHANNELS[name], config.image_height // raster_stride(name, config),
                        config.image_width // raster_stride(name, config)), np.float32)
        for name in config.modalities
    }
    f = float(config.image_width)
    K = np.array([[f, 0, config.image_width / 2], [0, f, config.image_height / 2], [0, 0, 1]])
    return ModelInputs(rasters=rasters, K=K, T_cam_lidar=np.eye(4))


def _batch(inputs: ModelInputs, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    return {name: torch.from_numpy(r).unsqueeze(0).to(device) for name, r in inputs.rasters.items()}


def _block_input(model: AdaptiveFusionDetector) -> torch.Tensor:
    """Tokens of the shape a block sees at batch 1 (seeded, so counts and timings repeat)."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    return torch.randn(1, config.tokens, config.dim, generator=generator).to(device)


@torch.inference_mode()
def flop_cost_table(model: AdaptiveFusionDetector) -> CostTable:
    """FLOPs of every block and of the rest of a full forward pass at batch 1, attention
    included (model/flops.py), in GFLOPs. Deterministic: a count, not a measurement."""
    config = model.config
    x = _block_input(model)
    block = {name: tuple(count_flops(lambda b=b: b(x)) / 1e9 for b in stream.blocks)
             for name, stream in model.streams.items()}
    batch = _batch(blank_inputs(config), model)
    total = count_flops(lambda: model(batch)) / 1e9
    return CostTable("gflops", block, max(0.0, total - sum(sum(c) for c in block.values())))


def _elapsed_ms(function) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1e3


@torch.inference_mode()
def measure_cost_table(
    model: AdaptiveFusionDetector, runs: int = 50, threads: int = 2, progress: bool = False,
    warmup: int = 3,
) -> CostTable:
    """Median wall time (ms) of every block of every modality at batch 1 on this machine, and
    of the fixed part: a full forward pass + decode minus the sum of its blocks' medians.

    Each round times every block once and the full frame once, so a load that comes and goes
    during the measurement hits all of them alike instead of the ones measured at that moment.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    config = model.config
    inputs = blank_inputs(config)
    batch = _batch(inputs, model)
    x = _block_input(model)
    blocks = [(name, index, block) for name, stream in model.streams.items()
              for index, block in enumerate(stream.blocks)]

    def frame() -> None:
        decode(model(batch), inputs.K, inputs.T_cam_lidar, config)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            frame()
        times = {key: [] for key in [*((n, i) for n, i, _ in blocks), "frame"]}
        for _ in tqdm(range(runs), desc="profile", disable=not progress):
            for name, index, block in blocks:
                times[name, index].append(_elapsed_ms(lambda b=block: b(x)))
            times["frame"].append(_elapsed_ms(frame))
    finally:
        torch.set_num_threads(previous_threads)
    median = {key: float(np.median(values)) for key, values in times.items()}
    block = {name: tuple(median[name, i] for i in range(len(stream.blocks)))
             for name, stream in model.streams.items()}
    fixed = median["frame"] - sum(sum(c) for c in block.values())
    return CostTable("ms", block, max(0.0, fixed))


def uniform_blocks(table: CostTable) -> CostTable:
    """The table with every block of a modality at the median of that modality's block costs.
    A modality's blocks have one shape, so their measured medians differ by noise only; left
    as measured, a budget of whole blocks (a quarter of 24 is 6) can miss fitting 6 of them by
    a hundredth of a millisecond, and a rule or a gate loses a block to the noise."""
    return CostTable(table.unit, {name: (float(np.median(costs)),) * len(costs)
                                  for name, costs in table.block.items()}, table.fixed)


def block_budget(
    table: CostTable, fraction: float | None = None, latency_ms: float | None = None
) -> float:
    """Block cost available in the table's unit: `fraction` of all blocks' cost, and/or what a
    frame deadline of `latency_ms` leaves after the fixed part (an "ms" table only, never
    below 0); the stricter wins."""
    if fraction is None and latency_ms is None:
        raise ValueError("give a compute fraction, a latency budget, or both")
    candidates = []
    if fraction is not None:
        candidates.append(check_fraction(fraction) * table.block_total())
    if latency_ms is not None:
        latency_ms = float(latency_ms)
        if not math.isfinite(latency_ms) or latency_ms <= 0:
            raise ValueError(f"latency budget must be a positive number of ms, got {latency_ms}")
        if table.unit != "ms":
            raise ValueError(f"a latency budget needs a cost table in ms, not {table.unit}")
        candidates.append(max(0.0, latency_ms - table.fixed))
    return min(candidates)
