"""Structured JSON logs naming the pipeline, node and table.

One JSON object per line on stderr. Context (pipeline, node) is bound once at
start-up; a log call adds ``table``, ``sink``, ``segment`` or anything else
through ``extra=``. Values of masked columns never reach here: transforms
run before anything logs a row.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, ClassVar

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line with bound context and ``extra`` fields."""

    context: ClassVar[dict[str, str]] = {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.context,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info", **context: str) -> None:
    """Send every log record to stderr as JSON, with ``context`` on each line."""
    JsonFormatter.context = dict(context)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # cassandra-driver is chatty at INFO about connection pools.
    logging.getLogger("cassandra").setLevel(max(logging.WARNING, root.level))
