"""ament_python package setup; also works with ``pip install -e .`` in a plain venv."""

from __future__ import annotations

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "casmtr_ros"


def _cuda_extensions() -> tuple[list, dict]:
    """The CUDA extension, built only when a CUDA build of torch and nvcc are present (see cuda/README.md)."""
    if os.environ.get("CASMTR_BUILD_CUDA", "auto") == "0":
        return [], {}
    try:
        from cuda.build import extension_modules  # the build helper lives in cuda/
    except ImportError:
        return [], {}
    return extension_modules()


ext_modules, cmdclass = _cuda_extensions()

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "cuda", "cuda.*"]),
    package_data={PACKAGE: ["weights/*.pt", "weights/*.json", "configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/weights", glob(f"{PACKAGE}/weights/*.pt")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="casmtr_ros developers",
    maintainer_email="casmtr-ros@example.org",
    description="ROS 2 visual-odometry front end built on the CasMTR-4c cascade transformer matcher",
    license="Apache-2.0",
    tests_require=["pytest"],
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={
        "console_scripts": [
            "casmtr_vo_node = casmtr_ros.ros.node:main",
            "casmtr-vo = casmtr_ros.cli:main",
        ],
    },
)
