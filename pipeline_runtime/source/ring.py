"""The token ring from the driver's metadata, as replica dedup reads it (``pipeline.replicas.RingView``).

Only the Murmur3 partitioner is supported (every cluster since Cassandra 1.2 unless changed):
with another, ``driver_ring`` gives None and every replica's runtime writes every change.
"""

from __future__ import annotations

from typing import Any

from pipeline_runtime.source.snapshot.reader import find_host


class DriverRing:
    """The driver's token map: primary replicas by keyspace (its replication strategy), node liveness."""

    def __init__(self, cluster: Any, local: Any) -> None:
        self._cluster = cluster
        self._local = local

    @property
    def local(self) -> str:
        return str(self._local.host_id)

    @property
    def local_up(self) -> bool:
        return self._local.is_up is not False

    def nodes(self) -> set[str]:
        return {str(host.host_id) for host in self._cluster.metadata.all_hosts()}

    def owner(self, keyspace: str, token: int) -> str | None:
        from cassandra.metadata import Murmur3Token  # noqa: PLC0415

        token_map = self._cluster.metadata.token_map
        replicas = token_map.get_replicas(keyspace, Murmur3Token(token)) if token_map is not None else []
        # The first replica in ring order from the token is its primary (per the keyspace's strategy); none
        # while the driver rebuilds its token map (a node restarting): the router then writes the change.
        return str(replicas[0].host_id) if replicas else None


def driver_ring(session: Any, local_address: str | None) -> DriverRing | None:
    """The ring of ``session``'s cluster seen from the node at ``local_address`` (None: not known yet)."""
    from cassandra.metadata import Murmur3Token  # noqa: PLC0415

    cluster = session.cluster
    token_map = cluster.metadata.token_map
    if token_map is None or token_map.token_class is not Murmur3Token:
        return None
    local = find_host(cluster, local_address)
    return DriverRing(cluster, local) if local is not None else None


def replication_factor(session: Any, keyspace: str) -> int:
    """How many replicas ``keyspace`` keeps (over all datacenters); unknown strategies count as several."""
    meta = session.cluster.metadata.keyspaces.get(keyspace)
    strategy = getattr(meta, "replication_strategy", None)
    if meta is None:
        return 1
    if strategy is None:
        return 3
    simple = getattr(strategy, "replication_factor", None)
    if simple is not None:
        return int(getattr(simple, "all_replicas", simple))
    per_dc = getattr(strategy, "dc_replication_factors", None)
    if per_dc:
        return sum(int(getattr(rf, "all_replicas", rf)) for rf in per_dc.values())
    return 3  # LocalStrategy, EverywhereStrategy or unknown: assume several writers
