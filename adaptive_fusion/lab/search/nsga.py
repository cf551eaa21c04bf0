"""The hardware-aware architecture search (Harmonic-NAS, issue 35): NSGA-II (pymoo) over the
supernet's subnets, minimising the validation error (1 - mAP with the supernet's shared weights
on fixed validation scenes) and the latency the unit cost table predicts (costs.py), plus the
energy where the table has it; optionally under a latency limit.

What is costly is kept: the validation scenes are rendered once into a cache, and every
evaluated genome's mAP goes into `archive.json`, written after each generation. The front's
latency is measured again at the end of every run, beside the references, so that all the
points of a plot share the host's load of one moment. A resumed search replays the seeded
NSGA-II from the start: the genomes it meets again are read from the archive, so it reaches the
same state for free and goes on from there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adaptive_fusion.core.frames import FrameSet
from adaptive_fusion.lab.evaluation.report import TEST_FIRST_SEED
from adaptive_fusion.lab.evaluation.runner import score_frames
from adaptive_fusion.lab.evaluation.sweep import live_modalities
from adaptive_fusion.lab.search.costs import PipelineSetting, UnitCosts, measure_pipeline_ms
from adaptive_fusion.lab.search.genome import GenomeCoding
from adaptive_fusion.lab.training.cache import build_cache, frame_path, load_frames
from adaptive_fusion.model.architecture import Architecture, SearchSpace
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.runtime.frame import SensorFrame
from adaptive_fusion.sim import WorldConfig

VALIDATION_FIRST_SEED = 1_000_000  # the trainers' validation scenes (lab/training/config.py)
ARCHIVE = "archive.json"
PARETO = "pareto.json"
ARCHIVE_FORMAT = "adaptive_fusion.search_archive"
PARETO_FORMAT = "adaptive_fusion.pareto"


class SearchError(ValueError):
    """A search that cannot start or resume as asked."""


def validation_scenes(count: int, cache_dir: str | Path, progress: bool = False
                      ) -> list[FrameSet]:
    """The first `count` validation scenes, rendered into `cache_dir`/val<count> the first
    time."""
    return cached_scenes(VALIDATION_FIRST_SEED, count, Path(cache_dir) / f"val{count}", progress)


def held_out_scenes(count: int, cache_dir: str | Path, progress: bool = False) -> list[FrameSet]:
    """The first `count` test scenes (evaluate's), rendered into `cache_dir`/test<count> the
    first time."""
    return cached_scenes(TEST_FIRST_SEED, count, Path(cache_dir) / f"test{count}", progress)


def cached_scenes(first_seed: int, count: int, directory: Path, progress: bool
                  ) -> list[FrameSet]:
    seeds = list(range(first_seed, first_seed + count))
    build_cache(directory, WorldConfig(), seeds, show_progress=progress)
    return [load_frames(frame_path(directory, seed)) for seed in seeds]


def as_sensor_frame(frames: FrameSet) -> SensorFrame:
    """The frame set as the node gets it: a sensor that delivered nothing (a dead one,
    sweep.live_modalities) is missing, as a message that never came."""
    live = live_modalities(frames)
    return SensorFrame(frames.image if "camera" in live else None,
                       frames.depth if "depth" in live else None,
                       frames.points if "lidar" in live else None, frames.calib, frames.lidar)


def genome_key(vector) -> str:
    return ",".join(str(int(value)) for value in vector)


@dataclass
class SearchArchive:
    """What a search has paid for, by genome key: the validation mAP of every evaluated
    genome; and each generation's population, as keys."""

    settings: dict
    validation_map: dict[str, float] = field(default_factory=dict)
    generations: list[list[str]] = field(default_factory=list)

    def save(self, path: Path) -> None:
        document = {"format": ARCHIVE_FORMAT, "version": 1, "settings": self.settings,
                    "validation_map": self.validation_map,
                    "generations": self.generations}
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(document, indent=1) + "\n")
        partial.replace(path)  # a stop mid-write leaves the previous archive whole

    @classmethod
    def resume(cls, path: Path, settings: dict) -> SearchArchive:
        """The archive at `path` if it exists (it must come from the same settings), else a
        new one."""
        if not path.is_file():
            return cls(settings)
        document = json.loads(path.read_text())
        if document.get("format") != ARCHIVE_FORMAT:
            raise SearchError(f"{path} is not a search archive")
        if document["settings"] != settings:
            raise SearchError(f"{path} holds a search with other settings "
                              f"({document['settings']} vs {settings}): choose another --out")
        return cls(settings, document["validation_map"],
                   document["generations"])


