"""What the run report and the model cards show; light on imports, so the pipeline's configuration can use it."""

from __future__ import annotations

import dataclasses

DEFAULT_INTENDED_USE = (
    "Research and development, and decision support under the review of a qualified reader: outlining the lungs "
    "and flagging findings on frontal chest X-rays from the sources it was trained on. It is not a medical device "
    "and is not cleared for clinical diagnosis; its outputs must never be the sole basis of a clinical decision."
)


@dataclasses.dataclass
class ReportOptions:
    """What the report and the model cards show (pipelines.config.ReportConfig extends it: a run config's `report`)."""

    samples_per_source: int = 6  # images in the sample grid per source
    intensity_images_per_source: int = 50  # images decoded per source for the intensity histogram
    size_images_per_source: int = 200  # images per source in the image-size figure (a sample: the first ones read)
    overlay_count: int = 3  # best and worst segmentations shown
    max_overlay_images: int = 500  # masked eval images the segmentation model is run on for them
    quarantine_rows: int = 50  # quarantined inputs listed one by one (all are in quarantine.jsonl)
    intended_use: str = DEFAULT_INTENDED_USE
    limitations: list[str] = dataclasses.field(default_factory=list)  # added to every model card's limitations
    min_slice_examples: int = 30  # model cards flag slices evaluated on fewer images
