"""Which Secrets a pipeline references, and how they are mounted into a runtime.

Each referenced Secret becomes one volume with only the referenced keys, at
``/etc/headrace/secrets/<secret>/<key>`` (the layout ``pipeline_runtime.secrets``
reads). Mounting only those keys keeps unrelated values in the same Secret
out of the runtime's filesystem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from pipeline_runtime.config.model import PipelineSpec, SecretRef

SECRETS_DIR = "/etc/headrace/secrets"

#: Keys read from ``source.cassandra.credentialsSecret``.
CREDENTIAL_KEYS = ("password", "username")


def referenced_secrets(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
    """Secret name -> sorted keys, over every SecretRef in the spec and the CQL credentials."""
    found: dict[str, set[str]] = {}
    for ref in _secret_refs(spec):
        found.setdefault(ref.name, set()).add(ref.key)
    credentials = spec.source.cassandra.credentials_secret
    if credentials:
        found.setdefault(credentials, set()).update(CREDENTIAL_KEYS)
    return {name: tuple(sorted(keys)) for name, keys in sorted(found.items())}


def _secret_refs(node: Any) -> Iterator[SecretRef]:
    """Every SecretRef anywhere in a model, so a new Secret field is mounted without touching this file."""
    if isinstance(node, SecretRef):
        yield node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secret_refs(getattr(node, name))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _secret_refs(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _secret_refs(item)


def volume_name(secret: str) -> str:
    """A DNS label for the Secret's volume; long names are shortened with a hash."""
    name = f"secret-{secret}"
    if len(name) <= 63:
        return name
    return f"secret-{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


def secret_volumes(secrets: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    return [
        {
            "name": volume_name(secret),
            "secret": {
                "secretName": secret,
                "items": [{"key": key, "path": key} for key in keys],
                "defaultMode": 0o440,
            },
        }
        for secret, keys in secrets.items()
    ]


def secret_mounts(secrets: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    return [
        {"name": volume_name(secret), "mountPath": f"{SECRETS_DIR}/{secret}", "readOnly": True} for secret in secrets
    ]
