"""The pipeline on Kubeflow Pipelines: compiled and submitted (runner.py), run locally (local_run.py), Trainers as
TFJobs (tfjob.py). Not named `kubeflow`, the top-level name of Kubeflow's own Python packages; the image that runs
it is kubeflow/Dockerfile."""
