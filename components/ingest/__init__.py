"""CxrExampleGen: source adapters, image normalisation, patient split and the Beam ingestion pipeline."""
