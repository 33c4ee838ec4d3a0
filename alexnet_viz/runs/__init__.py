"""Runs on disk: the store, snapshots, safe file reads and atomic writes."""
