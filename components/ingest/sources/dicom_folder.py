"""A generic folder of DICOM files (any depth): metadata from the tags, no labels."""

from __future__ import annotations

from components import storage
from components.ingest.sources.base import DecodedRecord, RecordRef, Rejected, Source


class DicomSource(Source):
    """A generic folder of DICOM files (any depth); metadata from the tags, no labels.

    Options:
      require_chest_metadata: quarantine files whose metadata does not say "chest" (default false: only files
        whose metadata names another body part or a non-radiograph modality are quarantined). Turn it on for
        PACS exports, where a hand or knee radiograph without BodyPartExamined would otherwise pass.
    """

    kind = "dicom"

    def __init__(self, config):
        super().__init__(config)
        options = dict(config.options)
        self.require_chest = options.pop("require_chest_metadata", False)
        if options or not isinstance(self.require_chest, bool):
            raise ValueError(
                f"dicom source {config.name}: the only option is require_chest_metadata (true/false), got {config.options}"
            )

    def list_records(self) -> tuple[list[RecordRef], list[Rejected]]:
        refs = []
        for path in self.list_inputs(self.root):  # not the export's README, MANIFEST, checksums or DICOMDIR
            rel = self._rel(path)
            # The patient id comes from the file when it is read; until then the relative path stands in.
            refs.append(self._record(path, rel, patient_id=rel))
        return refs, []

    def read(self, ref: RecordRef, max_pixels: int) -> DecodedRecord:
        from components import dicom  # pydicom is only needed for this source

        pixels, meta = dicom.read_dicom(storage.read_bytes(ref.image_path), max_pixels, self.require_chest)
        return DecodedRecord(pixels, None, None, meta)
