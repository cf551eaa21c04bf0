"""The budget sweep of `adaptive-fusion evaluate` (methods x budgets x conditions -> JSON and PNG),
its conditions (single, mixed, dead, held out), liveness, the single-allocation evaluate it
extends, and `adaptive-fusion profile` writing a loadable cost table."""

import json

import pytest
import torch

from adaptive_fusion.cli.main import main
from adaptive_fusion.core.frames import CORRUPTIONS
from adaptive_fusion.lab.evaluation.report import MIXED, parse_conditions
from adaptive_fusion.lab.evaluation.sweep import live_modalities
from adaptive_fusion.model.checkpoint import load_checkpoint
from adaptive_fusion.policies.checkpoint import save_controller, save_gate
from adaptive_fusion.policies.costs import CostTable
from adaptive_fusion.policies.gate import GateConfig, ModalityGate
from adaptive_fusion.policies.network import ControllerConfig, LayerController
from adaptive_fusion.sim.config import WorldConfig
from adaptive_fusion.sim.corruptions import corrupt
from adaptive_fusion.sim.world import World

torch.set_num_threads(1)
METHODS = "full,equal_split,random,oracle,controller,dynmm"


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def controller_path(model_path, tmp_path_factory):
    torch.manual_seed(1)
    model, _ = load_checkpoint(model_path)
    path = tmp_path_factory.mktemp("controller") / "controller"
    save_controller(LayerController(ControllerConfig(channels=(8,), hidden=16), model.config),
                    path, {})
    return path


@pytest.fixture(scope="module")
def gate_path(model_path, tmp_path_factory):
    torch.manual_seed(2)
    model, _ = load_checkpoint(model_path)
    path = tmp_path_factory.mktemp("gate") / "gate"
    save_gate(ModalityGate(GateConfig(depths=(1, 2), channels=(8,), hidden=16), model.config),
              path, {})
    return path


def test_conditions_single_mixed_dead_and_held_out():
    conditions = parse_conditions("clean,single,mixed,dead", [1.0])
    names = [c.name for c in conditions]
    singles = sum(len(kinds) - 1 for kinds in CORRUPTIONS.values())
    assert len(conditions) == 1 + singles + 1 + 3
    assert names[0] == "clean" and names[-3:] == ["camera:dead", "depth:dead", "lidar:dead"]
    mixed = conditions[1 + singles]
    assert mixed.name == f"{MIXED}@1" and len(mixed.as_spec()) == 2
    held = [c for c in conditions if c.held_out]
    assert [c.label for c in held] == ["camera:motion_blur@1 (held out)"]
    pair = parse_conditions("camera:noise+depth:holes", [0.5, 1.0])
    assert [c.as_spec() for c in pair] == [
        {"camera": ("noise", s), "depth": ("holes", s)} for s in (0.5, 1.0)]
    with pytest.raises(ValueError, match="unknown condition"):
        parse_conditions("camera:noise+depth:fog", [1.0])


def test_live_modalities_are_the_sensors_with_data():
    frames = World(WorldConfig()).render(2_000_000)
    assert live_modalities(frames) == ("camera", "depth", "lidar")
    for name in ("camera", "depth", "lidar"):
        dead = corrupt(frames, {name: ("dead", 1.0)}, seed=0)
        assert name not in live_modalities(dead) and len(live_modalities(dead)) == 2
    blurred = corrupt(frames, {"camera": ("low_light", 1.0)}, seed=0)
    assert live_modalities(blurred) == ("camera", "depth", "lidar")  # degraded, not dead


