"""Pipeline wiring, configuration, runners and the cxr CLI."""
