"""`colcon build` of this package into a temporary prefix gives the layout that `ros2 run` and
`ros2 launch` rely on, and leaves nothing behind in the source tree."""

import filecmp
import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "adaptive_fusion"


def colcon_executable() -> str:
    """The colcon next to this interpreter (the project venv), else the one on PATH (a robot)."""
    search_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which("colcon", path=search_path)
    assert found, "colcon is not installed: run scripts/setup_env.sh or install colcon"
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("colcon")
    repo_entries_before = set(os.listdir(REPO))
    result = subprocess.run(
        [colcon_executable(), "--log-base", str(work / "log"), "build",
         "--base-paths", str(REPO), "--packages-select", PACKAGE,
         "--build-base", str(work / "build"), "--install-base", str(work / "install")],
        cwd=work, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(os.listdir(REPO)) == repo_entries_before, "colcon build wrote into the repository"
    return work


@pytest.fixture(scope="module")
def prefix(workspace) -> Path:
    return workspace / "install" / PACKAGE


@pytest.fixture(scope="module")
def console_scripts(prefix) -> dict[str, str]:
    """Console scripts as setup.py declares them, read from the metadata this build installed."""
    (egg_info,) = prefix.glob(f"lib/python*/site-packages/{PACKAGE}-*.egg-info")
    scripts = {ep.name: ep.value for ep in PathDistribution(egg_info).entry_points
               if ep.group == "console_scripts"}
    assert "adaptive-fusion" in scripts
    return scripts


def test_executables_are_installed_in_lib_package(prefix, console_scripts):
    lib = prefix / "lib" / PACKAGE
    assert sorted(p.name for p in lib.iterdir()) == sorted(console_scripts)
    for name in console_scripts:
        assert os.access(lib / name, os.X_OK), f"{name} is not executable"


def test_ament_index_marker_and_package_xml(prefix):
    assert (prefix / "share/ament_index/resource_index/packages" / PACKAGE).is_file()
    assert filecmp.cmp(prefix / "share" / PACKAGE / "package.xml", REPO / "package.xml",
                       shallow=False)


def test_every_launch_and_config_file_is_installed(prefix):
    share = prefix / "share" / PACKAGE
    for folder in ("launch", "config"):
        for source in (REPO / folder).rglob("*"):
            if source.is_file() and "__pycache__" not in source.parts:
                installed = share / source.relative_to(REPO)
                assert installed.is_file(), f"{source.relative_to(REPO)} is not installed"
                assert filecmp.cmp(installed, source, shallow=False)


RESOLVE_LIKE_ROS2_RUN = textwrap.dedent("""
    import importlib, json, os, sys
    from ament_index_python.packages import get_package_prefix, get_package_share_directory
    package, scripts = sys.argv[1], json.loads(sys.argv[2])
    prefix = get_package_prefix(package)
    found = {}
    for name, target in scripts.items():
        module_name, _, function = target.partition(":")
        module = importlib.import_module(module_name)
        found[name] = [os.path.isfile(os.path.join(prefix, "lib", package, name)),
                       callable(getattr(module, function)), module.__file__]
    print(json.dumps({"prefix": prefix, "share": get_package_share_directory(package),
                      "scripts": found}))
""")


def test_sourced_install_resolves_like_ros2_run(workspace, prefix, console_scripts):
    """After `source install/setup.bash`, the ament index finds the package, and every executable
    imports its entry point from the install (not from the source tree)."""
    command = (f'source "{workspace}/install/setup.bash" && '
               f'"{sys.executable}" -c "$0" {PACKAGE} "$1"')
    result = subprocess.run(
        ["bash", "-c", command, RESOLVE_LIKE_ROS2_RUN, json.dumps(console_scripts)],
        cwd=workspace, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(resolved["prefix"]) == prefix
    assert Path(resolved["share"]) == prefix / "share" / PACKAGE
    for name, (is_file, is_callable, module_file) in resolved["scripts"].items():
        assert is_file and is_callable, name
        assert Path(module_file).is_relative_to(prefix), f"{name} imports {module_file}"
