"""Evaluation: TFMA metrics and configs per task, the blessing rules (floors, no regression), results read back."""
