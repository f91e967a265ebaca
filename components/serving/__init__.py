"""Using the pushed models: pick a version from the registry, load it (local or gs://), predict, review in a browser."""
