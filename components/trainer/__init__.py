"""Trainer run_fns per task, their input pipelines, distribution strategy and serving export."""
