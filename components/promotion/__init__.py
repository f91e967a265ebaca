"""Publishing and promoting models: TF Serving version directories, written atomically, never duplicated."""
