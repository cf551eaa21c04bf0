"""The package's layers, dependencies pointing one way: each module imports only from its own
layer or those below it, and what a robot runs never loads the simulator or the lab.

Layers, bottom up (a group in one tuple is independent: its members do not import each other):
core; quality | model; policies; runtime; sync; ros; sim; lab; cli. Read from the source with
ast, every import (at module level or inside a function) counted."""

import ast
import os
import subprocess
import sys
from pathlib import Path

from adaptive_fusion.sim import WorldConfig
from adaptive_fusion.sim.rig import fusion_node_parameters

PACKAGE = Path(__file__).resolve().parent.parent / "adaptive_fusion"
LAYERS = (
    ("core",),
    ("quality", "model"),
    ("policies",),
    ("runtime",),
    ("sync",),
    ("ros",),
    ("sim",),
    ("lab",),
    ("cli",),
)
RANK = {part: rank for rank, group in enumerate(LAYERS) for part in group}
NOT_ON_A_ROBOT = ("adaptive_fusion.sim", "adaptive_fusion.lab", "adaptive_fusion.cli")


def part_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "adaptive_fusion" and len(parts) > 1 else None


def imports(path: Path) -> set[str]:
    """Every adaptive_fusion module a source file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "adaptive_fusion":  # from adaptive_fusion import sim
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: relative import; the layers are read from absolute ones")
    return {name for name in found if name.startswith("adaptive_fusion.")}


def layer_violations(package: Path) -> list[str]:
    violations = []
    for path in sorted(package.rglob("*.py")):
        importer = path.relative_to(package).parts[0]
        if importer not in RANK:
            if importer != "__init__.py":
                violations.append(f"{path}: in no layer")
            continue
        for module in sorted(imports(path)):
            imported = part_of(module)
            if imported is None or imported == importer or imported not in RANK:
                continue
            if RANK[imported] >= RANK[importer]:
                violations.append(f"{path.relative_to(package.parent)} imports {module}")
    return violations


def test_every_import_points_down_the_layers():
    assert layer_violations(PACKAGE) == []


def test_the_layer_check_catches_an_import_that_points_up(tmp_path):
    package = tmp_path / "adaptive_fusion"
    for part, source in {
        "core": "import numpy\n",
        "model": "from adaptive_fusion.core.frames import FrameSet\n",
        "quality": "from adaptive_fusion.model.detector import AdaptiveFusionDetector\n",
        "ros": "def f():\n    from adaptive_fusion.sim.world import World\n",
    }.items():
        (package / part).mkdir(parents=True)
        (package / part / "mod.py").write_text(source)
    assert layer_violations(package) == [
        "adaptive_fusion/quality/mod.py imports adaptive_fusion.model.detector",
        "adaptive_fusion/ros/mod.py imports adaptive_fusion.sim.world",
    ]


ROBOT = """
import sys
import rclpy
from rclpy.parameter import Parameter
from adaptive_fusion.ros.fusion_node import FusionNode
rclpy.init()
node = FusionNode(parameter_overrides=[Parameter(k, value=v) for k, v in {params!r}.items()])
assert node.trigger_configure().name == "SUCCESS"
node.trigger_activate()
loaded = sorted(m for m in sys.modules if m.startswith({prefixes!r}))
node.destroy_node()
rclpy.shutdown()
print("LOADED", loaded)
"""


def test_fusion_node_runs_without_the_simulator_or_the_lab():
    params = {**fusion_node_parameters(WorldConfig()), "threads": 1}
    code = ROBOT.format(params=params, prefixes=NOT_ON_A_ROBOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=os.environ.copy(), timeout=110)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "LOADED []" in out.stdout, out.stdout
