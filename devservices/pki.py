"""A throw-away certificate authority for the TLS tests, made with the ``openssl`` command.

``TestPki(folder)`` writes, on first use of each:

- ``ca`` and ``other_ca``: two self-signed CAs (a server signed by one is unknown to the other);
- ``server``: signed by ``ca`` for 127.0.0.1 and localhost, valid for a day;
- ``wrong_host``: signed by ``ca`` for ``db.example.invalid`` only (a hostname mismatch at 127.0.0.1);
- ``expired``: signed by ``ca`` for 127.0.0.1, valid only in January 2020;
- ``client``: a client certificate signed by ``ca`` (mutual TLS), CN ``headrace``.

Keys are unencrypted PEM files beside their certificates, mode 0600.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from devservices.process import ServiceError


@dataclass(frozen=True)
class Certificate:
    """A PEM certificate and its key, and the CA certificate that signed it."""

    cert: Path
    key: Path
    ca: Path

    def pem(self) -> str:
        return self.cert.read_text()


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"openssl {args[0]} failed: {result.stderr.strip()[-800:]}")


class TestPki:
    """Certificates under ``folder``, made on first use."""

    __test__ = False  # not a pytest class

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _authority(self, name: str) -> Path:
        cert = self.folder / f"{name}.crt"
        if not cert.exists():
            key = self.folder / f"{name}.key"
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                     "-subj", f"/CN=Headrace test {name}", "-keyout", str(key), "-out", str(cert),
                     cwd=self.folder)  # fmt: skip
            key.chmod(0o600)
        return cert

    @property
    def ca(self) -> Path:
        return self._authority("ca")

    @property
    def other_ca(self) -> Path:
        return self._authority("other-ca")

    def _signed(
        self, name: str, subject: str, san: str, *, usage: str, dates: tuple[str, str] | None = None
    ) -> Certificate:
        cert, key, request = (self.folder / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
        ca = self.ca
        if not cert.exists():
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                     "-keyout", str(key), "-out", str(request), cwd=self.folder)  # fmt: skip
            key.chmod(0o600)
            extensions = self.folder / f"{name}.ext"
            extensions.write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
            if dates is None:
                _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(self.folder / "ca.key"),
                         "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(cert),
                         cwd=self.folder)  # fmt: skip
            else:
                self._sign_dated(request, extensions, cert, dates)
        return Certificate(cert, key, ca)

    def _sign_dated(self, request: Path, extensions: Path, cert: Path, dates: tuple[str, str]) -> None:
        """Sign with fixed validity dates (``openssl x509`` takes only a day count): a minimal ``openssl ca``."""
        database = self.folder / "index.txt"
        database.touch()
        config = self.folder / "ca.cnf"
        config.write_text(
            "[ca]\ndefault_ca = test\n[test]\n"
            f"database = {database}\nnew_certs_dir = {self.folder}\nserial = {self.folder / 'serial.txt'}\n"
            f"certificate = {self.ca}\nprivate_key = {self.folder / 'ca.key'}\n"
            "default_md = sha256\npolicy = anything\nunique_subject = no\ncopy_extensions = none\n"
            "[anything]\ncommonName = supplied\n"
        )
        serial = self.folder / "serial.txt"
        if not serial.exists():
            serial.write_text("1000\n")
        _openssl("ca", "-batch", "-config", str(config), "-in", str(request), "-out", str(cert),
                 "-startdate", dates[0], "-enddate", dates[1], "-extfile", str(extensions), "-notext",
                 cwd=self.folder)  # fmt: skip

    @property
    def server(self) -> Certificate:
        return self._signed("server", "/CN=127.0.0.1", "IP:127.0.0.1,DNS:localhost", usage="serverAuth")

    @property
    def wrong_host(self) -> Certificate:
        return self._signed("wrong-host", "/CN=db.example.invalid", "DNS:db.example.invalid", usage="serverAuth")

    @property
    def expired(self) -> Certificate:
        return self._signed(
            "expired", "/CN=127.0.0.1", "IP:127.0.0.1", usage="serverAuth", dates=("20200101000000Z", "20200102000000Z")
        )

    @property
    def client(self) -> Certificate:
        return self._signed("client", "/CN=headrace", "DNS:headrace", usage="clientAuth")
