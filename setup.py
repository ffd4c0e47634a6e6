"""Install enas4d_tf: the library only (tools/ and export/ run from the repository)."""

from setuptools import find_packages, setup

# Versions that were seen to install and work together (BUILD_NOTES.md, "Versions and why").
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tf_keras==2.21.0",
    "tensorflow-model-optimization==0.8.1",
    "tensorflow-datasets==4.9.10",
    "importlib_resources>=6.0",  # tfds imports it without declaring it
    "ai-edge-litert==2.3.0",
    "numpy>=1.26,<3",
    "absl-py>=1.4",
    "matplotlib>=3.8",
]

setup(
    name="enas4d_tf",
    version="0.1.0",
    description="ENAS4D: multi-stage once-for-all supernets and search for dynamic inference",
    python_requires=">=3.10",
    packages=find_packages(include=["enas4d_tf", "enas4d_tf.*"]),
    # Released supernets (enas4d_tf/pretrained.py): weights, run config, release.json.
    package_data={"enas4d_tf": ["released/*/*.json", "released/*/checkpoints/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": ["pytest>=8", "ruff==0.17.6"]},
)
