"""Resolve Secret references to their values, without ever logging or storing them.

On Kubernetes the operator mounts each referenced Secret at
``/etc/headrace/secrets/<secret>/<key>``. Standalone, the same layout works
under any folder (``--secrets-dir``), and an environment variable
``HEADRACE_SECRET_<SECRET>_<KEY>`` (upper case, non-alphanumerics as ``_``)
overrides a file, for quick local runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline_runtime.config.model import SecretRef
from pipeline_runtime.errors import ConfigError

DEFAULT_SECRETS_DIR = Path("/etc/headrace/secrets")


def env_name(ref: SecretRef) -> str:
    """The environment variable that can carry ``ref``'s value."""
    return "HEADRACE_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{ref.name}_{ref.key}".upper())


class SecretStore:
    """Reads secret values on demand; the values live only in the caller's memory."""

    def __init__(self, root: Path = DEFAULT_SECRETS_DIR) -> None:
        self._root = root

    def path(self, ref: SecretRef) -> Path:
        return self._root / ref.name / ref.key

    def read(self, ref: SecretRef) -> str:
        """The value of ``ref``; ConfigError names the Secret and key (never a value) when missing."""
        from_env = os.environ.get(env_name(ref))
        if from_env is not None:
            return from_env
        try:
            return self.path(ref).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"secret {ref.name}/{ref.key} is not available: expected the file {self.path(ref)} "
                f"or the environment variable {env_name(ref)}"
            ) from exc

    def read_bytes(self, ref: SecretRef) -> bytes:
        return self.read(ref).encode()