@dataclass
class SearchSetup:
    model: AdaptiveFusionDetector
    costs: UnitCosts
    scenes: list[FrameSet]
    latency_max_ms: float | None = None
    threads: int = 2


class Evaluator:
    """A genome's objectives, its mAP from the archive when it has been evaluated before."""

    def __init__(self, setup: SearchSetup, archive: SearchArchive, progress: tqdm | None = None):
        self.setup = setup
        self.archive = archive
        self.coding = GenomeCoding(SearchSpace.of(setup.model.config))
        self.progress = progress
        self.uses_energy = setup.costs.energy_mj is not None

    def validation_map(self, architecture: Architecture) -> float:
        key = genome_key(self.coding.encode(architecture))
        if key not in self.archive.validation_map:
            self.setup.model.use_architecture(architecture)
            with torch.inference_mode():
                score = score_frames(self.setup.model, self.setup.scenes).mean_ap
            # NaN only without any ground truth: nothing to tell genomes apart by
            self.archive.validation_map[key] = 0.0 if np.isnan(score) else float(score)
        return self.archive.validation_map[key]

    def objectives(self, vector) -> tuple[list[float], float | None]:
        """([error, predicted ms(, predicted mJ)], latency constraint value or None)."""
        architecture = self.coding.decode(vector)
        predicted = self.setup.costs.predict_ms(architecture)
        values = [1.0 - self.validation_map(architecture), predicted]
        if self.uses_energy:
            values.append(self.setup.costs.predict_mj(architecture))
        if self.progress is not None:
            self.progress.update()
        limit = self.setup.latency_max_ms
        return values, None if limit is None else predicted - limit


def run_nsga2(evaluator: Evaluator, evaluations: int, population: int, seed: int,
              save) -> None:
    """NSGA-II over integer genomes until `evaluations` genomes were evaluated; `save()`
    after each generation."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.config import Config
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.termination import get_termination

    Config.warnings["not_compiled"] = False  # pure Python is fast enough beside the mAP

    class ArchitectureProblem(Problem):
        def __init__(self):
            coding = evaluator.coding
            super().__init__(n_var=coding.length, n_obj=2 + evaluator.uses_energy,
                             n_ieq_constr=int(evaluator.setup.latency_max_ms is not None),
                             xl=0, xu=coding.upper_bounds(), vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            results = [evaluator.objectives(row) for row in x]
            out["F"] = np.array([values for values, _ in results])
            if self.n_ieq_constr:
                out["G"] = np.array([[constraint] for _, constraint in results])

    # SBX and polynomial mutation on the indices, rounded: pymoo's recipe for integer genes.
    algorithm = NSGA2(pop_size=population, sampling=IntegerRandomSampling(),
                      crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                      mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                      eliminate_duplicates=True)
    algorithm.setup(ArchitectureProblem(), termination=get_termination("n_eval", evaluations),
                    seed=seed, verbose=False)
    evaluator.archive.generations = []
    while algorithm.has_next():
        algorithm.next()
        evaluator.archive.generations.append(
            [genome_key(x) for x in algorithm.pop.get("X").astype(int)])
        save()


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Indices of the rows no other row dominates (all objectives minimised)."""
    keep = [i for i, p in enumerate(points)
            if not any(np.all(q <= p) and np.any(q < p) for q in points)]
    return np.array(keep, int)


