"""TFX's Evaluator, handed its baseline model by reference (components/baselines.py).

The no-regression baseline comes from a LatestBlessedModel lookup: a reference artifact that names the latest
blessed model, or says there is none yet. This executor resolves it before TFX's Evaluator runs, so the
evaluation, the validation result and the blessing (`baseline_model`) name the baseline model's own URI; with
no baseline the Evaluator judges on the floors and ceilings alone (rubber stamp), as on a first run.
"""

from __future__ import annotations

from typing import Any

from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import standard_component_specs

from components import baselines
from components.beam_construction import memoize_dofn_specs


class Executor(tfx_evaluator.Executor):
    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        memoize_dofn_specs()
        key = standard_component_specs.BASELINE_MODEL_KEY
        input_dict = {**input_dict, key: baselines.resolve(input_dict.get(key))}
        super().Do(input_dict, output_dict, exec_properties)
