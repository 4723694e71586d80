"""TLS and connection errors of the source's CQL session (pure logic plus one real refused connection)."""

from __future__ import annotations

import ssl
import subprocess

import pytest

from devservices.process import free_port
from devservices.pytest_require import require_tool
from pipeline_runtime.config.model import CassandraSource, SecretRef, TLSSpec
from pipeline_runtime.config.tls import ssl_context
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.source.connect import CassandraUnavailableError, connect


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_tool("openssl", "it makes the test certificates (Debian package openssl)")
    folder = tmp_path_factory.mktemp("pki")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=headrace-test",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return {
        "ca": (folder / "cert.pem").read_text(),
        "cert": (folder / "cert.pem").read_text(),
        "key": (folder / "key.pem").read_text(),
    }


def reader(values: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda ref: values[ref.key]


def ref(key: str) -> SecretRef:
    return SecretRef(name="tls", key=key)


def test_tls_off_means_no_context() -> None:
    assert ssl_context(TLSSpec(), reader({})) is None


def test_ca_bundle_verifies_the_server(pem: dict[str, str]) -> None:
    context = ssl_context(TLSSpec(enabled=True, ca_secret=ref("ca")), reader(pem))
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "headrace-test"),),)]


def test_insecure_skip_verify_turns_verification_off(pem: dict[str, str]) -> None:
    context = ssl_context(TLSSpec(enabled=True, insecure_skip_verify=True), reader(pem))
    assert context is not None
    assert context.verify_mode is ssl.CERT_NONE


def test_mutual_tls_needs_both_halves(pem: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="set both clientCertSecret and clientKeySecret"):
        ssl_context(TLSSpec(enabled=True, client_cert_secret=ref("cert")), reader(pem))
    context = ssl_context(
        TLSSpec(enabled=True, ca_secret=ref("ca"), client_cert_secret=ref("cert"), client_key_secret=ref("key")),
        reader(pem),
    )
    assert context is not None


def test_nobody_listening_is_a_retryable_source_error() -> None:
    port = free_port()
    source = CassandraSource(contact_point="127.0.0.1", port=port, credentials_secret="cql")
    with pytest.raises(CassandraUnavailableError, match=f"cannot connect to Cassandra at 127.0.0.1:{port}") as caught:
        connect(source, reader({"username": "u", "password": "p"}))
    assert caught.value.retryable
    assert "p" not in str(caught.value).split(":")[-1].split()  # the password is not in the message
