"""Cassandra commitlog segments: reading entries and decoding mutations into change events."""
