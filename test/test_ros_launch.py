"""The launch file against the package (`launch` itself is not installable here): the executables
it starts exist, the params files it passes parse and only name declared parameters, the topics
it remaps are the nodes' own; and the executables really start, as lifecycle-aware processes."""

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from adaptive_fusion.ros.fusion_node import FusionNode
from adaptive_fusion.ros.topics import GROUND_TRUTH, INPUTS, OUTPUTS
from adaptive_fusion.sim import WorldConfig
from adaptive_fusion.sim.rig import fusion_node_parameters
from adaptive_fusion.sim.scenario import Scenario
from adaptive_fusion.sim.sensors_node import SimSensors

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "adaptive_fusion.launch.py"
NODES = {"fusion_node": FusionNode, "sim_sensors": SimSensors}


def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text())


def node_actions() -> list[dict[str, ast.expr]]:
    """Keyword arguments of every launch_ros Node(...) in the launch file."""
    return [
        {kw.arg: kw.value for kw in call.keywords}
        for call in ast.walk(launch_tree())
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node"
    ]


def module_constant(name: str):
    for statement in launch_tree().body:
        if isinstance(statement, ast.Assign) and statement.targets[0].id == name:
            return ast.literal_eval(statement.value)
    raise AssertionError(f"{name} not found in {LAUNCH.name}")


def value_of(expr: ast.expr):
    """A literal, or a module-level constant of the launch file named by the expression."""
    if isinstance(expr, ast.Name):
        return module_constant(expr.id)
    return ast.literal_eval(expr)


def console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return dict(tuple(part.strip() for part in s.split("=")) for s in scripts)
    raise AssertionError("setup.py has no entry_points")


