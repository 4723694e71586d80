"""Wiring of the data path: source -> transforms -> batches -> sinks -> checkpoint -> cleanup."""