def test_budget_sweep_json_and_plot(model_path, controller_path, gate_path, tmp_path, capsys):
    plot = tmp_path / "sweep.png"
    report = run_json(capsys, [
        "evaluate", "--model", str(model_path), "--frames", "2", "--threads", "1",
        "--methods", METHODS, "--budgets", "0.5,1", "--controller", str(controller_path),
        "--gate", str(gate_path),
        "--conditions", "clean,camera:motion_blur,mixed,lidar:dead", "--severities", "1",
        "--json", "--plot", str(plot)])
    assert report["methods"] == METHODS.split(",") and report["budgets"] == [0.5, 1.0]
    assert report["cost_unit"] == "gflops" and report["frames"] == 2
    assert list(report["conditions"]) == [
        "clean", "camera:motion_blur@1", f"{MIXED}@1", "lidar:dead"]
    assert report["conditions"]["camera:motion_blur@1"]["held_out"]
    assert report["allocator_gflops"]["full"] == 0 and report["allocator_gflops"]["controller"] > 0
    assert report["allocator_gflops"]["dynmm"] > 0
    assert "oracle" not in report["allocator_gflops"]
    for name, condition in report["conditions"].items():
        assert set(condition) >= {"label", "spec", "mean_quality", "live_fraction", "methods"}
        for method, budgets in condition["methods"].items():
            assert list(budgets) == ["0.5", "1"]
            for budget, result in budgets.items():
                assert set(result) == {"mAP", "AP_per_class", "mean_blocks", "run_fraction",
                                       "gflops", "block_cost_fraction", "latency_ms",
                                       "allocate_ms", "paths"}
                assert sum(result["paths"].values()) == 2  # frames
                for path, frames in result["paths"].items():
                    blocks = dict(zip(("camera", "depth", "lidar"), map(int, path.split("/")),
                                      strict=True))
                    assert all(blocks[m] <= 2 for m in blocks) and frames >= 1
                assert all(0 <= share <= 1 for share in result["run_fraction"].values())
                assert 0 <= result["mAP"] <= 1 and result["latency_ms"] > 0
                assert result["gflops"] <= report["full_gflops"] + 1e-9
                if method != "full":  # layers=2: half the blocks is exactly the floor
                    assert result["block_cost_fraction"] <= float(budget) + 1e-9
                if name == "lidar:dead":
                    assert result["mean_blocks"]["lidar"] == result["run_fraction"]["lidar"] == 0
        full = condition["methods"]["full"]["0.5"]
        live = 2 if name == "lidar:dead" else 3
        assert sum(full["mean_blocks"].values()) == 2 * live
        assert sum(full["run_fraction"].values()) == live
    assert report["conditions"]["clean"]["methods"]["equal_split"]["0.5"]["mean_blocks"] == {
        "camera": 1, "depth": 1, "lidar": 1}
    assert plot.stat().st_size > 10_000
    assert (tmp_path / "sweep_tradeoff.png").stat().st_size > 10_000


def test_profile_writes_a_cost_table_the_sweep_prices_in_ms(model_path, tmp_path, capsys):
    out = tmp_path / "costs.json"
    assert main(["profile", "--model", str(model_path), "--runs", "3", "--threads", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "block 1" in printed and "full frame" in printed and str(out) in printed
    table = CostTable.load(out)
    assert table.unit == "ms" and list(table.block) == ["camera", "depth", "lidar"]
    assert all(len(c) == 2 and min(c) > 0 for c in table.block.values()) and table.fixed > 0
    report = run_json(capsys, [
        "evaluate", "--model", str(model_path), "--frames", "1", "--threads", "1",
        "--methods", "equal_split,random", "--budgets", "0.5", "--costs", str(out),
        "--conditions", "clean", "--json"])
    assert report["cost_unit"] == "ms" and report["costs"] == table.to_dict()
    result = report["conditions"]["clean"]["methods"]["random"]["0.5"]
    assert result["predicted_ms"] > table.fixed
    at_floor = sum(result["mean_blocks"].values()) == 3  # block 0 of each may exceed half
    assert result["block_cost_fraction"] <= 0.5 + 1e-9 or at_floor


def test_single_allocation_evaluate_still_works(model_path, capsys):
    report = run_json(capsys, [
        "evaluate", "--model", str(model_path), "--frames", "2", "--threads", "1",
        "--layers", "camera=1,depth=2,lidar=0", "--conditions", "clean,depth:dead",
        "--latency-runs", "2", "--json"])
    assert report["allocation"] == {"camera": [0], "depth": [0, 1]}
    assert 0 < report["flops_fraction_of_full"] < 1
    assert set(report["conditions"]) == {"clean", "depth:dead"}


@pytest.mark.parametrize("argv, message", [
    (["--layers", "0.5", "--methods", "full"], "--layers sets one allocation"),
    (["--methods", "full,best"], "unknown method 'best'"),
    (["--methods", "controller"], "needs --controller"),
    (["--budgets", "0,0.5"], "fraction in (0, 1]"),
    (["--costs", "x.json"], "--costs prices the budgets of a sweep"),
])
def test_evaluate_rejects_bad_sweep_arguments(model_path, capsys, argv, message):
    assert main(["evaluate", "--model", str(model_path), "--frames", "1", *argv]) == 2
    assert message in capsys.readouterr().out


def test_text_output_of_both_modes(model_path, capsys):
    common = ["evaluate", "--model", str(model_path), "--frames", "1", "--threads", "1",
              "--conditions", "clean"]
    assert main([*common, "--methods", "full,equal_split", "--budgets", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "== clean" in text and "blocks camera/depth/lidar" in text
    assert any(line.startswith("equal_split") and "1.0/1.0/1.0" in line
               for line in text.splitlines())
    assert main([*common, "--layers", "0.5", "--latency-runs", "1"]) == 0
    text = capsys.readouterr().out
    assert "layers {'camera': [0]" in text and text.splitlines()[-1].startswith("clean")
