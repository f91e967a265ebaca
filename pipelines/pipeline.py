"""create_pipeline(...): wires the components; knows nothing about where or how it runs."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

# TFX's classes from their own modules, not `tfx.v1`: importing tfx.v1 imports its Google Cloud extensions
# (google-cloud-aiplatform), about 8 CPU-seconds spent by every process that builds a pipeline and never used here.
from tfx.components.evaluator.component import Evaluator
from tfx.components.example_validator.component import ExampleValidator
from tfx.components.pusher.component import Pusher
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.components.transform.component import Transform
from tfx.dsl.components.base import executor_spec
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import pusher_pb2, trainer_pb2

from components import baselines, contract
from components.evaluation import executor as evaluator_executor
from components.evaluation.configs import classification_eval_config, segmentation_eval_config
from components.ingest.component import CxrExampleGen
from components.promotion.pusher import Executor as AtomicPusherExecutor
from components.validation import checks, gate
from pipelines.config import PipelineConfig, TrainConfig

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas")
PREPROCESSING_FN = "components.transform.preprocessing.preprocessing_fn"
SEGMENTATION_RUN_FN = "components.trainer.segmentation.run_fn"
CLASSIFICATION_RUN_FN = "components.trainer.classification.run_fn"


def _hparams(train: TrainConfig) -> dict:
    return dataclasses.asdict(train.hparams())


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
    schema_dir: str = SCHEMA_DIR,
    *,
    baseline_metadata: Mapping[str, object] | None = None,
    baseline_fingerprints: Mapping[str, str] | None = None,
    input_fingerprint: str | None = None,
) -> Pipeline:
    """Builds the TFX pipeline: ingest -> validate -> transform -> train x2 -> evaluate x2 -> push x2.

    Args:
      config: the run's configuration.
      metadata_connection_config: ML Metadata connection (None: the orchestrator's own, e.g. Kubeflow's).
      schema_dir: directory (or gs:// prefix) holding schema.pbtxt, as the ImportSchemaGen executor sees it.
      baseline_metadata: how the baseline lookups (components/baselines.py) reach ML Metadata: {"sqlite": path}
        or {"host": ..., "port": ...}; None: the run directory's SQLite store.
      baseline_fingerprints: the lookups' cache keys by node id (baselines.fingerprints: what each would find
        now); a lookup missing here gets a constant key (orchestrators that run it uncached, e.g. Kubeflow).
      input_fingerprint: CxrExampleGen's cache key for its inputs; None lists the sources now to compute it.
    """
    example_gen = CxrExampleGen(
        sources=config.sources, options=config.ingest.options(), salt_env=config.salt_env, input_fingerprint=input_fingerprint
    ).with_beam_pipeline_args(list(config.ingest.beam_args))
    validation = config.validation
    schema_gen = ImportSchemaGen(schema_file=os.path.join(schema_dir, "schema.pbtxt"))
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        stats_options=checks.statistics_options(validation.image_stats_sample_rate),
    )
    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    metadata = json.dumps(dict(baseline_metadata or {"sqlite": config.metadata_path}), sort_keys=True)

    def fingerprint(node: str) -> str:
        return (baseline_fingerprints or {}).get(node, "looked up at run time")

    # The statistics the gate accepted in the latest earlier run: the baseline of drift (none on a first run).
    previous_statistics = baselines.LatestAcceptedStatistics(
        config.pipeline_name, metadata, fingerprint(contract.BASELINE_STATISTICS)
    ).with_id(contract.BASELINE_STATISTICS)
    components = [example_gen, schema_gen, statistics_gen, example_validator, previous_statistics]
    data_gate = gate.DataGate(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        examples=example_gen.outputs["examples"],  # the gate decodes a bounded sample of their images itself
        baseline_statistics=previous_statistics.outputs[baselines.STATISTICS_KEY],
        split_skew=validation.split_skew,
        drift=validation.drift,
        continue_on_anomalies=validation.continue_on_anomalies,
        min_examples_for_distance=validation.min_examples_for_distance,
    )
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"seg_size": config.seg_size, "cls_size": config.cls_size},
        # Pre-transform statistics are StatisticsGen's (the gate checks those); post-transform ones would be TFDV
        # over every pixel of every transformed image, read by nothing.
        disable_statistics=True,
    )
    transform.add_upstream_node(data_gate)  # no data flows from the gate: Transform only waits for its verdict
    components += [data_gate, transform]
    tasks = (
        (
            "segmentation",
            SEGMENTATION_RUN_FN,
            config.segmentation,
            segmentation_eval_config(
                config.seg_blessing.floor,
                config.seg_blessing.tolerance,
                floors=config.seg_blessing.floors,
                ceilings=config.seg_blessing.ceilings,
            ),
        ),
        (
            "classification",
            CLASSIFICATION_RUN_FN,
            config.classification,
            classification_eval_config(
                config.cls_blessing.floor,
                config.cls_blessing.tolerance,
                task=config.classification.task,
                threshold=config.cls_threshold,
                floors=config.cls_blessing.floors,
                ceilings=config.cls_blessing.ceilings,
            ),
        ),
    )
    for task, run_fn, train, eval_config in (t for t in tasks if t[0] in config.tasks):
        trainer = Trainer(
            run_fn=run_fn,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=trainer_pb2.TrainArgs(num_steps=train.train_steps),
            eval_args=trainer_pb2.EvalArgs(num_steps=train.eval_steps),
            custom_config=_hparams(train),
        ).with_id(contract.trainer(task))
        baseline = baselines.LatestBlessedModel(
            config.pipeline_name, task, metadata, fingerprint(contract.baseline_model(task))
        ).with_id(contract.baseline_model(task))
        evaluator = Evaluator(
            examples=example_gen.outputs["examples"],
            model=trainer.outputs["model"],
            baseline_model=baseline.outputs[baselines.MODEL_KEY],
            schema=schema_gen.outputs["schema"],
            eval_config=eval_config,
        ).with_id(contract.evaluator(task))
        # TFX's Evaluator, resolving the baseline reference first (components/evaluation/executor.py).
        evaluator.executor_spec = executor_spec.BeamExecutorSpec(evaluator_executor.Executor)
        pusher = Pusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(
                    base_directory=os.path.join(config.serving_dir, config.push.model_names[task])
                )
            ),
            custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPusherExecutor),
        ).with_id(contract.pusher(task))
        components += [trainer, baseline, evaluator, pusher]
    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
