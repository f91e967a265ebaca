"""What a run leaves for people: the run report (one self-contained HTML file) and a model card per pushed model."""
