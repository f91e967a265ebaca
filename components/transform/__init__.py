"""Transform: the preprocessing_fn shared by training, evaluation and serving."""
