"""Opening the cassandra-driver session the source reads ``system_schema`` with.

Credentials and TLS material come from Secret references; their values stay
in memory. A failure to connect becomes ``CassandraUnavailableError``
(retryable) here: the driver's exceptions stop at this boundary.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from pipeline_runtime.config.model import LOCAL_CONTACT_POINT, CassandraSource, SecretRef, TLSSpec
from pipeline_runtime.errors import ConfigError, SourceError


class CassandraUnavailableError(SourceError):
    """No Cassandra node answered CQL; retry later."""

    retryable = True


SecretReader = Callable[[SecretRef], str]


def ssl_context(tls: TLSSpec, read: SecretReader) -> ssl.SSLContext | None:
    """An SSL context for ``tls`` (None when TLS is off)."""
    if not tls.enabled:
        return None
    # With a CA bundle, trust only it; without one, the system's roots.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_secret is not None:
        context.load_verify_locations(cadata=read(tls.ca_secret))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if (tls.client_cert_secret is None) != (tls.client_key_secret is None):
        raise ConfigError("tls: set both clientCertSecret and clientKeySecret for mutual TLS, or neither")
    if tls.client_cert_secret is not None and tls.client_key_secret is not None:
        import os  # noqa: PLC0415
        import tempfile  # noqa: PLC0415

        # ssl loads client certificates from files only: write them to a private temp dir and remove it.
        with tempfile.TemporaryDirectory() as folder:
            cert, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
            for path, ref in ((cert, tls.client_cert_secret), (key, tls.client_key_secret)):
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(read(ref))
            context.load_cert_chain(cert, key)
    return context


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
        ssl_context=ssl_context(source.tls, read),
        execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=policy, request_timeout=30)},
        connect_timeout=10,
        control_connection_timeout=10,
    )
    try:
        return cluster.connect()
    except Exception as exc:  # NoHostAvailable, auth failures, timeouts: the driver's tree stops here
        cluster.shutdown()
        raise CassandraUnavailableError(f"cannot connect to Cassandra at {host}:{source.port}: {exc}") from exc
