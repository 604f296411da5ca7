"""The lake: schemas, partition readers and writers, synthetic data, importers."""
