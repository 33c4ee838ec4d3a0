"""Training: the engine (yields records), internals probe, precision, distributed, experiments."""
