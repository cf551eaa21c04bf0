"""What every elastic unit of the supernet costs on this machine, and a subnet's cost as the sum
of its units (Harmonic-NAS's lookup tables), checked against the pipeline it predicts.

A unit is a piece of a frame that runs as a whole: the input preparation and the quality
measures of a frame, each modality's stem, one block at each (MLP width, heads, token grid),
the pooling around a stream's blocks at each token grid, each fusion operator, the head and
decoding.

Units are timed inside whole frames of FusionPipeline, at batch 1 with the node's thread count,
not called alone in a loop: at 2 threads a table of units timed alone over-predicted 20 random
subnets by 12-37% (median 30%), one timed inside frames by 0.8% (docs/model.md). A set of
profiling subnets that together run every unit takes turns frame by frame; forward hooks time
each stream, its stem and blocks and the fusion operators, and the frame's own timings give the
rest, so a frame's units add up to its measured total. The table keeps each unit's median and
p90 over its calls.

Energy comes from RAPL powercap (/sys/class/powercap/intel-rapl:N/energy_uj, the whole
package: it includes what else runs) where the host exposes it and lets it be read; otherwise
the table records it as absent, with the reason. The counter moves in steps too coarse for one
unit's call, so each unit's energy is read over many calls of it in a row.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adaptive_fusion.model.architecture import Architecture, SearchSpace, StreamArchitecture
from adaptive_fusion.model.checkpoint import read_json, write_json
from adaptive_fusion.model.coding import decode
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector, pool_tokens, unpool_tokens
from adaptive_fusion.model.inputs import at_model_size, prepare_inputs
from adaptive_fusion.policies.registry import make_policy
from adaptive_fusion.runtime.frame import SensorFrame, check_frame
from adaptive_fusion.runtime.pipeline import FusionPipeline, FusionResult, measure_quality

FORMAT = "adaptive_fusion.unit_costs"
FORMAT_VERSION = 1
POWERCAP = Path("/sys/class/powercap")
SCORE_THRESHOLD = 0.3  # fusion_node's default: decoding's time depends on the boxes kept


class UnitCostsError(ValueError):
    """A unit cost table that is malformed, or lacks a unit a subnet runs."""


def block_unit(mlp_hidden: int, heads: int, token_pool: int) -> str:
    return f"block/mlp{mlp_hidden}/heads{heads}/pool{token_pool}"


def units_of(architecture: Architecture) -> Counter:
    """The units one frame of the pipeline runs at full allocation of this subnet, with how
    often."""
    units = Counter(["prepare", "quality", f"fusion/{architecture.fusion}", "head", "decode"])
    for name, stream in architecture.streams.items():
        units[f"stem/{name}"] += 1
        units[f"tokens/pool{stream.token_pool}"] += 1
        units[block_unit(stream.mlp_hidden, stream.heads, stream.token_pool)] += stream.depth
    return units


def all_units(space: SearchSpace) -> list[str]:
    """Every unit of every subnet of the space."""
    return ["prepare", "quality", *(f"stem/{name}" for name in space.modalities),
            *(block_unit(m, h, p) for m in space.mlp_hidden for h in space.heads
              for p in space.token_pools),
            *(f"tokens/pool{p}" for p in space.token_pools),
            *(f"fusion/{op}" for op in space.fusions), "head", "decode"]


@dataclass(frozen=True)
class UnitCosts:
    """Per unit: milliseconds ({"median": , "p90": }) and, where measured, millijoules."""

    model: dict  # the ModelConfig it was measured on, as a dict
    threads: int
    runs: int
    latency_ms: dict[str, dict[str, float]]
    energy_mj: dict[str, float] | None
    energy_note: str  # where the energy came from, or why it is absent

    def predict_ms(self, architecture: Architecture) -> float:
        """The subnet's end-to-end pipeline latency: the sum of its units' medians."""
        return self._sum({unit: cost["median"] for unit, cost in self.latency_ms.items()},
                         architecture)

    def predict_mj(self, architecture: Architecture) -> float | None:
        return None if self.energy_mj is None else self._sum(self.energy_mj, architecture)

    @staticmethod
    def _sum(costs: dict[str, float], architecture: Architecture) -> float:
        missing = sorted(set(units_of(architecture)) - set(costs))
        if missing:
            raise UnitCostsError(f"the unit cost table lacks {missing}: measured on another "
                                 "model? Run `adaptive-fusion profile --units` on this one")
        return float(sum(costs[unit] * count for unit, count in units_of(architecture).items()))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "model": self.model,
                "threads": self.threads, "runs": self.runs, "latency_ms": self.latency_ms,
                "energy_mj": self.energy_mj, "energy_note": self.energy_note}

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, config: ModelConfig) -> UnitCosts:
        """The table at `path`, checked to be measured on a model of `config`."""
        data = read_json(path, UnitCostsError, "unit cost table")
        if (data.get("format"), data.get("version")) != (FORMAT, FORMAT_VERSION):
            raise UnitCostsError(f"{path} is not an {FORMAT} v{FORMAT_VERSION} document")
        try:
            costs = cls(**{key: value for key, value in data.items()
                           if key not in ("format", "version")})
        except TypeError as error:
            raise UnitCostsError(f"{path}: {error}") from error
        if costs.model != config.to_dict():
            raise UnitCostsError(f"{path} was measured on another model ({costs.model})")
        return costs


class RaplMeter:
    """The package energy counters of RAPL powercap, where they exist and can be read
    (since Linux 5.10 energy_uj is readable by root only, against a side channel)."""

    def __init__(self, root: Path = POWERCAP):
        self.zones = sorted(path for path in root.glob("intel-rapl:*")
                            if path.name.count(":") == 1)  # packages, not their subzones
        if not self.zones:
            self.absent = f"no RAPL powercap on this host ({root}/intel-rapl:* does not exist)"
            return
        try:
            self.ranges = [int((zone / "max_energy_range_uj").read_text()) for zone in self.zones]
            self.read()
            self.absent = None
        except (OSError, ValueError) as error:
            self.absent = f"RAPL powercap exists but cannot be read: {error}"

    def read(self) -> list[int]:
        return [int((zone / "energy_uj").read_text()) for zone in self.zones]

    def millijoules(self, function: Callable[[], object], runs: int) -> float:
        """Mean package energy of one call, over `runs` calls in a row (a counter wraps at its
        max_energy_range_uj)."""
        before = self.read()
        for _ in range(runs):
            function()
        after = self.read()
        return sum((b - a) % r for a, b, r in zip(before, after, self.ranges, strict=True)
                   ) / runs / 1e3


def _elapsed_ms(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1e3


def unit_calls(model: AdaptiveFusionDetector, frame: SensorFrame) -> dict[str, Callable]:
    """Every unit of the model's search space as a call on this frame's data."""
    config, space = model.config, SearchSpace.of(model.config)
    view = at_model_size(frame, config)
    inputs = prepare_inputs(view, config)
    rasters = {name: torch.from_numpy(r)[None] for name, r in inputs.rasters.items()}

    def prepare():
        check_frame(frame)
        prepared = prepare_inputs(at_model_size(frame, config), config)
        return {name: torch.from_numpy(r)[None] for name, r in prepared.rasters.items()}

    streams = model.streams
    stems = {name: streams[name].stem(rasters[name]) for name in config.modalities}
    grid_tokens = stems[config.modalities[0]][1] + streams[config.modalities[0]].embed
    pooled = {p: pool_tokens(grid_tokens, config.grid, p) for p in space.token_pools}
    # A frame's blocks each bring their own weights into the cache; one block timed again and
    # again would keep its weights there and be timed about a tenth faster (measured on the
    # shipped model). So each call takes the next block of the model's.
    blocks = itertools.cycle([block for stream in streams.values() for block in stream.blocks])
    tokens = [stems[name][1] for name in config.modalities]
    features = [stems[name][0] for name in config.modalities]
    live = dict.fromkeys(config.modalities)
    fused = model.fuse(torch.cat(tokens, -1))
    outputs = model.head_from_fused(fused, features, rasters, live)

    def stem(name):
        return lambda: streams[name].stem(rasters[name])[1] + streams[name].embed

    def around_blocks(p):
        norm = streams[config.modalities[0]].norm
        return lambda: norm(unpool_tokens(grid_tokens, pool_tokens(grid_tokens, config.grid, p),
                                          pooled[p], config.grid, p))

    def fusion(op):
        if op == "cross_attention":
            return lambda: model.fuse(model.cell_attention(tokens))
        return lambda: model.fuse(torch.cat(tokens, -1))

    return {
        "prepare": prepare,
        "quality": lambda: measure_quality(view),
        **{f"stem/{name}": stem(name) for name in config.modalities},
        **{block_unit(m, h, p): (lambda m=m, h=h, p=p: next(blocks)(pooled[p], h, m))
           for m in space.mlp_hidden for h in space.heads for p in space.token_pools},
        **{f"tokens/pool{p}": around_blocks(p) for p in space.token_pools},
        **{f"fusion/{op}": fusion(op) for op in space.fusions},
        "head": lambda: model.head_from_fused(fused, features, rasters, live),
        "decode": lambda: decode(outputs, inputs.K, inputs.T_cam_lidar, config,
                                 score_threshold=SCORE_THRESHOLD),
    }


def profiling_subnets(space: SearchSpace) -> list[Architecture]:
    """Subnets that together run every unit of the space: the full and the smallest, and for
    each block shape (MLP width, heads, token grid) one whose streams all have that shape, its
    depth and fusion operator taken in turn from the space's choices."""
    shapes = itertools.product(space.mlp_hidden, space.heads, space.token_pools)
    return [space.full(), space.smallest(), *(
        Architecture(dict.fromkeys(space.modalities, StreamArchitecture(
            space.depths[index % len(space.depths)], mlp_hidden, heads, token_pool)),
            space.fusions[index % len(space.fusions)])
        for index, (mlp_hidden, heads, token_pool) in enumerate(shapes))]


