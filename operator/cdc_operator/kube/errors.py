"""API failures, translated from aiohttp and HTTP statuses at exactly one boundary (``kube/client.py``).

KubeError
├── NotFound          404
├── Conflict          409 (a create that raced, a stale resourceVersion)
├── Rejected          400/403/422: the request itself is wrong; retrying repeats it
└── Unavailable       5xx, 429, connection errors: worth retrying (``retryable``)
"""

from __future__ import annotations


class KubeError(Exception):
    """A Kubernetes API request failed."""

    retryable = False

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    retryable = True


class Rejected(KubeError):
    pass


class Unavailable(KubeError):
    retryable = True
