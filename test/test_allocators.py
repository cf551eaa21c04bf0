"""Baseline allocators of the budget sweep: budgets, liveness and the layer-0 floor, ADMN's equal
split, seeded random slots, and the per-frame oracle (its
incremental prefix evaluation equals a plain forward, and it beats every prefix baseline on its
own score)."""

from itertools import combinations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from adaptive_fusion.core.boxes import Boxes3D
from adaptive_fusion.core.frames import MODALITIES
from adaptive_fusion.lab.evaluation.allocators import (
    EqualSplit,
    FullDepth,
    PrefixOracle,
    RandomSlots,
    frame_score,
    prefix_outputs,
)
from adaptive_fusion.lab.evaluation.metrics import evaluate_detections
from adaptive_fusion.lab.evaluation.runner import batch_of_one, detect, evaluation_truth
from adaptive_fusion.model.config import ModelConfig
from adaptive_fusion.model.detector import AdaptiveFusionDetector
from adaptive_fusion.model.inputs import prepare_inputs
from adaptive_fusion.policies.costs import CostTable
from adaptive_fusion.policies.gate import GateConfig, ModalityGate
from adaptive_fusion.policies.learned import GateAllocator
from adaptive_fusion.policies.registry import EqualSplitPolicy
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.corruptions import corrupt
from adaptive_fusion.sim.world import World

torch.set_num_threads(1)
LAYERS = 8
UNIFORM = CostTable("gflops", {m: (1.0,) * LAYERS for m in MODALITIES}, 0.5)
# depth blocks twice as dear, lidar's last ones cheaper: costs need not be equal
UNEVEN = CostTable("ms", {"camera": (1.0,) * LAYERS, "depth": (2.0,) * LAYERS,
                          "lidar": (1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5)}, 3.0)
LIVE_SETS = [tuple(s) for r in (1, 2, 3) for s in combinations(MODALITIES, r)]
QUALITY = {"camera": 0.1, "depth": 0.9, "lidar": 0.5}


def baselines(table):
    return [FullDepth(table), EqualSplit(table), RandomSlots(table, 3)]


@pytest.mark.parametrize("table", [UNIFORM, UNEVEN], ids=["uniform", "uneven"])
def test_baselines_respect_budget_liveness_and_floor(table):
    total = table.block_total()
    for allocator in baselines(table):
        for live in LIVE_SETS:
            for fraction in (0.125, 0.25, 0.5, 0.75, 1.0):
                budget = fraction * total
                allocation = allocator.allocate(None, QUALITY, live, budget)
                assert set(allocation) <= set(live), (allocator.name, live, allocation)
                assert allocation, "some live modality always runs"
                for blocks in allocation.values():
                    assert blocks[0] == 0 and list(blocks) == sorted(set(blocks))
                assert set(allocation) == set(live)  # the layer-0 floor: all live run
                if allocator.name != "full":
                    floor = sum(table.block[m][0] for m in allocation)
                    assert table.allocation_cost(allocation) <= max(budget, floor) + 1e-9


def test_full_depth_ignores_budget():
    allocation = FullDepth(UNEVEN).allocate(None, QUALITY, ("camera", "lidar"), 0.1)
    assert allocation == {"camera": tuple(range(LAYERS)), "lidar": tuple(range(LAYERS))}


def test_equal_split_is_admns_rule():
    """With uniform costs it is the runtime's equal split: total // modalities blocks for every
    live modality, at least one, dead shares not redistributed."""
    policy = EqualSplitPolicy(MODALITIES, LAYERS)
    allocator = EqualSplit(UNIFORM)
    for live in LIVE_SETS:
        for total_blocks in range(1, 3 * LAYERS + 1):
            expected = policy.allocate(QUALITY, live, total_blocks)
            assert allocator.allocate(None, QUALITY, live, float(total_blocks)) == expected
    # uneven costs: the largest k with k blocks of every modality within budget (4 per k here)
    got = EqualSplit(UNEVEN).allocate(None, QUALITY, MODALITIES, 9.5)
    assert {m: len(b) for m, b in got.items()} == {"camera": 2, "depth": 2, "lidar": 2}