def pareto_members(evaluator: Evaluator) -> list[dict]:
    """The non-dominated genomes of everything evaluated (within the latency limit), by
    predicted latency."""
    coding, costs, limit = evaluator.coding, evaluator.setup.costs, evaluator.setup.latency_max_ms
    members = []
    for key, map_ in evaluator.archive.validation_map.items():
        architecture = coding.decode(key.split(","))
        member = {"genome": key, "architecture": architecture.to_dict(), "validation_map": map_,
                  "predicted_ms": costs.predict_ms(architecture)}
        if evaluator.uses_energy:
            member["predicted_mj"] = costs.predict_mj(architecture)
        if limit is None or member["predicted_ms"] <= limit:
            members.append(member)
    objectives = ["predicted_ms", *(["predicted_mj"] if evaluator.uses_energy else [])]
    points = np.array([[-m["validation_map"], *(m[k] for k in objectives)] for m in members])
    front = [members[i] for i in non_dominated(points)] if members else []
    return sorted(front, key=lambda m: m["predicted_ms"])


def measure_members(evaluator: Evaluator, members: list[dict], frames: list[SensorFrame],
                    rounds: int) -> None:
    """Sets each member's measured_ms, all of them measured side by side now: a latency kept
    from an earlier run would be compared with references measured under another load."""
    coding = evaluator.coding
    architectures = [coding.decode(m["genome"].split(",")) for m in members]
    measured = measure_pipeline_ms(evaluator.setup.model,
                                   [PipelineSetting(a) for a in architectures], frames,
                                   rounds, evaluator.setup.threads)
    for member, measurement in zip(members, measured, strict=True):
        member["measured_ms"] = measurement["median"]


def pick_member(members: list[dict], latency_ms: float) -> dict | None:
    """The most accurate member whose measured latency is at most `latency_ms`."""
    within = [m for m in members if m["measured_ms"] <= latency_ms]
    return max(within, key=lambda m: m["validation_map"]) if within else None


def search(setup: SearchSetup, out: str | Path, settings: dict, evaluations: int = 300,
           population: int = 30, seed: int = 0, measure_frames: int = 4, measure_rounds: int = 5,
           progress: bool = False, report: Callable[[dict], object] = lambda document: None,
           ) -> dict:
    """Runs (or resumes) the search into `out`: archive.json, then pareto.json with the front
    and the full architecture, both measured end to end, and whatever `report` adds to the
    document (lab/search/report.py: references, test scores); returns the document."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    archive_path = out / ARCHIVE
    archive = SearchArchive.resume(archive_path, settings)
    bar = tqdm(total=evaluations, desc="search", disable=not progress)
    evaluator = Evaluator(setup, archive, bar)
    run_nsga2(evaluator, evaluations, population, seed, lambda: archive.save(archive_path))
    bar.close()
    space = SearchSpace.of(setup.model.config)
    full = {"genome": genome_key(evaluator.coding.encode(space.full())),
            "architecture": space.full().to_dict(),
            "validation_map": evaluator.validation_map(space.full()),
            "predicted_ms": setup.costs.predict_ms(space.full())}
    members = pareto_members(evaluator)
    frames = [as_sensor_frame(scene) for scene in setup.scenes[:measure_frames]]
    measure_members(evaluator, [*members, full], frames, measure_rounds)
    archive.save(archive_path)
    document = {"format": PARETO_FORMAT, "version": 1, "settings": settings,
                "evaluated": len(archive.validation_map),
                "objectives": ["validation error (1 - mAP)", "predicted latency (ms)",
                               *(["predicted energy (mJ)"] if evaluator.uses_energy else [])],
                "latency_max_ms": setup.latency_max_ms, "energy": setup.costs.energy_note,
                "members": members, "references": {"full architecture": full}}
    report(document)
    (out / PARETO).write_text(json.dumps(document, indent=2) + "\n")
    return document
