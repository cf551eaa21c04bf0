"""ament_python package: installs the library, the ROS executables where `ros2 run` finds them
(lib/adaptive_fusion, set in setup.cfg), and launch/, config/ and the shipped model to share/."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "adaptive_fusion"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["models/*.json", "models/*.safetensors"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
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
        ],
    },
)
