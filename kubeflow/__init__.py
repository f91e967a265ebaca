"""Kubeflow Pipelines: the compiled pipeline (runner.py), its container image (Dockerfile) and scheduled runs."""
