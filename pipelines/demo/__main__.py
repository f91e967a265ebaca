"""Command line entry point: ``python -m pipelines.demo --out DIR`` writes the demo archive."""

from pipelines.demo.archive import main

if __name__ == "__main__":
    raise SystemExit(main())