class UnitTimer:
    """The units of each frame the pipeline runs, timed through forward hooks on each stream,
    its stem and blocks, and the fusion operators (on a CPU every op is synchronous, so the wall
    time between a module's hooks is its time). The streams must run one after another: side
    by side they do not go through their modules' forward."""

    def __init__(self, model: AdaptiveFusionDetector):
        self.model = model
        self.calls: list[tuple[str, str, float]] = []  # (kind, modality, ms) of this frame
        self._handles = []
        for name, stream in model.streams.items():
            self._hook(stream, "stream", name)
            self._hook(stream.stem, "stem", name)
            for block in stream.blocks:
                self._hook(block, "block", name)
        for module in (model.cell_attention, model.fuse):
            if module is not None:
                self._hook(module, "fusion", "")

    def _hook(self, module: torch.nn.Module, kind: str, name: str) -> None:
        started = []

        def enter(*_):
            started.append(time.perf_counter())

        def leave(*_):
            self.calls.append((kind, name, (time.perf_counter() - started.pop()) * 1e3))

        self._handles += [module.register_forward_pre_hook(enter),
                          module.register_forward_hook(leave)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def frame_units(self, result: FusionResult) -> list[tuple[str, float]]:
        """(unit, ms) of every unit of the frame `result` came from, adding up to its total
        time; what no hook sees is the pooling around a stream's blocks (a stream's time less
        its stem and blocks), the head (the model's time less its streams and fusion) and the
        pipeline's own steps. Clear `calls` before the frame."""
        streams = self.model.architecture.streams
        timings = result.timings_ms
        units = [("prepare", timings["prepare"] + timings["allocate"]),
                 ("quality", timings["quality"]), ("decode", timings["decode"])]
        stream_ms, inside_ms = Counter(), Counter()
        fusion_ms = 0.0
        for kind, name, ms in self.calls:
            if kind == "stream":
                stream_ms[name] += ms
            elif kind == "fusion":
                fusion_ms += ms
            else:
                inside_ms[name] += ms
                shape = streams[name]
                units.append((f"stem/{name}" if kind == "stem" else
                              block_unit(shape.mlp_hidden, shape.heads, shape.token_pool), ms))
        units += [(f"tokens/pool{streams[name].token_pool}", ms - inside_ms[name])
                  for name, ms in stream_ms.items()]
        units += [(f"fusion/{self.model.architecture.fusion}", fusion_ms),
                  ("head", timings["model"] - sum(stream_ms.values()) - fusion_ms)]
        return units


@dataclass(frozen=True)
class PipelineSetting:
    """What FusionPipeline runs for a measurement: a subnet, the policy that allocates within
    it and the compute budget (a fraction of the subnet's blocks)."""

    architecture: Architecture
    policy: str = "equal_split"
    fraction: float = 1.0


def frames_in_turn(
    model: AdaptiveFusionDetector, settings: Sequence[PipelineSetting],
    frames: Sequence[SensorFrame], rounds: int, threads: int, progress: str | None = None,
    before_frame: Callable[[], object] = lambda: None, score_threshold: float = SCORE_THRESHOLD,
) -> Iterator[tuple[int, FusionResult]]:
    """(setting index, result) of FusionPipeline's frames in each setting, the streams one after
    another (what a sum of units describes), on `frames` in turn; the settings take turns frame
    by frame, so a load that comes and goes hits all of them alike. After a warm-up of each, not
    yielded; `before_frame` is called before each frame that is. Detections are kept from
    `score_threshold` (the node's default; decoding's time depends on it). Leaves the model on
    the first setting's architecture."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        pipeline = FusionPipeline(model, make_policy("equal_split", model),
                                  streams="one_after_another")
        policies = []
        for setting in settings:
            model.use_architecture(setting.architecture)
            policies.append(make_policy(setting.policy, model))  # within the subnet's depths
            pipeline.policy = policies[-1]
            pipeline.warm_up(frames[0], 2)
        for _ in tqdm(range(rounds), desc=progress, disable=progress is None):
            for frame in frames:
                for index, setting in enumerate(settings):
                    model.use_architecture(setting.architecture)
                    pipeline.policy = policies[index]
                    before_frame()
                    yield index, pipeline.run(frame, setting.fraction,
                                              score_threshold=score_threshold)
    finally:
        model.use_architecture(settings[0].architecture)
        torch.set_num_threads(previous_threads)


@torch.inference_mode()
def measure_unit_costs(
    model: AdaptiveFusionDetector, frames: Sequence[SensorFrame], runs: int = 20,
    threads: int = 2, progress: bool = False, rapl: RaplMeter | None = None,
) -> UnitCosts:
    """Every unit of the model's search space timed inside the frames of its profiling subnets,
    `runs` rounds over `frames` (scenes as the sensors give them) at `threads` torch threads;
    the energy with RAPL where it can be read."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    model.eval()
    rapl = rapl or RaplMeter()
    timer = UnitTimer(model)
    samples = {unit: [] for unit in all_units(SearchSpace.of(model.config))}
    try:
        subnets = profiling_subnets(SearchSpace.of(model.config))
        for _, result in frames_in_turn(model, [PipelineSetting(a) for a in subnets],
                                        frames, runs, threads,
                                        "profile units" if progress else None,
                                        before_frame=timer.calls.clear):
            for unit, ms in timer.frame_units(result):
                samples[unit].append(ms)
    finally:
        timer.remove()
    latency = {unit: {"median": float(np.median(values)),
                      "p90": float(np.percentile(values, 90))} for unit, values in samples.items()}
    energy = None if rapl.absent else measure_unit_energy(model, frames[0], runs, threads, rapl)
    note = rapl.absent or f"RAPL package energy, {len(rapl.zones)} package(s), whole host"
    return UnitCosts(model.config.to_dict(), threads, runs, latency, energy, note)


def measure_unit_energy(model: AdaptiveFusionDetector, frame: SensorFrame, runs: int,
                        threads: int, rapl: RaplMeter) -> dict[str, float]:
    """mJ of each unit, read over `runs` calls of it in a row (unit_calls)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {unit: rapl.millijoules(call, runs)
                for unit, call in unit_calls(model, frame).items()}
    finally:
        torch.set_num_threads(previous_threads)


@torch.inference_mode()
def measure_pipeline_ms(
    model: AdaptiveFusionDetector, settings: Sequence[PipelineSetting],
    frames: Sequence[SensorFrame], rounds: int = 10, threads: int = 2,
) -> list[dict[str, float]]:
    """End-to-end FusionPipeline latency (ms, median and p90 of its "total") in each setting
    (frames_in_turn)."""
    times = [[] for _ in settings]
    for index, result in frames_in_turn(model, settings, frames, rounds, threads):
        times[index].append(result.timings_ms["total"])
    return [{"median": float(np.median(t)), "p90": float(np.percentile(t, 90))} for t in times]


def check_additive(
    model: AdaptiveFusionDetector, costs: UnitCosts, frames: Sequence[SensorFrame],
    subnets: int = 20, rounds: int = 10, seed: int = 0,
) -> dict:
    """Predicted against measured end-to-end latency of `subnets` random subnets (the full and
    the smallest among them): each one's relative error, and their median absolute."""
    space = SearchSpace.of(model.config)
    rng = np.random.default_rng(seed)
    architectures = [space.full(), space.smallest(),
                     *(space.sample(rng) for _ in range(max(0, subnets - 2)))][:subnets]
    measured = measure_pipeline_ms(model, [PipelineSetting(a) for a in architectures], frames,
                                   rounds, costs.threads)
    rows = []
    for architecture, measurement in zip(architectures, measured, strict=True):
        predicted = costs.predict_ms(architecture)
        rows.append({"architecture": architecture.to_dict(), "predicted_ms": predicted,
                     "measured_ms": measurement["median"],
                     "relative_error": predicted / measurement["median"] - 1})
    return {"subnets": rows,
            "median_absolute_relative_error": float(np.median(
                [abs(row["relative_error"]) for row in rows]))}
