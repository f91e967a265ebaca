"""Feature keys, the canonical pathology vocabulary and model-input names: the data contract in one place."""

from __future__ import annotations

from collections.abc import Sequence

# --- Raw tf.Example features written by CxrExampleGen (see schemas/schema.pbtxt) ---
IMAGE = "image"  # lossless grayscale PNG bytes, 8- or 16-bit, longest side <= max_side
MASK = "mask"  # PNG label map (0 background, 1 right lung, 2 left lung; 1 = lung where sides unknown); b"" if none
HAS_MASK = "has_mask"  # int 1/0
LABELS = "labels"  # float vector over LABEL_NAMES, 1/0
LABEL_KNOWN = "label_known"  # int vector over LABEL_NAMES, 1 = the source states this label, 0 = unknown
SOURCE = "source"  # name of the configured source
VIEW = "view"  # PA / AP / LL / UNKNOWN
SEX = "sex"  # M / F / U
AGE = "age_years"  # float, -1 when unknown
PATIENT_ID = "patient_id"  # salted hash of the source's patient id, never the raw id
IMAGE_ID = "image_id"  # stable hash of source name + relative path
ORIG_HEIGHT = "orig_height"
ORIG_WIDTH = "orig_width"

STRING_FEATURES = (SOURCE, VIEW, SEX, PATIENT_ID, IMAGE_ID)
VIEWS = ("PA", "AP", "LL", "UNKNOWN")
SEXES = ("M", "F", "U")

# --- Canonical pathology vocabulary: NIH ChestX-ray14 names first, then the other sources' findings ---
LABEL_NAMES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
    "Tuberculosis",
    "COVID-19",
    "Lung Opacity",
    "No Finding",
)
NUM_LABELS = len(LABEL_NAMES)
LABEL_INDEX = {name: i for i, name in enumerate(LABEL_NAMES)}
# What one example says about one label, as ingestion's report.json and the run report count it (label_states).
LABEL_STATES = ("positive", "negative", "unknown")

# --- Mask label map values ---
MASK_BACKGROUND, MASK_RIGHT_LUNG, MASK_LEFT_LUNG = 0, 1, 2

# --- Transformed features (outputs of preprocessing_fn, inputs of the trainers) ---
# The models' default input sizes (square, pixels): the run's seg_size and cls_size unless its config sets them.
DEFAULT_SEG_SIZE = 128
DEFAULT_CLS_SIZE = 128
SEG_IMAGE_XF = "seg_image_xf"  # PNG uint8 at the segmentation size
CLS_IMAGE_XF = "cls_image_xf"  # PNG uint8 at the classification size
MASK_XF = "mask_xf"  # PNG uint8 label map at the segmentation size (nearest neighbour)
HAS_MASK_XF = "has_mask_xf"  # float 1/0
LABELS_XF = "labels_xf"  # float vector; -1 where the label is unknown, so losses/metrics can mask it
SOURCE_XF = "source_xf"
PATIENT_XF = "patient_xf"  # the salted patient hash, so the Trainer can hold out whole patients for validation
# The full-pass pixel statistics of the classification images (B,) float32: the trainers standardise with them.
INTENSITY_MEAN_XF = "intensity_mean_xf"
INTENSITY_STD_XF = "intensity_std_xf"
INTENSITY_XF = (INTENSITY_MEAN_XF, INTENSITY_STD_XF)

# What a Trainer writes beside its TensorBoard logs (model_run/): examples, epochs and steps run, wall time.
TRAINING_SUMMARY_FILE = "training_summary.json"

# --- The exported models' signatures and outputs: the trainers write them; serving, TFMA and the report call them ---
SERVING_IMAGE_SIGNATURE = "serving_default"  # raw encoded image bytes (PNG/JPEG) -> predictions
SERVING_EXAMPLE_SIGNATURE = "serving_examples"  # serialized raw tf.Examples -> predictions (TFMA uses it)
TRANSFORM_SIGNATURE = "transform_features"  # serialized raw tf.Examples -> transformed features
EVAL_FEATURES_SIGNATURE = "eval_features"  # serialized raw tf.Examples -> what TFMA's labels are read from
SEGMENTATION_IMAGE_SIGNATURE = "serve_image"  # one encoded image at its own size -> mask at that size
SEGMENTATION_PREDICTION = "lung_probability"  # (B, S, S, 1) float32 in [0, 1] (serve_image: full size)
SEGMENTATION_MASK = "lung_mask"  # serve_image only: (H, W, 1) uint8, 1 = lung
CLASSIFICATION_PREDICTION = "probabilities"  # (B, C) float32 in the task's class order
CLASSIFICATION_LABEL_NAMES = "label_names"  # (B, C) string, so every answer names its classes


def label_vector(known: dict[str, bool]) -> tuple[list[float], list[int]]:
    """Turns {canonical name: present?} into the (labels, label_known) vectors of the contract.

    Args:
      known: the labels a source states, by canonical name; names not in it are unknown.

    Returns:
      (labels, label_known), each of length NUM_LABELS.

    Raises:
      ValueError: a name is not in the canonical vocabulary.
    """
    labels = [0.0] * NUM_LABELS
    label_known = [0] * NUM_LABELS
    for name, present in known.items():
        if name not in LABEL_INDEX:
            raise ValueError(f"{name!r} is not in the canonical label vocabulary {LABEL_NAMES}")
        labels[LABEL_INDEX[name]] = 1.0 if present else 0.0
        label_known[LABEL_INDEX[name]] = 1
    return labels, label_known


def label_states(labels: Sequence[float], known: Sequence[int]) -> list[str]:
    """Each label's state in one example (an entry of LABEL_STATES): "positive" where the source states it and its
    value is > 0.5, "negative" where stated and <= 0.5, "unknown" where the source does not state it.

    Args:
      labels: the example's `labels` vector; known: its `label_known` vector (the same length).

    Raises:
      ValueError: the vectors differ in length.
    """
    if len(labels) != len(known):
        raise ValueError(f"{len(labels)} labels but {len(known)} label_known entries")
    return ["unknown" if not k else "positive" if v > 0.5 else "negative" for v, k in zip(labels, known, strict=True)]
