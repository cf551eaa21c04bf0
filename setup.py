"""ament_python package: installs the library, the ROS executables where `ros2 run` finds them
(lib/adaptive_fusion, set in setup.cfg), the ament index marker, package.xml, and every file under
launch/ and config/ to share/adaptive_fusion/ where `ros2 launch` and the nodes look for them."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "adaptive_fusion"


def share_tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install every file under `folder` to share/<package>/<folder>,
    keeping subfolders (setuptools takes one destination per entry, so one entry per folder)."""
    entries: dict[str, list[str]] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            entries.setdefault(f"share/{PACKAGE}/{path.parent.as_posix()}", []).append(
                path.as_posix()
            )
    return list(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["models/*.json", "models/*.safetensors"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_tree("launch"),
        *share_tree("config"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="adaptive_fusion maintainers",
    maintainer_email="maintainers@adaptive-fusion.dev",
    description="Adaptive-depth camera + depth + lidar fusion for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "adaptive-fusion = adaptive_fusion.cli.main:main",
            "fusion_node = adaptive_fusion.ros.fusion_node:main",
            "sim_sensors = adaptive_fusion.sim.sensors_node:main",
        ],
    },
)