def test_random_is_seeded_and_fits():
    def run(seed):
        allocator = RandomSlots(UNEVEN, seed)
        return [allocator.allocate(None, QUALITY, MODALITIES, 9.0) for _ in range(20)]

    first, again, other = run(5), run(5), run(6)
    assert first == again and first != other
    assert len({tuple(sorted(a.items())) for a in first}) > 10  # it does vary frame to frame
    for allocation in first:
        assert UNEVEN.allocation_cost(allocation) <= 9.0
        assert UNEVEN.allocation_cost(allocation) > 9.0 - 2.0  # filled: no slot still fits
    # uniform order: all non-zero blocks of all modalities are drawn about equally often
    allocator = RandomSlots(UNIFORM, 0)
    counts = np.zeros((3, LAYERS))
    for _ in range(600):
        for m, blocks in allocator.allocate(None, QUALITY, MODALITIES, 9.0).items():
            counts[MODALITIES.index(m), list(blocks)] += 1
    assert np.all(counts[:, 0] == 600)
    assert np.abs(counts[:, 1:] / 600 - 6 / 21).max() < 0.08


# ------------------------------------------------------------------------------------ oracle


@pytest.fixture(scope="module")
def oracle_setup():
    torch.manual_seed(0)
    config = ModelConfig(dim=32, heads=2, layers=3)
    model = AdaptiveFusionDetector(config).eval()
    world = World(WorldConfig())
    frames = [world.render(2_000_000 + i) for i in range(2)]
    frames.append(corrupt(frames[0], {"lidar": ("dead", 1.0)}, seed=0))
    table = CostTable("gflops", {m: (1.0,) * 3 for m in config.modalities}, 0.0)
    samples = []
    for f in frames:
        inputs = prepare_inputs(f, config)
        samples.append((inputs, evaluation_truth(f, inputs, config)))
    return model, table, samples


def test_prefix_outputs_equal_plain_forward(oracle_setup):
    model, _, samples = oracle_setup
    inputs, _ = samples[0]
    counts = np.array([[3, 3, 3], [1, 0, 2], [0, 2, 0], [2, 1, 1], [0, 0, 3]])
    batched = prefix_outputs(model, inputs, counts)
    for row, count in enumerate(counts):
        allocation = {m: tuple(range(k)) for m, k in zip(MODALITIES, count, strict=True) if k}
        with torch.inference_mode():
            plain = model(batch_of_one(inputs, model), allocation)
        for key, value in plain.items():
            if key == "depth_own":  # a constant of the head (batch 1), not a per-sample map
                assert_close(batched[key], value)
                continue
            assert_close(batched[key][row : row + 1], value, rtol=1e-4, atol=1e-5)


def test_frame_score_is_the_frames_map(oracle_setup):
    model, _, samples = oracle_setup
    inputs, truth = samples[1]
    prediction = detect(model, inputs)
    ap, false_mass = frame_score(prediction, truth, model.config.classes)
    expected = evaluate_detections([prediction], [truth], model.config.classes).mean_ap
    assert len(truth) > 0 and ap == pytest.approx(expected) and false_mass >= 0
    assert frame_score(Boxes3D.empty(), truth, model.config.classes) == (0.0, 0.0)
    assert frame_score(truth, truth, model.config.classes) == (1.0, 0.0)


def test_oracle_bounds_the_prefix_baselines(oracle_setup):
    model, table, samples = oracle_setup
    oracle = PrefixOracle(model, table)
    torch.manual_seed(0)
    gate = ModalityGate(GateConfig(depths=(1, 2, 3), channels=(8,), hidden=16), model.config)
    others = [FullDepth(table), EqualSplit(table), GateAllocator(gate, table)]
    classes = model.config.classes
    compared = 0
    for index, (inputs, truth) in enumerate(samples):
        live = ("camera", "depth") if index == 2 else MODALITIES
        search = oracle.search(inputs, live, truth)
        assert oracle.search(inputs, live, truth) is search  # cached for the next budget
        assert len(search.counts) == (15 if index == 2 else 63)
        for fraction in (0.125, 1 / 3, 0.5, 1.0):
            budget = fraction * table.block_total()
            allocation = oracle.allocate(inputs, QUALITY, live, budget, ground_truth=truth)
            assert set(allocation) <= set(live) and allocation
            assert table.allocation_cost(allocation) <= budget + 1e-9
            best = frame_score(detect(model, inputs, allocation), truth, classes)
            for other in others:
                candidate = other.allocate(inputs, QUALITY, live, budget)
                if table.allocation_cost(candidate) > budget + 1e-9:
                    continue  # over the budget (full depth; the floor at tiny budgets)
                compared += 1
                score = frame_score(detect(model, inputs, candidate), truth, classes)
                assert best[0] >= score[0] - 1e-6, (other.name, fraction, best, score)
                if best[0] <= score[0] + 1e-6:
                    assert best[1] <= score[1] + 1e-4, (other.name, fraction, best, score)
    assert compared >= 20
