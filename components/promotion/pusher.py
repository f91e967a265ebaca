"""Pusher executor: TFX's blessing check, then a de-duplicated publish that never exposes a partial version (versions.py)."""

from __future__ import annotations

from typing import Any

from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.promotion import versions


class Executor(pusher_executor.Executor):
    """Pushes blessed models to a filesystem destination, a local directory or gs://; others go to the stock executor.

    gs:// destinations are written with google-cloud-storage (not TensorFlow's GCS filesystem), staged and
    copied so that a version only becomes loadable once complete (see versions.publish).
    """

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            return super().Do(input_dict, output_dict, exec_properties)
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        published = versions.publish(self.GetModelPath(input_dict), destination.filesystem.base_directory)
        model_push.set_int_custom_property("reused_existing_version", int(published.reused))
        self._MarkPushed(model_push, pushed_destination=published.path, pushed_version=str(published.version))
