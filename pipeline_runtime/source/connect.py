"""Opening the cassandra-driver session the source reads ``system_schema`` with.

Credentials and TLS material come from Secret references; their values stay
in memory. A failure to connect becomes ``CassandraUnavailableError``
(retryable) here: the driver's exceptions stop at this boundary.
"""

from __future__ import annotations

from typing import Any

from pipeline_runtime.config.model import LOCAL_CONTACT_POINT, CassandraSource, SecretRef
from pipeline_runtime.config.tls import SecretReader, ssl_context
from pipeline_runtime.errors import SourceError


class CassandraUnavailableError(SourceError):
    """No Cassandra node answered CQL; retry later."""

    retryable = True


def connect(source: CassandraSource, read: SecretReader) -> Any:
    """A connected session on ``source.contact_point``, 127.0.0.1 when unset (the caller shuts its cluster down)."""
    from cassandra import ProtocolVersion  # noqa: PLC0415
    from cassandra.auth import PlainTextAuthProvider  # noqa: PLC0415
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile  # noqa: PLC0415
    from cassandra.policies import DCAwareRoundRobinPolicy, RoundRobinPolicy  # noqa: PLC0415

    host = source.contact_point or LOCAL_CONTACT_POINT
    auth = None
    if source.credentials_secret is not None:
        username = read(SecretRef(name=source.credentials_secret, key="username"))
        password = read(SecretRef(name=source.credentials_secret, key="password"))
        auth = PlainTextAuthProvider(username=username, password=password)
    policy = (
        DCAwareRoundRobinPolicy(local_dc=source.local_datacenter) if source.local_datacenter else RoundRobinPolicy()
    )
    cluster = Cluster(
        [host],
        # Cassandra 4.0+ speaks v5; without it the driver starts at v6 and logs a downgrade each start.
        protocol_version=ProtocolVersion.V5,
        port=source.port,
        auth_provider=auth,
        ssl_context=ssl_context(source.tls, read, "source.cassandra.tls"),
        execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=policy, request_timeout=30)},
        connect_timeout=10,
        control_connection_timeout=10,
    )
    try:
        return cluster.connect()
    except Exception as exc:  # NoHostAvailable, auth failures, timeouts: the driver's tree stops here
        cluster.shutdown()
        raise CassandraUnavailableError(f"cannot connect to Cassandra at {host}:{source.port}: {exc}") from exc
