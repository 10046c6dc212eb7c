"""ament_python package setup; also works with ``pip install -e .`` in a plain venv."""

from __future__ import annotations

import contextlib
import os
import sys
from glob import glob
from pathlib import Path

from setuptools import find_namespace_packages, setup

PACKAGE = "casmtr_ros"
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt")  # the suffixes casmtr_ros.model.checkpoint resolves by name


def _cuda_extensions() -> tuple[list, dict]:
    """The CUDA extension, built only when a CUDA build of torch and nvcc are present (see cuda/README.md)."""
    if os.environ.get("CASMTR_BUILD_CUDA", "auto") == "0":
        return [], {}
    # `colcon build --symlink-install` runs this script from the build folder through a symlink: find cuda/ next to
    # the real file.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from cuda.build import extension_modules  # the build helper lives in cuda/
    except ImportError:
        return [], {}
    # colcon reads setup() metadata from this script's stdout, so diagnostics must go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        return extension_modules()


ext_modules, cmdclass = _cuda_extensions()

setup(
    name=PACKAGE,
    version="0.1.0",
    # Namespace discovery: a sub-folder without __init__.py (casmtr_ros/training/) is still installed.
    packages=find_namespace_packages(include=[PACKAGE, f"{PACKAGE}.*"], exclude=["*.__pycache__"]),
    package_data={PACKAGE: [f"weights/*{ext}" for ext in WEIGHT_SUFFIXES] + ["weights/*.json", "configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/weights", sorted(p for ext in WEIGHT_SUFFIXES for p in glob(f"{PACKAGE}/weights/*{ext}"))),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="casmtr_ros developers",
    maintainer_email="casmtr-ros@example.org",
    description="ROS 2 visual-odometry front end built on the CasMTR-4c cascade transformer matcher",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={
        "console_scripts": [
            "casmtr_vo_node = casmtr_ros.ros.node:main",
            "casmtr-vo = casmtr_ros.cli:main",
        ],
    },
)
