"""Packaging for cxr-pipeline; versions are pinned in constraints.txt, not here."""

from setuptools import find_packages, setup

setup(
    name="cxr-pipeline",
    version="0.1.0",
    description="A TFX pipeline for chest X-rays: ingestion, validation, segmentation and classification models, serving.",
    python_requires=">=3.10",
    packages=find_packages(include=["components", "components.*", "pipelines", "pipelines.*", "kubeflow", "kubeflow.*"]),
    include_package_data=True,
    install_requires=[
        "tfx==1.16.0",
        "tensorflow",
        "tf-keras",
        "tensorflow-transform",
        "tensorflow-model-analysis",
        "tensorflow-data-validation",
        "apache-beam[gcp]",
        "pydicom",
        "pylibjpeg",
        "pylibjpeg-libjpeg",
        "pillow",
        "click",
        "pyyaml",
    ],
    extras_require={"test": ["pytest", "pytest-timeout", "ruff", "gcp-storage-emulator"]},
    entry_points={"console_scripts": ["cxr=pipelines.cli:main"]},
)
