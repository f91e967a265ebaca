"""A resolver strategy for baselines that may not exist yet."""

from __future__ import annotations

from tfx import types
from tfx import v1 as tfx


class LatestIfAnyStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The latest artifact of each channel, or nothing on a first run.

    TFX's LatestArtifactStrategy fails the resolver's execution when a channel is empty, which a first run
    always is for a baseline: a FAILED execution in ML Metadata and an error in the log for nothing wrong.
    """

    def resolve_artifacts(self, store, input_dict: dict[str, list[types.Artifact]]) -> dict[str, list[types.Artifact]]:
        del store  # the artifacts are already read from it
        return {key: sorted(artifacts, key=lambda a: a.id)[-1:] for key, artifacts in input_dict.items()}
