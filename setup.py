"""Packaging for cxr-pipeline; versions are pinned in constraints.txt, not here."""

from setuptools import find_packages, setup

setup(
    name="cxr-pipeline",
    version="0.1.0",
    description="A TFX pipeline for chest X-rays: ingestion, validation, segmentation and classification models, serving.",
    python_requires=">=3.10",
    packages=[
        *find_packages(include=["components", "components.*", "pipelines", "pipelines.*"]),
        # kubeflow/ holds the image (Dockerfile) and the example config; its code is the package cxr_kubeflow, not
        # `kubeflow`, the top-level name of Kubeflow's own Python packages.
        *find_packages(where="kubeflow", include=["cxr_kubeflow", "cxr_kubeflow.*"]),
    ],
    package_dir={"cxr_kubeflow": "kubeflow/cxr_kubeflow"},
    include_package_data=True,
    package_data={"components.reporting": ["templates/*.html"], "components.serving": ["templates/*.html"]},
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
        "scipy",
        # The demo phantoms pin BLAS to one thread while they render, so they round the same in every process.
        "threadpoolctl",
        # The run report and model cards (`cxr report`): plots rendered with the Agg backend.
        "matplotlib",
        # Kubeflow: the kfp 2.x client (`cxr kubeflow`); the image's TFX entrypoint reads kfp-pipeline-spec.
        "kfp",
        "kfp-pipeline-spec",
        # Trainers as TFJobs (cxr_kubeflow.tfjob) use it directly; kfp also depends on it today.
        "kubernetes",
        # `cxr serve`: the local review web app.
        "flask",
    ],
    # playwright drives the system chromium in the review app's browser test (no browser is downloaded).
    extras_require={"test": ["pytest", "pytest-timeout", "pytest-xdist", "ruff", "gcp-storage-emulator", "playwright"]},
    entry_points={"console_scripts": ["cxr=pipelines.cli:main"]},
)
