"""A Trainer's Kubernetes resources as the compiled pipeline's ResourceSpec (kfp 2.x's fields, old and new)."""

from __future__ import annotations

import re

from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines.config import TrainerResources

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
_GIB_PER_UNIT = {"": 1e-9, "K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3, "P": 1e6, "E": 1e9}


def _memory_gb(quantity: str) -> float:
    """A Kubernetes memory quantity in (decimal) GB, the unit of ResourceSpec's legacy float fields."""
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    if unit.endswith("i"):
        return float(number) * 1024 ** ("KMGTPE".index(unit[0]) + 1) / 1e9
    return float(number) * _GIB_PER_UNIT[unit]


def resource_spec(resources: TrainerResources) -> ResourceSpec:
    """The Trainer pod's CPU and memory requests and GPUs, as the kfp 2.x compiler writes them.

    Both the string fields (read by current KFP backends) and the deprecated numeric ones (older backends) are set.
    """
    cpu = float(resources.cpu[:-1]) / 1000 if resources.cpu.endswith("m") else float(resources.cpu)
    memory = _memory_gb(resources.memory)
    spec = ResourceSpec(
        cpu_request=cpu,
        resource_cpu_request=resources.cpu,
        memory_request=memory,
        resource_memory_request=resources.memory,
        memory_limit=memory,
        resource_memory_limit=resources.memory,
    )
    if resources.gpus:
        spec.accelerator.CopyFrom(
            ResourceSpec.AcceleratorConfig(
                type=resources.gpu_type,
                count=resources.gpus,
                resource_type=resources.gpu_type,
                resource_count=str(resources.gpus),
            )
        )
    return spec
