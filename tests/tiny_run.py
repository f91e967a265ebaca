"""The settings of the shared tiny pipeline runs (tests/conftest.py's local one, tests/kubeflow's local-run one)."""

from __future__ import annotations

# Beam in this process: a tiny run's Beam jobs would otherwise spend most of their time starting worker processes
# (each importing TensorFlow), as `cxr run` does by default for real data. No Beam arguments at all is the
# DirectRunner's in-process default, and spares each Beam component TFX's packaging of itself for remote workers
# (a `setup.py sdist` of the installed TFX, 2-3 s, done whenever a component has Beam arguments naming no package).
IN_PROCESS_BEAM = ["beam_args=[]", "ingest.beam_args=[]"]
TINY_RUN_OVERRIDES = [
    "segmentation.train_steps=60",
    "segmentation.epochs=2",
    "segmentation.eval_steps=2",
    "classification.train_steps=20",
    "classification.epochs=1",
    "classification.eval_steps=2",
    "seg_blessing.floor=0.3",
    # A longer-trained model is not worse by chance: a small, noisy eval split gets a wider no-regression margin.
    "seg_blessing.tolerance=0.05",
    "cls_blessing.floor=0.0",
    "cls_size=64",  # the mechanics, not the classifier, are under test
    # 20 steps teach no classifier: the runs test the pipeline's mechanics, not a model's quality
    # (the degenerate-model floors are tested at unit level, tests/components/test_evaluation_metrics.py).
    "cls_blessing.floors={}",
    # Drift against the first run is measured even on this tiny archive (identical data: distance 0);
    # skew between its ~25-image splits would be sampling noise, so it is left to unit tests.
    "validation.min_examples_for_distance=1",
    "validation.split_skew={}",
    *IN_PROCESS_BEAM,
]
# The shared fixture's one rerun (tests/conftest.py): the segmentation model trained longer (blessed against the
# first run's and pushed as a second version) and the classifier retrained under a policy no model can meet (a spread
# of predictions of 0.5, the most probabilities can have, only ever reached by outputs of exactly 0 and 1): not
# blessed, not pushed, and saying why. Everything upstream of the Trainers is cached.
# (A model refused for regressing against its baseline is judged at unit level: test_evaluation_metrics.py.)
RERUN = [
    "segmentation.train_steps=180",  # the first run's 60 steps tripled: 120 steps were once worse on 5 eval images
    "segmentation.epochs=3",
    "classification.train_steps=10",
    "cls_blessing.floors={macro_prediction_std: 0.5}",
]
