"""Headrace runtime: Cassandra CDC commitlogs to PostgreSQL, TimescaleDB and ClickHouse."""
