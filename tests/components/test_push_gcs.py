"""Pushing to gs:// with the real google-cloud-storage client against gcp-storage-emulator: the copy step cut short,
the Pusher executor end to end (blessed pushes, unblessed does not), and push destinations from the config."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest
from gcs_emulator import gcs_emulator
from pushing import Tree, kill_mid_push, save_scale_model, serve
from tfx.components.evaluator import constants as evaluator_constants
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.promotion import pusher, versions
from pipelines import config as cfg

BUCKET = "cxr-push"


@pytest.fixture(scope="module")
def bucket_uri() -> str:
    with gcs_emulator(BUCKET) as uri:
        yield uri


@pytest.fixture
def base(bucket_uri) -> str:
    return f"{bucket_uri}/{uuid.uuid4().hex[:8]}/serving/lungs"


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("saved_models")
    return {"double": save_scale_model(root / "double", 2.0), "triple": save_scale_model(root / "triple", 3.0)}


@pytest.mark.slow
def test_a_push_killed_during_the_copy_step_leaves_nothing_loadable(base, saved_models, tmp_path):
    tree = Tree(base)
    kept = versions.publish(saved_models["triple"], base, clock=lambda: 1_700_000_000)
    kill_mid_push(saved_models["double"], base, "copy")  # dies with every file but saved_model.pb copied
    partial = [c for c in tree.children() if c.isdigit() and c != str(kept.version)]
    assert len(partial) == 1 and tree.files()  # a version prefix without saved_model.pb, and the staging...
    assert f"{partial[0]}/variables/variables.index" in tree.files()
    assert versions.list_versions(base) == tree.loadable() == [kept.version]  # ...neither listed nor loadable
    assert any(c.startswith(versions.STAGING_PREFIX) for c in tree.children())
    published = versions.publish(saved_models["double"], base, stale_after_s=0)
    assert published.version > int(partial[0])
    assert tree.children() == [str(kept.version), str(published.version)]  # both leftovers removed
    assert versions.list_versions(base) == tree.loadable() == [kept.version, published.version]
    assert serve(tree.fetch(published.version, tmp_path / "v"), [1.5]) == [3.0]


def _push(tmp_path, model_dir: str, destination: str, blessed: bool, name: str) -> standard_artifacts.PushedModel:
    """Runs the project's Pusher executor on artifacts laid out as the Trainer and Evaluator write them."""
    root = tmp_path / name
    model = standard_artifacts.Model()
    model.uri = str(root / "model")
    shutil.copytree(model_dir, root / "model" / "Format-Serving")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(root / "blessing")
    os.makedirs(blessing.uri)
    marker = evaluator_constants.BLESSED_FILE_NAME if blessed else evaluator_constants.NOT_BLESSED_FILE_NAME
    open(os.path.join(blessing.uri, marker), "w").close()
    blessing.set_int_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        evaluator_constants.BLESSED_VALUE if blessed else evaluator_constants.NOT_BLESSED_VALUE,
    )
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(root / "pushed")
    os.makedirs(pushed.uri)
    push_destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=destination))
    pusher.Executor().Do(
        {standard_component_specs.MODEL_KEY: [model], standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(push_destination)},
    )
    return pushed


def test_pusher_executor_pushes_blessed_models_to_gcs_only(base, saved_models, tmp_path):
    tree = Tree(base)
    refused = _push(tmp_path, saved_models["double"], base, blessed=False, name="unblessed")
    assert refused.get_int_custom_property("pushed") == 0
    assert tree.files() == []
    pushed = _push(tmp_path, saved_models["double"], base, blessed=True, name="blessed")
    [version] = versions.list_versions(base)
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == f"{base}/{version}"
    assert pushed.get_string_custom_property("pushed_version") == str(version)
    assert pushed.get_int_custom_property("reused_existing_version") == 0
    assert tree.loadable() == [version]
    assert serve(tree.fetch(version, tmp_path / "served"), [4.0]) == [8.0]
    again = _push(tmp_path, saved_models["double"], base, blessed=True, name="again")  # same model, next run
    assert again.get_int_custom_property("reused_existing_version") == 1
    assert again.get_string_custom_property("pushed_version") == str(version) and tree.loadable() == [version]


def _destinations(config: cfg.PipelineConfig) -> dict[str, str]:
    from pipelines.pipeline import create_pipeline

    out = {}
    for c in create_pipeline(config).components:
        if c.id.startswith("Pusher."):
            destination = json.loads(c.exec_properties[standard_component_specs.PUSH_DESTINATION_KEY])
            out[c.id.removeprefix("Pusher.")] = destination["filesystem"]["base_directory"]
    return out


def test_push_destinations_come_from_the_config(tmp_path):
    demo = cfg.demo_config(str(tmp_path / "data"), str(tmp_path / "run"))
    assert demo.serving_dir == str(tmp_path / "run" / "serving")
    assert _destinations(demo) == {
        "segmentation": str(tmp_path / "run" / "serving" / "segmentation"),
        "classification": str(tmp_path / "run" / "serving" / "classification"),
    }
    config = cfg.load_config(overrides=["push.base_dir=gs://models/cxr", "push.model_names.segmentation=cxr-lungs"], base=demo)
    assert config.serving_dir == "gs://models/cxr"
    assert config.push.model_names == {"segmentation": "cxr-lungs", "classification": "classification"}
    assert _destinations(config) == {
        "segmentation": "gs://models/cxr/cxr-lungs",
        "classification": "gs://models/cxr/classification",
    }


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["push.base_dir=s3://models"], "must be a local path or gs://bucket/prefix"),
        (["push.base_dir=gs:///cxr"], "names no bucket"),
        (["push.model_names.detection=boxes"], "unknown tasks \\['detection'\\]"),
        (["push.model_names.segmentation=a/b"], "push.model_names.segmentation must be letters"),
        (["push.model_names.segmentation=.hidden"], "push.model_names.segmentation must be letters"),
        (["push.model_names.segmentation=classification"], "push.model_names must differ"),
        (["push.destination=x"], "unknown PushConfig keys \\['destination'\\]"),
    ],
)
def test_bad_push_config_is_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        cfg.load_config(overrides=overrides)
