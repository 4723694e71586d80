"""Sink-specific errors, all inside pipeline_runtime.errors' tree.

SinkError
├── MissingExtensionError   the database lacks an extension the sink needs (fatal)
└── (SinkUnavailableError, SchemaDriftError, RowRejectedError from the shared tree)
"""

from __future__ import annotations

from pipeline_runtime.errors import SinkError


class MissingExtensionError(SinkError):
    """The target database has no ``extension``: nothing the runtime can fix by retrying."""

    def __init__(self, database: str, extension: str, hint: str) -> None:
        super().__init__(f"database {database!r} has no {extension} extension: {hint}")
        self.database = database
        self.extension = extension
