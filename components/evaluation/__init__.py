"""Evaluation: TFMA configs per task and the blessing rules (absolute floors, no regression)."""