def params_file(name: str) -> dict:
    """A ROS params file flattened to {node: {dotted.name: value}}."""

    def flatten(tree: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[prefix + key] = value
        return flat

    document = yaml.safe_load((ROOT / "config" / name).read_text())
    return {node: flatten(body["ros__parameters"]) for node, body in document.items()}



def test_launched_executables_are_console_scripts_of_the_package():
    scripts = console_scripts()
    actions = node_actions()
    assert {value_of(a["executable"]) for a in actions} == set(NODES)
    for action in actions:
        assert value_of(action["package"]) == "adaptive_fusion"
        executable = value_of(action["executable"])
        assert value_of(action["name"]) == executable
        module, _, function = scripts[executable].partition(":")
        assert module == NODES[executable].__module__
        assert callable(getattr(sys.modules[module], function))


def test_params_files_name_only_declared_parameters_with_valid_values(tmp_path):
    for name in ("fusion_node.yaml", "sim_sensors.yaml", "sim_rig.yaml"):
        assert f'"{name}"' in LAUNCH.read_text()  # the launch file's default params files
        for node_name, values in params_file(name).items():
            node_name = "fusion_node" if node_name == "/**" else node_name  # sim_rig.yaml
            context = Context()
            rclpy.init(args=["--ros-args", "--params-file", str(ROOT / "config" / name)],
                       context=context)  # fmt: skip
            try:
                node = NODES[node_name](context=context)  # validates the values it starts with
                undeclared = [key for key in values if not node.has_parameter(key)]
                assert not undeclared, f"{name}: {undeclared} not declared by {node_name}"
                for key, value in values.items():
                    assert node.get_parameter(key).value == value, key
                node.destroy_node()
            finally:
                rclpy.shutdown(context=context)
    Scenario.load(ROOT / "config" / "scenarios" / "demo.yaml")


def test_remapped_topics_are_the_nodes_topics(model_path):
    context = Context()
    rclpy.init(context=context)
    try:
        fusion = FusionNode(
            context=context,
            parameter_overrides=[rclpy.parameter.Parameter("model_path", value=str(model_path)),
                                 rclpy.parameter.Parameter("policy", value="quality_weighted"),
                                 *(rclpy.parameter.Parameter(k, value=v) for k, v
                                   in fusion_node_parameters(WorldConfig()).items())],
        )
        fusion.trigger_configure()
        sim = SimSensors(context=context)
        topics = {
            endpoint.topic_name.lstrip("/")
            for node in (fusion, sim)
            for endpoint in (*node.publishers, *node.subscriptions)
        }
        remapped = set(module_constant("TOPIC_ARGUMENTS").values())
        assert remapped <= topics
        # the launch file spells the package's topic table out (it is read without importing)
        assert remapped == {*INPUTS.values(), OUTPUTS["detections"], OUTPUTS["markers"],
                            GROUND_TRUTH}
        fusion.trigger_cleanup()
        for node in (fusion, sim):
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def lifecycle_state(context, node_name: str, timeout: float = 2.0) -> int | None:
    """The node's lifecycle state id, None when no answer came within the timeout (a request
    sent just as the service appears can be lost)."""
    node = rclpy.create_node("state_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    client = node.create_client(GetState, f"/{node_name}/get_state")
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        future = client.call_async(GetState.Request())
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        return future.result().current_state.id if future.done() else None
    finally:
        executor.shutdown()
        node.destroy_node()


@pytest.mark.parametrize(
    "autostart, expected",
    [("true", State.PRIMARY_STATE_ACTIVE), ("false", State.PRIMARY_STATE_UNCONFIGURED)],
)
def test_fusion_node_executable_starts_active_unless_told_not_to(model_path, autostart, expected):
    executable = Path(sys.executable).parent / "fusion_node"
    # A name of its own: another fusion_node left in this domain must not answer for it.
    name = f"fusion_node_{os.getpid()}_{autostart}"
    process = subprocess.Popen(
        [str(executable), "--ros-args", "-r", f"__node:={name}",
         "-p", f"model_path:={model_path}", "-p", "policy:=quality_weighted",
         "-p", f"autostart:={autostart}",
         "--params-file", str(ROOT / "config" / "sim_rig.yaml")],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    context = Context()
    rclpy.init(context=context)
    state = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and state != expected:
            state = lifecycle_state(context, name)
            time.sleep(0.2)
    finally:
        rclpy.shutdown(context=context)
        process.terminate()
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise AssertionError(f"fusion_node ignored SIGTERM:\n{output}") from None
    assert state == expected, output
    assert process.returncode == 0, output
    assert "Traceback" not in output, output


def test_bad_start_up_parameter_is_refused_by_the_executable():
    executable = Path(sys.executable).parent / "sim_sensors"
    result = subprocess.run(
        [str(executable), "--ros-args", "-p", "lidar.corruption:=rain"],
        env=os.environ.copy(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "lidar.corruption: 'rain' is not one of" in result.stderr


def test_launch_sets_the_shipped_fast_dds_profile_unless_one_is_set():
    from adaptive_fusion.ros import transport

    assert module_constant("PROFILE_VARIABLE") == transport.PROFILE_VARIABLE
    assert (ROOT / "config" / module_constant("PROFILE_FILE")) == transport.profile_path()
    tree = launch_tree()
    calls = [c for c in ast.walk(tree) if isinstance(c, ast.Call)]
    (setter,) = [c for c in calls if getattr(c.func, "id", None) == "SetEnvironmentVariable"]
    name, value = setter.args
    assert name.id == "PROFILE_VARIABLE"
    # the value is the variable itself when set, else the shipped file under share/config
    assert value.func.id == "EnvironmentVariable" and value.args[0].id == "PROFILE_VARIABLE"
    (default,) = value.keywords
    assert default.arg == "default_value" and ast.unparse(default.value) == (
        "PathJoinSubstitution([config, PROFILE_FILE])"
    )
    # set before the nodes start: the launch description lists it ahead of them
    (described,) = [c for c in calls if getattr(c.func, "id", None) == "LaunchDescription"]
    order = [ast.unparse(e) for e in described.args[0].elts]
    nodes = ("fusion_on_robot", "fusion_in_sim", "sim")
    assert order.index("profile") < min(order.index(node) for node in nodes)
    (assigned,) = [s for s in ast.walk(tree) if isinstance(s, ast.Assign) and s.value is setter]
    assert assigned.targets[0].id == "profile"


def test_readme_parameter_table_matches_the_node_and_the_params_file():
    from adaptive_fusion.ros.fusion_node import PARAMETERS

    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| parameter | default | range / choices | when | what |") + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("| `"):
            break
        name, default, _, when, _ = (cell.strip() for cell in line.strip("|").split(" | "))
        rows[name.strip("`")] = (default.strip("`"), when)
    assert list(rows) == [spec.name for spec in PARAMETERS]
    yml = params_file("fusion_node.yaml")["fusion_node"]
    for spec in PARAMETERS:
        default, when = rows[spec.name]
        assert when == ("start-up" if spec.read_only else "runtime"), spec.name
        if spec.name != "camera_from_lidar":  # a 4x4 matrix: described, not written out
            assert yaml.safe_load(default) == yml[spec.name] == spec.default, spec.name
