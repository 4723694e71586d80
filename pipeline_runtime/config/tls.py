"""One SSL context from a ``tls`` block, for every connection the runtime opens (CQL and each sink).

Certificates come from Secret references and stay in memory (client certificates pass through a
private temporary folder, removed at once, because ``ssl`` loads them only from files). With
``enabled`` the connection is TLS or nothing: a sink never falls back to plaintext.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable

from pipeline_runtime.config.model import SecretRef, TLSSpec
from pipeline_runtime.errors import ConfigError

SecretReader = Callable[[SecretRef], str]


def ssl_context(tls: TLSSpec, read: SecretReader, what: str = "tls") -> ssl.SSLContext | None:
    """An SSL context for ``tls`` (None when TLS is off); ``what`` names the connection in errors.

    With ``caSecret`` only that CA is trusted, without it the system's roots; the server's
    certificate and hostname are verified unless ``insecureSkipVerify`` says otherwise in so many words.
    """
    if not tls.enabled:
        return None
    if (tls.client_cert_secret is None) != (tls.client_key_secret is None):
        raise ConfigError(f"{what}: set both clientCertSecret and clientKeySecret for mutual TLS, or neither")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_secret is not None:
        ref = tls.ca_secret
        try:
            context.load_verify_locations(cadata=read(ref))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"{what}: caSecret {ref.name}/{ref.key} is not a PEM CA bundle: {exc}") from exc
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert_secret is not None and tls.client_key_secret is not None:
        _load_client_certificate(context, tls.client_cert_secret, tls.client_key_secret, read, what)
    return context


def _load_client_certificate(
    context: ssl.SSLContext, cert_ref: SecretRef, key_ref: SecretRef, read: SecretReader, what: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cert, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
        for path, ref in ((cert, cert_ref), (key, key_ref)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(read(ref))
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{what}: clientCertSecret {cert_ref.name}/{cert_ref.key} and clientKeySecret "
                f"{key_ref.name}/{key_ref.key} are not a PEM certificate and its key: {exc}"
            ) from exc
