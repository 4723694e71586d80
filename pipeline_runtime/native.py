"""The compiled core (``headrace_native``, built from ``native/``), when it is built and wanted.

The commitlog decoder and the PostgreSQL sink's COPY encoder each have a
pure-Python reference and a Rust twin held to the same output by tests.
``HEADRACE_PURE_PYTHON=1`` makes every part use its reference.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)

#: Set to 1 to use the pure-Python references even where the native module is built.
PURE_PYTHON_ENV = "HEADRACE_PURE_PYTHON"
NATIVE_MODULE = "headrace_native"


@functools.cache
def native_module() -> ModuleType | None:
    """The native module, or None (logged once) when it is not built or ``HEADRACE_PURE_PYTHON`` is set."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        log.info("%s is set: using the pure-Python decoder and encoders", PURE_PYTHON_ENV)
        return None
    try:
        return importlib.import_module(NATIVE_MODULE)
    except ImportError as exc:
        log.warning(
            "%s is not built (%s): decoding and encoding in pure Python, several times slower; "
            "build it with `make dev` (pip install ./native)",
            NATIVE_MODULE,
            exc,
        )
        return None
